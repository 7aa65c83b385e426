"""Token providers for openai >= 1 (`azure_ad_token_provider=` or a callable `api_key=`)."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Awaitable, Callable, Iterable, Sequence
from types import FrameType
from typing import TYPE_CHECKING, Any

from ._cache import TokenCache
from ._clouds import scope_for_url
from ._errors import ConfigurationError
from ._policy import HostPolicy, Proxied
from ._proxies import environment_proxied, httpx_client_proxied, websocket_proxied
from ._registry import DEFAULT_SCOPE, is_default_scope, resolve_cache
from ._settings import CacheOptions

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ._credential import Credential

__all__ = ["async_token_provider", "calling_client", "check_client", "token_provider"]

# What openai >= 1 itself reads when `azure_endpoint` is not given.
ENDPOINT_VARIABLE = "AZURE_OPENAI_ENDPOINT"

_log = logging.getLogger("azure_ad_token_auth")

_CALLER_DEPTH = 6  # openai's own method, and a few wrappers between it and the provider
# The methods by which openai >= 1 clients ask for a token (1.x to 3.x).
_TOKEN_METHODS = frozenset({"_get_azure_ad_token", "_refresh_api_key", "sync_refresh_api_key", "async_refresh_api_key"})
_WEBSOCKET_SCHEMES = {"ws://": "http://", "wss://": "https://"}


def _client_type() -> Any:
    """openai's client base class, once openai is imported (None before)."""
    return getattr(sys.modules.get("openai._base_client"), "BaseClient", None)


def calling_client(provider: object) -> Any:
    """The openai client asking `provider` for a token (None when it is called some other way).

    openai >= 1 (1.x to 3.x) calls a token provider only from the client's own method
    (`_get_azure_ad_token` for `azure_ad_token_provider=`, `_refresh_api_key` for a
    callable `api_key=`): the nearest such frame up the stack, maybe behind a wrapper
    (`lambda: provider()`), holds the client that will send the token. A copy made with
    `with_options(...)` is found as itself. Only those frames' locals are read.
    """
    client_type = _client_type()
    if client_type is None:
        return None  # openai not imported: no client can be asking
    frame: FrameType | None = sys._getframe(2)
    for _ in range(_CALLER_DEPTH):
        if frame is None:
            return None
        if frame.f_code.co_name in _TOKEN_METHODS:
            candidate = frame.f_locals.get("self")
            if isinstance(candidate, client_type):
                return candidate
        frame = frame.f_back
    return None


def _as_http(url: str) -> str:
    """A websocket URL as the http URL the same rules apply to (ws: plain, wss: TLS)."""
    for prefix, http in _WEBSOCKET_SCHEMES.items():
        if url[: len(prefix)].lower() == prefix:
            return http + url[len(prefix) :]
    return url


def _http_client_route(http_client: Any) -> Proxied:
    """How openai's own http client (httpx / httpx2) sends a URL, asked of the client itself
    (its mounts and proxies, `_proxies.httpx_client_proxied`); no http client: the environment."""
    if http_client is None:
        return environment_proxied
    return lambda url: httpx_client_proxied(http_client, url)


# The last base URL read and its text: `str()` of an httpx URL costs more than the whole
# check, and a client hands back the same URL object on every request. The tuple is
# swapped whole, so threads always see a matching pair.
_last_base_url: tuple[object, str] = (None, "")


def _base_url_text(url: object) -> str:
    global _last_base_url
    seen, text = _last_base_url
    if seen is not url:
        text = str(url)
        _last_base_url = (url, text)
    return text


def check_client(client: Any, policy: HostPolicy) -> None:
    """Apply `policy` to where `client` sends the token: its `base_url` (through its own
    http client's proxies) and its realtime `websocket_base_url` when set.

    Raises `InsecureTransportError`, before any token is fetched.
    """
    policy.check_url(_base_url_text(client.base_url), _http_client_route(getattr(client, "_client", None)))
    websocket = getattr(client, "websocket_base_url", None)
    if websocket is not None:
        # The websocket client (not the http one) sends the realtime handshake: its proxies decide.
        url = str(websocket)
        policy.check_url(_as_http(url), lambda http: websocket_proxied(url, http))


class _Provider:
    """A token provider that checks the client asking it (see `calling_client`) each call.

    Called outside an openai client (a wrapper such as litellm fetching the token itself),
    only the endpoint checked when it was made vouches for where the token goes; with no
    endpoint at all, one WARNING says so.
    """

    __slots__ = ("_policy", "_tls_checked", "_unchecked", "cache")
    _made_by = "token_provider()"

    def __init__(self, cache: TokenCache, policy: HostPolicy, endpoint_checked: bool) -> None:
        self.cache = cache
        self._policy = policy
        self._unchecked = not endpoint_checked
        # The last client found sending only over TLS (https, and wss or no websocket), with
        # the URL objects it was checked with: the answer for those can change only if they do.
        self._tls_checked: tuple[object, object, object] | None = None

    def _check_caller(self) -> None:
        # openai calls the provider straight from its token method: that frame first (the
        # common case, cheap), else the walk up the stack (a wrapper in between).
        frame = sys._getframe(2)
        client = frame.f_locals.get("self") if frame.f_code.co_name in _TOKEN_METHODS else None
        if client is None or not isinstance(client, _client_type() or ()):
            client = calling_client(self)
        if client is not None:
            # The URL object `base_url` returns, read where openai keeps it: openai 3.x's
            # property imports a module on every read, which costs more than the whole check.
            stored = getattr(client, "__dict__", {}).get("_base_url")
            websocket = getattr(client, "websocket_base_url", None)
            seen = self._tls_checked
            if seen is not None and stored is not None and seen == (client, stored, websocket):
                return
            check_client(client, self._policy)
            tls = _base_url_text(client.base_url).startswith("https://") and (
                websocket is None or str(websocket)[:6].lower() == "wss://"
            )
            self._tls_checked = (client, stored, websocket) if tls and stored is client.base_url else None
        elif self._unchecked:
            self._unchecked = False
            _log.warning(
                "%s called outside an openai client and made without endpoint= (nor %s): where its "
                "tokens go is not checked; pass endpoint= to have it refuse plain http off the machine",
                self._made_by,
                ENDPOINT_VARIABLE,
            )

    def __repr__(self) -> str:
        return f"<{type(self).__name__} for {self.cache!r}>"


class _SyncProvider(_Provider):
    __slots__ = ()

    def __call__(self) -> str:
        self._check_caller()
        return self.cache.get_token()


class _AsyncProvider(_Provider):
    __slots__ = ()
    _made_by = "async_token_provider()"

    def __call__(self) -> Awaitable[str]:
        self._check_caller()  # now, while the client awaiting the answer is on the stack
        return self.cache.get_token_async()


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
) -> Callable[[], Awaitable[str]]:
    """A coroutine function returning a valid token, for `AsyncAzureOpenAI` / `AsyncOpenAI`.

    Takes an async credential (`azure.identity.aio`: awaited on the running loop) or a
    sync one (run in a thread so the loop keeps running). `None` means a sync
    `DefaultAzureCredential`, which needs no aiohttp. `endpoint`, `allow_http`,
    `allowed_hosts` and the scope: as `token_provider`.
    """
    parts = _provider_parts(credential, scopes, endpoint, allow_http, allowed_hosts, options, "async_token_provider")
    return _AsyncProvider(*parts)
