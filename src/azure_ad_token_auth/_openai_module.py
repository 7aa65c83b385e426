"""Where openai's module-level API sends, and what follows from it for the token.

`openai0_endpoint` / `openai1_endpoint` read the endpoint openai is configured with (it
may be set after install); `ScopeFromEndpoint` keeps the cache of that endpoint's cloud
(`scope_for_url`); `ModuleClientProvider` is the provider `install_openai_session`
gives openai >= 1, which checks the URLs of the client asking before handing it a token.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

from ._asking import AskingClientCheck, check_client
from ._cache import TokenCache
from ._clouds import scope_for_url
from ._proxies import environment_proxied
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


class ModuleClientProvider:
    """openai >= 1's module client calls this on every request, and its realtime
    (websocket) `connect()` once per connection, without the URL.

    It always hands over the real token (openai puts it in the request's or the
    websocket handshake's `Authorization`), after applying the https rule and
    `allowed_hosts` to the client asking (`check_client`: the module client, a copy made
    with `with_options(...)`, or any client it was handed to), or to the module client
    when called outside a client. Raises `InsecureTransportError` before the token is
    fetched.
    """

    def __init__(self, openai: ModuleType, auth: AzureADTokenAuth) -> None:
        self._openai = openai
        self._auth = auth
        self._asking = AskingClientCheck(auth.policy)

    def __call__(self) -> str:
        frame = sys._getframe(1)
        if not self._asking.seen(frame) and self._asking.check(frame) is None:
            client = getattr(self._openai, "_client", None)
            if client is not None:
                check_client(client, self._auth.policy)
            else:  # not built yet: where it will be built to send
                target = getattr(self._openai, "base_url", None) or getattr(self._openai, "azure_endpoint", "")
                self._auth.policy.check_url(str(target), environment_proxied)
        return self._auth.cache.get_token()

    def __repr__(self) -> str:
        return f"<openai module-client token provider for {self._auth!r}>"
