"""Where openai's module-level API sends, and what follows from it for the token.

`openai0_endpoint` / `openai1_endpoint` read the endpoint openai is configured with (it
may be set after install); `ScopeFromEndpoint` keeps the cache of that endpoint's cloud
(`scope_for_url`); `ModuleClientProvider` is the provider `install_openai_session`
gives openai >= 1, which checks the URLs of the client asking before handing it a token.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from types import FrameType, ModuleType
from typing import Any

from ._cache import TokenCache
from ._clouds import scope_for_url
from ._policy import Proxied
from ._proxies import environment_proxied, httpx_client_proxied, websocket_proxied
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
    """The requests auth `install_openai_session` installs and returns."""


def openai0_endpoint(openai: ModuleType) -> Callable[[], object]:
    return lambda: getattr(openai, "api_base", None)


def openai1_endpoint(openai: ModuleType) -> Callable[[], object]:
    def endpoint() -> object:
        # Where requests really go: the built client's base URL (a later
        # `openai.base_url` wins over the endpoint), else what openai will build it from.
        client = getattr(openai, "_client", None)
        target = getattr(client, "base_url", None) if client is not None else None
        return (
            target
            or getattr(openai, "base_url", None)
            or getattr(openai, "azure_endpoint", None)
            or os.environ.get("AZURE_OPENAI_ENDPOINT")
        )

    return endpoint


_WEBSOCKET_SCHEMES = {"ws://": "http://", "wss://": "https://"}


def _as_http(url: str) -> str:
    """A websocket URL as the http URL the same rules apply to (ws: plain, wss: TLS)."""
    for prefix, http in _WEBSOCKET_SCHEMES.items():
        if url[: len(prefix)].lower() == prefix:
            return http + url[len(prefix) :]
    return url


class ModuleClientProvider:
    """openai >= 1's module client calls this on every request, and its realtime
    (websocket) `connect()` once per connection, without the URL.

    It always hands over the real token (openai puts it in the request's or the
    websocket handshake's `Authorization`), after applying the https rule and
    `allowed_hosts` to the URLs of the client asking (the module client, or a copy made
    with `with_options(...)`): its `base_url`, and its `websocket_base_url` when set.
    A plain-http loopback URL counts as sent through a proxy when the environment names
    one, unless the client's http client is ours (our auth then decides per request, with
    the client's own proxies). Raises `InsecureTransportError` before the token is fetched.
    """

    def __init__(self, openai: ModuleType, auth: AzureADTokenAuth, http_client: Any) -> None:
        self._openai = openai
        self._auth = auth
        self._http_client = http_client

    def __call__(self) -> str:
        client = self._calling_client()
        if client is None:
            client = getattr(self._openai, "_client", None)
        policy = self._auth.policy
        base = getattr(client, "base_url", None) if client is not None else None
        target = str(base or getattr(self._openai, "base_url", None) or getattr(self._openai, "azure_endpoint", ""))
        http_client = getattr(client, "_client", None)
        ours = self._http_client is not None and http_client is self._http_client
        # Not ours: the application's own http client decides, as it will send the request
        # (its mounts and proxies); no client at all: the environment openai's would trust.
        route: Proxied | None = None
        if not ours:
            route = environment_proxied if http_client is None else functools.partial(httpx_client_proxied, http_client)
        policy.check_url(target, route)
        websocket = getattr(client, "websocket_base_url", None) if client is not None else None
        if websocket is not None:
            websocket = str(websocket)
            policy.check_url(_as_http(websocket), lambda http: websocket_proxied(websocket, http))
        return self._auth.cache.get_token()

    def _calling_client(self) -> Any:
        # openai calls the provider from the client's `_get_azure_ad_token(self)`: that
        # client (the module client or a copy of it) is the one sending.
        frame: FrameType | None = sys._getframe(2)
        for _ in range(3):
            if frame is None:
                return None
            candidate = frame.f_locals.get("self")
            if candidate is not None and getattr(candidate, "_azure_ad_token_provider", None) is self:
                return candidate
            frame = frame.f_back
        return None

    def __repr__(self) -> str:
        return f"<openai module-client token provider for {self._auth!r}>"
