"""Token providers for openai >= 1 (`azure_ad_token_provider=` or a callable `api_key=`)."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING

from ._cache import TokenCache
from ._clouds import scope_for_url
from ._errors import ConfigurationError
from ._policy import HostPolicy
from ._proxies import environment_proxied
from ._registry import DEFAULT_SCOPE, is_default_scope, resolve_cache
from ._settings import CacheOptions

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ._credential import Credential

__all__ = ["async_token_provider", "token_provider"]

# What openai >= 1 itself reads when `azure_endpoint` is not given.
ENDPOINT_VARIABLE = "AZURE_OPENAI_ENDPOINT"


def _provider_cache(
    credential: Credential | TokenCache | None,
    scopes: str | Sequence[str],
    endpoint: str | None,
    allow_http: bool,
    allowed_hosts: Iterable[str] | None,
    options: CacheOptions,
    caller: str,
) -> TokenCache:
    """The cache behind a provider, after checking the endpoint it will serve."""
    if endpoint is None:
        endpoint = os.environ.get(ENDPOINT_VARIABLE) or None
    if endpoint is None:
        if allowed_hosts is not None:
            raise ConfigurationError("allowed_hosts needs endpoint=: a provider never sees the URL a request goes to")
        return resolve_cache(credential, scopes, options, caller)
    # A provider never sees a request: the endpoint is checked once, here, by the rule
    # every adapter applies per request (InsecureTransportError, nothing sent).
    HostPolicy(allow_http, allowed_hosts).check_url(endpoint, environment_proxied)
    if is_default_scope(scopes) and not isinstance(credential, TokenCache):
        scopes = scope_for_url(endpoint)
    return resolve_cache(credential, scopes, options, caller)


def token_provider(
    credential: Credential | TokenCache | None = None,
    scopes: str | Sequence[str] = DEFAULT_SCOPE,
    *,
    endpoint: str | None = None,
    allow_http: bool = False,
    allowed_hosts: Iterable[str] | None = None,
    **options: Unpack[CacheOptions],
) -> Callable[[], str]:
    """A zero-argument function returning a valid token, for openai's sync clients.

    ```python
    endpoint = "https://<resource>.openai.azure.com"
    client = AzureOpenAI(azure_endpoint=endpoint, api_version="2024-10-21",
                         azure_ad_token_provider=token_provider(endpoint=endpoint))
    ```

    openai calls it on every request and every retry; it answers from the cache, so the
    credential is asked once per token lifetime.

    `endpoint` (default: the `AZURE_OPENAI_ENDPOINT` environment variable, as openai reads
    it) is the endpoint the client sends to. It is checked now by the adapters' rule:
    plain http only to a loopback host not reached through an environment proxy, unless
    `allow_http=True`, and only to `allowed_hosts` when given; otherwise
    `InsecureTransportError`, before any token is fetched. With no `scopes`, the scope is
    the endpoint's cloud's (`*.azure.us`: Azure Government, `*.azure.cn`: Azure China).
    With no endpoint known, nothing is checked (a provider never sees the URL) and the
    scope is `DEFAULT_SCOPE`.
    """
    return _provider_cache(credential, scopes, endpoint, allow_http, allowed_hosts, options, "token_provider").get_token


def async_token_provider(
    credential: Credential | TokenCache | None = None,
    scopes: str | Sequence[str] = DEFAULT_SCOPE,
    *,
    endpoint: str | None = None,
    allow_http: bool = False,
    allowed_hosts: Iterable[str] | None = None,
    **options: Unpack[CacheOptions],
) -> Callable[[], Awaitable[str]]:
    """A coroutine function returning a valid token, for `AsyncAzureOpenAI` / `AsyncOpenAI`.

    Takes an async credential (`azure.identity.aio`: awaited on the running loop) or a
    sync one (run in a thread so the loop keeps running). `None` means a sync
    `DefaultAzureCredential`, which needs no aiohttp. `endpoint`, `allow_http`,
    `allowed_hosts` and the scope: as `token_provider`.
    """
    return _provider_cache(
        credential, scopes, endpoint, allow_http, allowed_hosts, options, "async_token_provider"
    ).get_token_async
