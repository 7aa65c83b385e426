"""Token providers for openai >= 1 (`azure_ad_token_provider=` or a callable `api_key=`)."""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Coroutine, Iterable, Sequence
from types import FrameType
from typing import TYPE_CHECKING, Any

from ._asking import AskingClientCheck
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

_log = logging.getLogger("azure_ad_token_auth")
_getframe = sys._getframe
_now = time.time


class _Provider(AskingClientCheck):
    """A token provider that checks the openai client asking it at each call (`_asking`).

    Called outside an openai client (a wrapper such as litellm fetching the token itself),
    only the endpoint checked when it was made vouches for where the token goes; with no
    endpoint at all, one WARNING says so.
    """

    __slots__ = ("_unchecked", "cache")
    _made_by = "token_provider()"

    def __init__(self, cache: TokenCache, policy: HostPolicy, endpoint_checked: bool) -> None:
        super().__init__(policy)
        self.cache = cache
        self._unchecked = not endpoint_checked

    def _check_asking(self, frame: FrameType | None) -> None:
        """A caller not `seen` before: check the client asking from `frame`, or warn once
        that no client is asking and no endpoint was checked."""
        if self.check(frame) is None and self._unchecked:
            self._unchecked = False
            _log.warning(
                "%s called outside an openai client and made without endpoint= (nor %s): where its "
                "tokens go is not checked; pass endpoint= to have it refuse plain http off the machine",
                self._made_by,
                ENDPOINT_VARIABLE,
            )

    def __repr__(self) -> str:
        return f"<{type(self).__name__} for {self.cache!r}>"


# openai calls a provider on every request, so its per-call path is kept short: the frame
# is read inline, and the cached token as `TokenCache.get_token` reads it, without the call.


class _SyncProvider(_Provider):
    __slots__ = ()

    def __call__(self) -> str:
        try:
            frame: FrameType | None = _getframe(1)
        except ValueError:  # called with no Python frame below
            frame = None
        if frame is None or not self.seen(frame):
            self._check_asking(frame)
        entry = self.cache.current
        if entry is not None and _now() < entry.refresh_at:
            return entry.token
        return self.cache.get_token()


class _AsyncProvider(_Provider):
    __slots__ = ()
    _made_by = "async_token_provider()"

    def __call__(self) -> Coroutine[Any, Any, str]:
        # Checked when called, while openai's method (or a wrapper it called) is on the stack:
        # a wrapper may run the coroutine in a task, where nothing shows who asked.
        try:
            frame: FrameType | None = _getframe(1)
        except ValueError:  # called with no Python frame below
            frame = None
        if (frame is not None and self.seen(frame)) or self.check(frame) is not None:
            return self.cache.get_token_async()
        return self._checked_when_awaited()

    async def _checked_when_awaited(self) -> str:
        """No openai client asked when this was made: one awaiting it now is checked."""
        try:
            frame: FrameType | None = _getframe(1)
        except ValueError:  # awaited with no Python frame below
            frame = None
        self._check_asking(frame)
        return await self.cache.get_token_async()


def _provider_parts(
    credential: Credential | TokenCache | None,
    scopes: str | Sequence[str],
    endpoint: str | None,
    allow_http: bool,
    allowed_hosts: Iterable[str] | None,
    options: CacheOptions,
    caller: str,
) -> tuple[TokenCache, HostPolicy, bool]:
    """The cache and policy behind a provider, after checking the endpoint it will serve."""
    policy = HostPolicy(allow_http, allowed_hosts)
    if endpoint is None:
        endpoint = os.environ.get(ENDPOINT_VARIABLE) or None
    if endpoint is None:
        if allowed_hosts is not None:
            raise ConfigurationError(
                "allowed_hosts needs endpoint=: a provider called outside an openai client sees no URL"
            )
        return resolve_cache(credential, scopes, options, caller), policy, False
    # Checked now by the rule every adapter applies per request (InsecureTransportError,
    # nothing sent); the client asking is checked again at each call.
    policy.check_url(endpoint, environment_proxied)
    if is_default_scope(scopes) and not isinstance(credential, TokenCache):
        scopes = scope_for_url(endpoint)
    return resolve_cache(credential, scopes, options, caller), policy, True


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
    plain http only to a loopback host not reached through a proxy, unless
    `allow_http=True`, and only to `allowed_hosts` when given; otherwise
    `InsecureTransportError`, before any token is fetched. At every call the same rule is
    applied to the openai client asking (its `base_url`, through its http client's
    proxies, and its `websocket_base_url`), so a client or a `with_options(...)` copy
    sending elsewhere than `endpoint` is checked too. With no `scopes`, the scope is the
    endpoint's cloud's (`*.azure.us`: Azure Government, `*.azure.cn`: Azure China), else
    `DEFAULT_SCOPE`.
    """
    return _SyncProvider(
        *_provider_parts(credential, scopes, endpoint, allow_http, allowed_hosts, options, "token_provider")
    )


def async_token_provider(
    credential: Credential | TokenCache | None = None,
    scopes: str | Sequence[str] = DEFAULT_SCOPE,
    *,
    endpoint: str | None = None,
    allow_http: bool = False,
    allowed_hosts: Iterable[str] | None = None,
    **options: Unpack[CacheOptions],
) -> Callable[[], Coroutine[Any, Any, str]]:
    """A coroutine function returning a valid token, for `AsyncAzureOpenAI` / `AsyncOpenAI`.

    Takes an async credential (`azure.identity.aio`: awaited on the running loop) or a
    sync one (run in a thread so the loop keeps running). `None` means a sync
    `DefaultAzureCredential`, which needs no aiohttp. `endpoint`, `allow_http`,
    `allowed_hosts` and the scope: as `token_provider`.
    """
    parts = _provider_parts(credential, scopes, endpoint, allow_http, allowed_hosts, options, "async_token_provider")
    return _AsyncProvider(*parts)
