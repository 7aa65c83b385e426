"""Token providers for openai >= 1 (`azure_ad_token_provider=` or a callable `api_key=`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

from ._cache import TokenCache
from ._registry import DEFAULT_SCOPE, resolve_cache
from ._settings import CacheOptions

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ._credential import Credential

__all__ = ["async_token_provider", "token_provider"]


def token_provider(
    credential: Credential | TokenCache | None = None,
    scopes: str | Sequence[str] = DEFAULT_SCOPE,
    **options: Unpack[CacheOptions],
) -> Callable[[], str]:
    """A zero-argument function returning a valid token, for openai's sync clients.

    ```python
    client = AzureOpenAI(azure_endpoint=..., api_version=..., azure_ad_token_provider=token_provider())
    ```

    openai calls it on every request and every retry; it answers from the cache, so the
    credential is asked once per token lifetime.
    """
    return resolve_cache(credential, scopes, options, "token_provider").get_token


def async_token_provider(
    credential: Credential | TokenCache | None = None,
    scopes: str | Sequence[str] = DEFAULT_SCOPE,
    **options: Unpack[CacheOptions],
) -> Callable[[], Awaitable[str]]:
    """A coroutine function returning a valid token, for `AsyncAzureOpenAI` / `AsyncOpenAI`.

    Takes an async credential (`azure.identity.aio`: awaited on the running loop) or a
    sync one (run in a thread so the loop keeps running). `None` means a sync
    `DefaultAzureCredential`, which needs no aiohttp.
    """
    return resolve_cache(credential, scopes, options, "async_token_provider").get_token_async
