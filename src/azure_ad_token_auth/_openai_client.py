"""openai >= 1 clients whose every request is checked: the provider and the `http_client` auth
wired to one endpoint.

A provider hands openai the token without seeing a request; openai then puts it in the
request's `Authorization` header itself. The auth on the client's `http_client` sees every
request's real URL (a `with_options(base_url=...)` copy's, an absolute URL passed to
`client.get()`), so it is where that URL is checked. Everything here uses openai's public
names only: `openai.DefaultHttpxClient` / `DefaultAsyncHttpxClient` (openai's defaults:
timeouts, connection limits, redirects), whose base class tells httpx from httpx2, and the
clients' constructors.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

from ._cache import TokenCache
from ._errors import ConfigurationError, UnsupportedVersionError, UsageError
from ._extras import require
from ._policy import DEFAULT_PORTS, HostPolicy
from ._providers import ENDPOINT_VARIABLE, async_token_provider, token_provider
from ._registry import SCOPE_NOT_GIVEN
from ._settings import CacheOptions

if TYPE_CHECKING:
    from openai import AsyncAzureOpenAI, AzureOpenAI
    from typing_extensions import Unpack

    from ._credential import Credential

__all__ = [
    "async_azure_openai_client",
    "azure_openai_client",
    "default_http_client",
    "openai_http_package",
    "strict_auth_class",
]


def openai_http_package(openai: ModuleType) -> str | None:
    """`"httpx"` or `"httpx2"`: the package openai's default http client is built on (read from
    `openai.DefaultHttpxClient`'s base classes); None for an openai without it (< 1.17)."""
    client = getattr(openai, "DefaultHttpxClient", None)
    for klass in getattr(client, "__mro__", ()):
        package = str(klass.__module__).partition(".")[0]
        if package in ("httpx", "httpx2"):
            return package
    return None


@functools.cache
def strict_auth_class(package: str) -> Any:
    """The `AzureADHttpxAuth` of `package`, refusing what it may not give the token to.

    openai has put the token in the request before the auth runs: a request to plain http
    (without `allow_http`) or outside `allowed_hosts` is refused (`InsecureTransportError`,
    nothing sent) rather than sent on with openai's header. Checked where httpx calls an auth
    (`sync_auth_flow` / `async_auth_flow`, its public protocol), by the drivers' per-request
    path (`AdapterBase._refuse_elsewhere`).
    """
    if package == "httpx2":
        from .httpx2 import AzureADHttpxAuth
    else:
        from .httpx import AzureADHttpxAuth  # type: ignore[assignment]

    class OpenAIHttpClientAuth(AzureADHttpxAuth):
        """`AzureADHttpxAuth` for an openai client's `http_client`: refuses a request the
        token may not go with, since openai has put it there already."""

        _refuse_elsewhere = True

    OpenAIHttpClientAuth.__qualname__ = f"{package}.OpenAIHttpClientAuth"
    return OpenAIHttpClientAuth


def default_http_client(
    openai: ModuleType,
    *args: Any,
    asynchronous: bool = False,
    http_client_options: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> Any:
    """openai's default http client (sync or async; `http_client_options` go to it) with a
    strict auth made from `args` and `kwargs` (`AzureADHttpxAuth`'s arguments); None for an
    openai without one (< 1.17)."""
    package = openai_http_package(openai)
    if package is None:
        return None
    auth = strict_auth_class(package)(*args, **kwargs)
    factory = openai.DefaultAsyncHttpxClient if asynchronous else openai.DefaultHttpxClient
    return factory(**(http_client_options or {}), auth=auth)


# What the client builders set themselves: the endpoint and the authentication.
_SET_HERE = ("azure_endpoint", "base_url", "api_key", "azure_ad_token", "azure_ad_token_provider", "http_client")


def _endpoint_host(endpoint: str) -> str:
    """The endpoint's host and port as an `allowed_hosts` pattern (`host:port`, `[v6]:port`)."""
    parts = urlsplit(endpoint)
    host = parts.hostname or ""
    port = parts.port or DEFAULT_PORTS.get(parts.scheme.lower(), 443)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _client(
    asynchronous: bool,
    caller: str,
    endpoint: str | None,
    *,
    api_version: str | None,
    credential: Credential | TokenCache | None,
    scopes: str | Sequence[str],
    allow_http: bool,
    client_options: Mapping[str, Any] | None,
    http_client_options: Mapping[str, Any] | None,
    options: CacheOptions,
) -> Any:
    openai = require("openai", "openai", f"{caller}()")
    extra = dict(client_options or {})
    for name in _SET_HERE:
        if name in extra:
            raise UsageError(f"{caller}() sets {name} itself; leave it out of client_options")
    if "auth" in (http_client_options or {}):
        raise UsageError(f"{caller}() sets the http client's auth itself; leave it out of http_client_options")
    endpoint = endpoint or os.environ.get(ENDPOINT_VARIABLE) or None
    if endpoint is None:
        raise ConfigurationError(
            f"{caller}() needs endpoint= (or {ENDPOINT_VARIABLE}): the one endpoint its client sends to"
        )
    make = async_token_provider if asynchronous else token_provider
    provider = make(credential, scopes, endpoint=endpoint, allow_http=allow_http, **options)  # checks the endpoint
    allowed = [_endpoint_host(endpoint)]
    policy = HostPolicy(allow_http, allowed)
    if extra.get("websocket_base_url") is not None:
        policy.check_url(str(extra["websocket_base_url"]))  # wss as https, ws as http
    http_client = default_http_client(
        openai,
        provider.cache,
        asynchronous=asynchronous,
        http_client_options=http_client_options,
        allow_http=allow_http,
        allowed_hosts=allowed,
    )
    if http_client is None:
        raise UnsupportedVersionError(f"{caller}() needs openai >= 1.17 (openai.DefaultHttpxClient)")
    kind = checked_client_class(openai.AsyncAzureOpenAI if asynchronous else openai.AzureOpenAI)
    client = kind(
        azure_endpoint=endpoint,
        api_version=api_version,
        azure_ad_token_provider=provider,
        http_client=http_client,
        **extra,
    )
    client._azure_ad_policy = policy
    return client


# The attributes openai builds request and handshake URLs from (`base_url` is a property over `_base_url`).
_URL_ATTRIBUTES = frozenset({"base_url", "_base_url", "websocket_base_url"})


@functools.cache
def checked_client_class(base: Any) -> Any:
    """`base` (`openai.AzureOpenAI` or `AsyncAzureOpenAI`) whose copies are checked.

    The realtime handshake does not go through the `http_client`: openai builds its URL
    from the client's `websocket_base_url`, else from its `base_url` with the scheme
    `wss`, and sends the token there with the `websockets` package. A copy
    (`copy()`, and `with_options()`, its alias) may change both, and so may assigning
    them, so each copy's URLs, and the client's after each assignment, are checked
    against the endpoint's policy (read through the clients' public `base_url` and
    `websocket_base_url`). A copy may not swap the
    `http_client` either: the auth on it is the per-request check.
    """

    class CheckedClient(base):  # type: ignore[misc]
        _azure_ad_policy: HostPolicy  # ours: set by the builder, passed on to each copy

        def copy(self, *args: Any, **kwargs: Any) -> Any:
            if kwargs.get("http_client") is not None:
                raise UsageError(
                    "a copy of an azure_openai_client() client keeps its http_client (the auth on it checks "
                    "every request); to change the http client's options, make a new client with "
                    "http_client_options"
                )
            copied = super().copy(*args, **kwargs)
            check_client_urls(self._azure_ad_policy, copied)
            copied._azure_ad_policy = self._azure_ad_policy
            return copied

        # openai binds `with_options = copy` in its own class body: rebound here to this `copy`.
        with_options = copy

        def __setattr__(self, name: str, value: Any) -> None:
            # `client.base_url = ...` (openai's public setter) and `client.websocket_base_url = ...`
            # move the realtime handshake, which no auth sees: checked as a copy is, and undone
            # when refused. Before the builder sets the policy (openai's own __init__), nothing is.
            policy = self.__dict__.get("_azure_ad_policy")
            if policy is None or name not in _URL_ATTRIBUTES:
                super().__setattr__(name, value)
                return
            before = getattr(self, name)
            super().__setattr__(name, value)
            try:
                check_client_urls(policy, self)
            except BaseException:
                super().__setattr__(name, before)
                raise

    CheckedClient.__name__ = CheckedClient.__qualname__ = base.__name__
    CheckedClient.__module__ = __name__
    return CheckedClient


def check_client_urls(policy: HostPolicy, client: Any) -> None:
    """Raise `InsecureTransportError` unless the token may go to `client`'s `base_url` and
    (for the realtime handshake) its `websocket_base_url`."""
    policy.check_url(str(client.base_url))
    websocket = getattr(client, "websocket_base_url", None)  # openai < 1.5x has no realtime API
    if websocket is not None:
        policy.check_url(str(websocket))


def azure_openai_client(
    endpoint: str | None = None,
    *,
    api_version: str | None = None,
    credential: Credential | TokenCache | None = None,
    scopes: str | Sequence[str] = SCOPE_NOT_GIVEN,
    allow_http: bool = False,
    client_options: Mapping[str, Any] | None = None,
    http_client_options: Mapping[str, Any] | None = None,
    **options: Unpack[CacheOptions],
) -> AzureOpenAI:
    """An `AzureOpenAI` client for one endpoint, its every request checked.

    ```python
    client = azure_openai_client("https://<resource>.openai.azure.com", api_version="2024-10-21")
    ```

    The token provider (`token_provider(credential, scopes, endpoint=endpoint)`) and, on the
    client's `http_client` (openai's `DefaultHttpxClient`), this package's httpx/httpx2 auth
    drawing on the same cache, both wired to `endpoint` (default: `AZURE_OPENAI_ENDPOINT`):

    - the endpoint is checked now: https, or plain http with `allow_http=True`;
    - every request's real URL is checked by the auth: only the endpoint's host and port may
      have the token, so a request anywhere else (a `with_options(base_url=...)` copy, an
      absolute URL passed to `client.get()`) is refused with `InsecureTransportError` (openai
      wraps it in `APIConnectionError`), nothing sent;
    - a 401 is resent once with a fresh token (CAE claims passed on);
    - a `websocket_base_url` in `client_options` must be `wss://` to the endpoint's host
      (`ws://` with `allow_http`): the realtime handshake carries the token too.

    With no `scopes`, the scope follows the endpoint (`token_provider`). `client_options`
    go to `AzureOpenAI` (`azure_deployment`, `max_retries`, `timeout`, ...), and
    `http_client_options` to `openai.DefaultHttpxClient` (`proxy`, `verify`, ...); the
    endpoint and the authentication are set here. Keyword options configure the cache
    (`TokenCache`). Needs openai >= 1.17.
    """
    client = _client(
        False,
        "azure_openai_client",
        endpoint,
        api_version=api_version,
        credential=credential,
        scopes=scopes,
        allow_http=allow_http,
        client_options=client_options,
        http_client_options=http_client_options,
        options=options,
    )
    return cast("AzureOpenAI", client)


def async_azure_openai_client(
    endpoint: str | None = None,
    *,
    api_version: str | None = None,
    credential: Credential | TokenCache | None = None,
    scopes: str | Sequence[str] = SCOPE_NOT_GIVEN,
    allow_http: bool = False,
    client_options: Mapping[str, Any] | None = None,
    http_client_options: Mapping[str, Any] | None = None,
    **options: Unpack[CacheOptions],
) -> AsyncAzureOpenAI:
    """`azure_openai_client` for asyncio: an `AsyncAzureOpenAI` with `async_token_provider`
    and openai's `DefaultAsyncHttpxClient`. Takes a sync or an async credential."""
    client = _client(
        True,
        "async_azure_openai_client",
        endpoint,
        api_version=api_version,
        credential=credential,
        scopes=scopes,
        allow_http=allow_http,
        client_options=client_options,
        http_client_options=http_client_options,
        options=options,
    )
    return cast("AsyncAzureOpenAI", client)
