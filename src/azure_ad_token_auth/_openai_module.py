"""Where openai's module-level API sends, and what follows from it for the token.

`openai0_endpoint` / `openai1_endpoint` read the endpoint openai is configured with, from
its public module settings (it may be set after install); `ScopeFromEndpoint` keeps the
cache of that endpoint's cloud (`scope_for_url`); `ModuleClientProvider` is the provider
`install_openai_session` gives openai >= 1, which checks that endpoint whenever it changes.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable
from types import ModuleType
from typing import Any

from ._cache import TokenCache
from ._clouds import scope_for_url
from ._errors import ConfigurationError, UsageError
from ._log_filter import hide_credentials_in_logs
from ._providers import ENDPOINT_VARIABLE
from ._registry import resolve_cache
from ._requests import AzureADTokenAuth

__all__ = [
    "EndpointScoped",
    "ModuleClientProvider",
    "OpenAIAuth",
    "ScopeFromEndpoint",
    "openai0_endpoint",
    "openai1_endpoint",
]

_UNSEEN = object()


class ScopeFromEndpoint:
    """The cache for the scope of the endpoint openai is configured with (`scope_for_url`).

    For installs given no scopes: the endpoint may be set after install, so it is read
    when a token is needed, and the cache is looked up again only when it changed.
    """

    __slots__ = ("_credential", "_endpoint", "_options", "_state")

    def __init__(self, credential: Any, options: dict[str, Any], endpoint: Callable[[], object]) -> None:
        self._credential = credential
        self._options = options
        self._endpoint = endpoint
        self._state: tuple[object, TokenCache | None] = (_UNSEEN, None)

    def __call__(self) -> TokenCache:
        endpoint = self._endpoint()
        seen, cache = self._state  # one tuple: threads see a pair that belongs together
        if cache is None or not (endpoint is seen or endpoint == seen):
            url = str(endpoint) if endpoint else None
            cache = resolve_cache(self._credential, scope_for_url(url), self._options, "install_openai_session")  # type: ignore[arg-type]
            self._state = (endpoint, cache)
        return cache


class EndpointScoped:
    """`cache` follows `ScopeFromEndpoint` when set (no scopes given), else stays fixed."""

    _scoped: ScopeFromEndpoint | None = None
    _fixed: TokenCache

    @property
    def cache(self) -> TokenCache:
        scoped = self._scoped
        return self._fixed if scoped is None else scoped()

    @cache.setter
    def cache(self, value: TokenCache) -> None:
        self._fixed = value


class OpenAIAuth(EndpointScoped, AzureADTokenAuth):
    """The requests auth `install_openai_session` installs and returns.

    With `scoped` (no scopes given), `cache` is the configured endpoint's (what the module
    client's provider hands out on openai >= 1), and each request this auth sees (openai
    0.28 sends through it) gets the token of its own URL's scope, as `AzureADTokenAuth`
    with no scopes: `openai.api_base` may move after the first request.
    """

    def __init__(self, credential: Any, scopes: Any, scoped: ScopeFromEndpoint | None, **options: Any) -> None:
        super().__init__(credential, scopes, **options)
        self._scoped = scoped
        if scoped is not None:
            self._follows_cloud = True


def openai0_endpoint(openai: ModuleType) -> Callable[[], object]:
    return lambda: getattr(openai, "api_base", None)


def openai1_endpoint(openai: ModuleType) -> Callable[[], object]:
    def endpoint() -> object:
        # Where the module client sends: `openai.base_url` once set (the module client's
        # `base_url` follows it), else the endpoint openai builds the client from.
        return (
            getattr(openai, "base_url", None)
            or getattr(openai, "azure_endpoint", None)
            or os.environ.get(ENDPOINT_VARIABLE)
        )

    return endpoint


class ModuleClientProvider:
    """openai >= 1's module client calls this on every request, and its realtime
    (websocket) `connect()` once per connection, without the URL.

    A provider sees no request: it checks the endpoint openai's public module settings name
    (`openai1_endpoint`), by the https rule and `allowed_hosts`, each time that endpoint
    changes (`InsecureTransportError` before the token is fetched), then hands openai the
    real token. The URL each request really goes to (a `with_options(base_url=...)` copy's,
    or the endpoint a module client built earlier keeps after the settings change) is
    checked by the `http_client` auth `install_openai_session` installs beside it; when the
    application sets `openai.http_client` itself, by a request hook (`RequestCheck`) added to
    that client's public `event_hooks` before the token is handed over. Once
    `openai.azure_ad_token_provider` names another provider, it refuses (`UsageError`): a
    module client openai built earlier still calls it.
    """

    __slots__ = ("_auth", "_checked", "_endpoint", "_guarded", "_last_client", "_openai", "_request_check")

    def __init__(self, openai: ModuleType, auth: AzureADTokenAuth) -> None:
        self._openai = openai
        self._auth = auth
        self._endpoint = openai1_endpoint(openai)
        self._checked: object = _UNSEEN
        self._request_check = RequestCheck(auth)
        hide_credentials_in_logs()  # the realtime handshake's headers, logged by websockets
        self._guarded: weakref.WeakSet[Any] = weakref.WeakSet()
        self._last_client: Callable[[], object] = lambda: None

    def __call__(self) -> str:
        auth = self._auth
        if getattr(self._openai, "azure_ad_token_provider", None) is not self:
            # openai builds its module client once and keeps the provider of that moment.
            raise UsageError(
                "the openai module client was built while install_openai_session() was in place, and "
                "openai.azure_ad_token_provider no longer names that install's provider (uninstalled or "
                "replaced): openai rebuilds its module client only through its private "
                "openai._reset_client(). Install before the first request, uninstall after the last"
            )
        endpoint = self._endpoint()
        checked = self._checked
        if endpoint is not checked and endpoint != checked:
            if not endpoint:
                raise ConfigurationError(
                    "install_openai_session()'s provider was called, but openai names no endpoint "
                    f"(openai.base_url, openai.azure_endpoint, {ENDPOINT_VARIABLE}): nothing says where "
                    "the token would go"
                )
            auth.policy.check_url(str(endpoint))
            self._checked = endpoint
        # openai's module client sends with `openai.http_client`, read per request. The check is
        # looked for on each call: an application may replace the client's `event_hooks` whole
        # (httpx's documented way to add a hook), which drops it.
        client = getattr(self._openai, "http_client", None)
        if client is not None and (
            client is not self._last_client() or self._request_check not in client.event_hooks.get("request", ())
        ):
            self._guard(client)
        return auth.cache.get_token()

    def _guard(self, client: Any) -> None:
        """Add the request check to `client`'s event hooks (public httpx/httpx2 API), once."""
        hooks = getattr(client, "event_hooks", None)
        if not isinstance(hooks, dict):
            raise UsageError(
                f"openai.http_client is a {type(client).__name__} with no event_hooks: the token could go to "
                "any URL it is given unchecked. Set an httpx client (openai.DefaultHttpxClient), or leave "
                "openai.http_client unset so that install_openai_session() sets one"
            )
        if self._request_check not in hooks.get("request", ()):
            client.event_hooks = {**hooks, "request": [*hooks.get("request", ()), self._request_check]}
        self._guarded.add(client)
        self._last_client = weakref.ref(client)

    def release(self) -> None:
        """Take the request check off every client it was added to (`uninstall_openai_session`)."""
        for client in list(self._guarded):
            hooks = client.event_hooks
            client.event_hooks = {**hooks, "request": [h for h in hooks["request"] if h is not self._request_check]}
        self._guarded.clear()
        self._last_client = lambda: None

    def __repr__(self) -> str:
        return f"<openai module-client token provider for {self._auth!r}>"


class RequestCheck:
    """A request hook for an http client the application set as `openai.http_client`.

    httpx and httpx2 call request hooks with each request as it is about to go out
    (redirects included), after openai has put the provider's token in it. A request
    carrying an `Authorization` or `api-key` header to a URL the install's rules refuse
    (plain http without `allow_http`, a host outside `allowed_hosts`) raises
    `InsecureTransportError` there: nothing is sent. Requests without either header pass.
    """

    __slots__ = ("_auth",)

    def __init__(self, auth: AzureADTokenAuth) -> None:
        self._auth = auth

    def __call__(self, request: Any) -> None:
        # No `headers` local: httpx's repr of them hides `Authorization` but not `api-key`,
        # and an error tracker renders this frame's locals when the check refuses.
        if "authorization" in request.headers or "api-key" in request.headers:
            self._auth.policy.check_url(str(request.url))

    def __repr__(self) -> str:
        return f"<install_openai_session request check for {self._auth!r}>"
