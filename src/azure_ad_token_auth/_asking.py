"""The openai client asking a provider for a token: found on the stack, checked, remembered.

openai >= 1 (1.x to 3.x) calls a token provider only from the client's own method
(`_get_azure_ad_token` for `azure_ad_token_provider=`, `_refresh_api_key` for a callable
`api_key=`): the nearest such frame up the stack, maybe behind wrappers
(`lambda: provider()`, decorators, `asyncio.run` of a coroutine calling it), holds the
client that will send the token. A copy made with `with_options(...)` is found as itself.
Only those frames' locals are read. A provider called in another task or thread than
openai's call has no such frame above it: nothing shows which client asked.
"""

from __future__ import annotations

import sys
from types import FrameType
from typing import Any

from ._policy import HostPolicy, Proxied
from ._proxies import environment_proxied, httpx_client_proxied, websocket_proxied

__all__ = ["AskingClientCheck", "calling_client", "check_client"]

# The methods by which openai >= 1 clients ask for a token (1.x to 3.x).
_TOKEN_METHODS = frozenset({"_get_azure_ad_token", "_refresh_api_key", "sync_refresh_api_key", "async_refresh_api_key"})
_WEBSOCKET_SCHEMES = {"ws://": "http://", "wss://": "https://"}
_NOTHING_SEEN = (None, None, None, None, None)


def _client_type() -> Any:
    """openai's client base class, once openai is imported (None before)."""
    return getattr(sys.modules.get("openai._base_client"), "BaseClient", None)


def calling_client(frame: FrameType | None) -> Any:
    """The openai client whose token method is `frame` or the nearest frame above it
    (None when the provider is called some other way, or openai is not imported).

    The whole stack is searched: any bound on the wrappers in between would be a way round."""
    client_type = _client_type()
    if client_type is None:
        return None  # openai not imported: no client can be asking
    while frame is not None:
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


def check_client(client: Any, policy: HostPolicy) -> tuple[object, object, object]:
    """Apply `policy` to where `client` sends the token: its `base_url` (through its own
    http client's proxies), an Azure client's `azure_endpoint` when a deployment makes
    openai send some paths there, and its realtime `websocket_base_url` when set.

    Returns the base URL, Azure endpoint and websocket URL objects it read, each read once
    (another thread may swap them meanwhile). Raises `InsecureTransportError`, before any
    token is fetched.
    """
    base = client.base_url
    azure_endpoint = getattr(client, "_azure_endpoint", None)
    websocket = getattr(client, "websocket_base_url", None)
    route = _http_client_route(getattr(client, "_client", None))
    policy.check_url(_base_url_text(base), route)
    if azure_endpoint is not None and getattr(client, "_azure_deployment", None):
        # With a deployment, openai sends the paths that name none (`/models`, `/files`,
        # realtime without a websocket URL) to the endpoint, not to `base_url`.
        policy.check_url(str(azure_endpoint), route)
    if websocket is not None:
        # The websocket client (not the http one) sends the realtime handshake: its proxies decide.
        url = str(websocket)
        policy.check_url(_as_http(url), lambda http: websocket_proxied(url, http))
    return base, azure_endpoint, websocket


# Where openai defines the `base_url` properties that return the stored `_base_url` (the
# client base class; `OpenAI` / `AsyncOpenAI` in 3.x). The module client's, in `openai`
# itself, returns `openai.base_url` once that is set.
_STORED_BASE_URL_MODULES = frozenset({"openai._base_client", "openai._client"})


def _plain_base_url(client_type: type) -> bool:
    """Whether `client_type.base_url` is one of openai's that return the stored `_base_url`."""
    for klass in client_type.__mro__:
        if "base_url" in vars(klass):
            getter = getattr(vars(klass)["base_url"], "fget", None)
            return getattr(getter, "__module__", None) in _STORED_BASE_URL_MODULES
    return False


class AskingClientCheck:
    """`check_client` for the client asking from a frame, remembering the last one found
    sending only over TLS (https, and wss or no websocket) so it is not checked again.

    The policy's answer for such a client depends only on its URL objects (a proxy can
    carry TLS: only plain http is judged by route), so the memo is the token method's code,
    the client's class, and the URL objects checked (base, Azure endpoint, websocket),
    swapped whole: a caller from the same method whose client, of the same class, holds
    the same URL objects is the same case. Only classes whose `base_url` is the stored one
    are remembered. Anything else takes `check`.
    """

    __slots__ = ("_seen", "policy")

    def __init__(self, policy: HostPolicy) -> None:
        self.policy = policy
        self._seen: tuple[object, object, object, object, object] = _NOTHING_SEEN

    def seen(self, frame: FrameType) -> bool:
        """Whether `frame` asks for a client already checked: the per-request fast path."""
        code, client_type, url, azure_endpoint, websocket = self._seen
        if frame.f_code is not code:
            return False
        # `code` is an openai token method that ran on a client, so `self` is one.
        client = frame.f_locals["self"]
        return (
            type(client) is client_type
            and client._base_url is url
            and getattr(client, "_azure_endpoint", None) is azure_endpoint
            and getattr(client, "websocket_base_url", None) is websocket
        )

    def check(self, frame: FrameType | None) -> Any:
        """Check the client asking from `frame` (or a few frames above it); return it, or
        None when no openai client is asking. Raises `InsecureTransportError`."""
        client = calling_client(frame)
        if client is None:
            return None
        url, azure_endpoint, websocket = check_client(client, self.policy)
        tls = (
            _base_url_text(url).startswith("https://")
            and (azure_endpoint is None or str(azure_endpoint).startswith("https://"))
            and (websocket is None or str(websocket)[:6].lower() == "wss://")
        )
        self._seen = _NOTHING_SEEN
        # Remembered only when `frame` is the token method itself, running on this client.
        if (
            tls
            and frame is not None
            and frame.f_code.co_name in _TOKEN_METHODS
            and _plain_base_url(type(client))
            and frame.f_locals.get("self") is client
        ):
            self._seen = (frame.f_code, type(client), url, azure_endpoint, websocket)
        return client
