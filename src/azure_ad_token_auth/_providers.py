"""Token providers for openai >= 1 (`azure_ad_token_provider=` or a callable `api_key=`).

openai calls a provider with no argument on every request and every retry: a provider
never sees a request. What it can check is the endpoint it is made for, once, when it is
made (the adapters' rule, `HostPolicy`); per call it only reads the cached token, so it
costs about what a function returning a fixed string costs (benchmarks/). Checking each
request's real URL is the `http_client` auth's job (`_openai_client`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Coroutine, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, cast

from . import _reset
from ._cache import TokenCache
from ._clouds import scope_for_url
from ._credential import check_sync_credential
from ._errors import ConfigurationError, ConfigurationTypeError, UsageError
from ._log_filter import hide_credentials_in_logs
from ._policy import HostPolicy
from ._registry import SCOPE_NOT_GIVEN, is_default_scope, resolve_cache
from ._settings import CacheOptions

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ._credential import Credential

__all__ = ["ENDPOINT_VARIABLE", "AsyncTokenProvider", "TokenProvider", "async_token_provider", "token_provider"]

# What openai >= 1 itself reads when `azure_endpoint` is not given.
ENDPOINT_VARIABLE = "AZURE_OPENAI_ENDPOINT"

_log = logging.getLogger("azure_ad_token_auth")
_now = time.time
_running_loop = asyncio.get_running_loop

# An async provider handed to a sync openai client (the slip) is called with no running event
# loop: refused, naming the fix. The coroutines it returns carry the fix in their name too, which
# is what shows when a sync client gets one on a thread running a loop: in Python's "coroutine
# ... was never awaited" warning, and in openai 1.x/2.x's error, which prints the value.
_NO_LOOP = (
    "async_token_provider() was called with no running event loop: it is for async clients "
    "(AsyncAzureOpenAI, AsyncOpenAI), which await it. A sync client (AzureOpenAI, OpenAI) takes "
    "token_provider(); nothing was sent. In your own code, await provider() inside a coroutine."
)
_NEVER_AWAITED = "async_token_provider() is for async clients; a sync client takes token_provider()"
# Whether a provider made without an endpoint has warned yet: once per process is enough to
# be seen, and ported test suites (azure-identity's, langchain's) make many such providers.
_unchecked_warned = False


class TokenProvider(Protocol):
    """What `token_provider()` returns: call it for a valid token; `cache` is the
    `TokenCache` it reads (share it with an `http_client` auth)."""

    cache: TokenCache

    def __call__(self) -> str: ...


class AsyncTokenProvider(Protocol):
    """What `async_token_provider()` returns: await its call for a valid token; `cache` is
    the `TokenCache` it reads."""

    cache: TokenCache

    def __call__(self) -> Coroutine[Any, Any, str]: ...


def _warn_unchecked(caller: str) -> None:
    global _unchecked_warned
    if _unchecked_warned:
        return
    _unchecked_warned = True
    _log.warning(
        "%s() made without endpoint= (nor %s): nothing checks where its tokens go. Pass "
        "endpoint=<the endpoint your client sends to> to have it refused unless https (and inside "
        "allowed_hosts), before any token is fetched. Logged once per process.",
        caller,
        ENDPOINT_VARIABLE,
    )


def _warn_again() -> None:
    global _unchecked_warned
    _unchecked_warned = False


_reset.on_reset(_warn_again)  # the testing kit's reset: as in a new process


def positional_scopes(
    scopes: tuple[str | Sequence[str], ...], options: CacheOptions, caller: str
) -> str | Sequence[str]:
    """The scopes given positionally, as azure-identity's `get_bearer_token_provider(credential,
    *scopes)` takes them (none: `SCOPE_NOT_GIVEN`, which lets the endpoint choose). One sequence
    alone (`[scope1, scope2]`, this package's earlier form) is taken as the scopes."""
    if "scopes" in options:
        raise UsageError(
            f"{caller}() takes scopes positionally, as azure-identity's get_bearer_token_provider(credential, "
            f"*scopes) does: {caller}(credential, {SCOPE_NOT_GIVEN!r})"
        )
    if not scopes:
        return SCOPE_NOT_GIVEN
    if len(scopes) == 1:
        return scopes[0]  # one string, or one sequence of them (checked by `normalize_scopes`)
    if not all(isinstance(scope, str) for scope in scopes):
        raise ConfigurationTypeError(
            f"{caller}() takes several scopes as separate strings: {caller}(credential, scope1, scope2); got {scopes!r}"
        )
    return cast("tuple[str, ...]", scopes)


def provider_cache(
    credential: Credential | TokenCache | None,
    scopes: str | Sequence[str],
    endpoint: str | None,
    allow_http: bool,
    allowed_hosts: Iterable[str] | None,
    options: CacheOptions,
    caller: str,
) -> TokenCache:
    """The cache behind a provider, after checking, once, the endpoint it serves.

    `endpoint` (else `AZURE_OPENAI_ENDPOINT`, as openai reads it) gets the adapters' rule
    (`InsecureTransportError`, nothing fetched) and, with no scopes given, picks the scope
    (`scope_for_url`, Foundry project paths included). No endpoint at all: nothing to check,
    one WARNING per process says so. The `websockets` logger gets `CredentialHeaderFilter`:
    openai's realtime handshake carries the provider's token, and websockets logs its
    headers at DEBUG.
    """
    hide_credentials_in_logs()
    if endpoint is None:
        endpoint = os.environ.get(ENDPOINT_VARIABLE) or None
    if endpoint is None:
        if allowed_hosts is not None:
            raise ConfigurationError(f"allowed_hosts needs endpoint=: {caller}() sees no URL but its endpoint's")
        cache = resolve_cache(credential, scopes, options, caller)
        _warn_unchecked(caller)
        return cache
    HostPolicy(allow_http, allowed_hosts).check_url(endpoint)
    if is_default_scope(scopes) and not isinstance(credential, TokenCache):
        scopes = scope_for_url(endpoint)
    return resolve_cache(credential, scopes, options, caller)


# openai calls a provider on every request: each is a plain closure (cheaper to call than an
# instance's `__call__`), reading the cached token as `TokenCache.get_token` does, inline.


def _sync_provider(cache: TokenCache) -> TokenProvider:
    def token_provider() -> str:
        entry = cache.current
        if entry is not None and _now() < entry.refresh_at:
            return entry.token
        return cache.get_token()

    provider = cast(TokenProvider, token_provider)
    provider.cache = cache
    return provider


def _async_provider(cache: TokenCache) -> AsyncTokenProvider:
    async def fetch() -> str:
        entry = cache.current
        if entry is not None and _now() < entry.refresh_at:
            return entry.token
        return await cache.get_token_async()

    fetch.__qualname__ = fetch.__name__ = _NEVER_AWAITED
    # Checked until a call finds a loop running: asking costs a system call per call on
    # Python 3.11 (`getpid()` inside `get_running_loop`), more than the rest of the provider.
    loop_seen = False

    def async_token_provider() -> Coroutine[Any, Any, str]:
        nonlocal loop_seen
        if not loop_seen:
            try:
                _running_loop()
            except RuntimeError:
                raise UsageError(_NO_LOOP) from None
            loop_seen = True
        return fetch()

    provider = cast(AsyncTokenProvider, async_token_provider)
    provider.cache = cache
    return provider


def token_provider(
    credential: Credential | TokenCache | None = None,
    *scopes: str | Sequence[str],
    endpoint: str | None = None,
    allow_http: bool = False,
    allowed_hosts: Iterable[str] | None = None,
    **options: Unpack[CacheOptions],
) -> TokenProvider:
    """A zero-argument function returning a valid token, for openai's sync clients.

    ```python
    endpoint = "https://<resource>.openai.azure.com"
    client = AzureOpenAI(azure_endpoint=endpoint, api_version="2024-10-21",
                         azure_ad_token_provider=token_provider(endpoint=endpoint))
    ```

    openai calls it on every request and every retry; it answers from the cache, so the
    credential is asked once per token lifetime; an async credential (`azure.identity.aio`)
    is refused, naming its sync twin. Scopes go positionally, as with
    azure-identity's `get_bearer_token_provider(credential, *scopes)`:
    `token_provider(credential, "api://my-app/.default")`; one list of them is taken too.

    `endpoint` (default: the `AZURE_OPENAI_ENDPOINT` environment variable, as openai reads
    it) is the endpoint the client sends to, checked once, now, by the adapters' rule:
    https, or plain http with `allow_http=True`; a host in `allowed_hosts` when given;
    otherwise `InsecureTransportError` before any token is fetched. With no `scopes`, the
    scope is the endpoint's (`*.azure.us`: Azure Government, `*.azure.cn`: Azure China,
    Foundry project paths: `https://ai.azure.com/.default`), else `DEFAULT_SCOPE`. A
    provider never sees the requests its token goes with: to have each request's URL
    checked, give the client an `http_client` carrying this package's auth
    (`azure_openai_client()` builds both). Without any endpoint nothing is checked; one
    WARNING per process says so. `.cache` is the `TokenCache` it reads.
    """
    chosen = positional_scopes(scopes, options, "token_provider")
    check_sync_credential(
        credential.credential if isinstance(credential, TokenCache) else credential,
        "token_provider",
        "async openai clients take async_token_provider(), which awaits an async credential",
    )
    return _sync_provider(
        provider_cache(credential, chosen, endpoint, allow_http, allowed_hosts, options, "token_provider")
    )


def async_token_provider(
    credential: Credential | TokenCache | None = None,
    *scopes: str | Sequence[str],
    endpoint: str | None = None,
    allow_http: bool = False,
    allowed_hosts: Iterable[str] | None = None,
    **options: Unpack[CacheOptions],
) -> AsyncTokenProvider:
    """A coroutine function returning a valid token, for `AsyncAzureOpenAI` / `AsyncOpenAI`.

    Takes an async credential (`azure.identity.aio`: awaited on the running loop) or a
    sync one (run in a thread so the loop keeps running). `None` means a sync
    `DefaultAzureCredential`, which needs no aiohttp. Scopes, `endpoint`, `allow_http`,
    `allowed_hosts`: as `token_provider`.

    Called with no running event loop before it has ever been called inside one, it raises
    `UsageError` naming `token_provider()`: the slip of handing it to a sync client (so
    `asyncio.run(provider())` fails too: `await provider()` inside your coroutine). The
    coroutines it returns are named for that fix, which Python's "never awaited" warning
    shows when a sync client gets one anyway.
    """
    chosen = positional_scopes(scopes, options, "async_token_provider")
    return _async_provider(
        provider_cache(credential, chosen, endpoint, allow_http, allowed_hosts, options, "async_token_provider")
    )
