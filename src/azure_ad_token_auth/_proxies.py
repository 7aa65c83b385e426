"""Would the client send this plain-http loopback request through a proxy? The client decides.

An auth sees the request, not the client sending it, so these find the client on the
caller's stack (requests' `Session.request`, httpx's `_send_handling_auth`, aiohttp's
request) and ask it, with its own code: requests' `merge_environment_settings` and
`select_proxy`, httpx's `_transport_for_url`. Where the client cannot be read with
certainty (an adapter, transport or connector that is not the library's own, a request
prepared outside a call) the answer is "cannot tell", which the policy refuses unless
`allow_http=True`. Only plain http to a loopback host asks, never https.

Each function returns None for a request that goes straight to its host, else the end
of the refusal's message.
"""

from __future__ import annotations

import inspect
import sys
from types import CodeType, FrameType, ModuleType
from typing import Any

import requests
import urllib3
from requests.adapters import HTTPAdapter
from requests.utils import select_proxy

from ._policy import THROUGH_PROXY
from ._proxy_environment import (
    ENVIRONMENT_ONLY,
    cannot_tell,
    environment_proxied,
    environment_state,
    websocket_proxied,
)

__all__ = [
    "aiohttp_proxied",
    "cannot_tell",
    "environment_proxied",
    "environment_state",
    "httpx_client_proxied",
    "httpx_proxied",
    "requests_proxied",
    "websocket_proxied",
]


_DEPTH = 24  # frames to look up for the client
_MEMO_SIZE = 256

# -- requests -------------------------------------------------------------------------

_Session = requests.Session
# `unwrap`: an instrumentation library may have wrapped them (the frames are the originals').
_REQUEST_CODE = inspect.unwrap(requests.Session.request).__code__
_PREPARE_CODE = inspect.unwrap(requests.Session.prepare_request).__code__
# What an adapter runs to pick the proxy and connect: overriding any of them makes its
# route unreadable. (`get_connection` is what requests < 2.32.2 calls.)
_ADAPTER_SEND = ("send", "get_connection_with_tls_context", "get_connection")
_requests_memo: dict[tuple[Any, ...], bool] = {}


# Where `Session.request` is when requests runs the auth itself (`prepare_request` ->
# `prepare` -> `prepare_auth` -> `AzureADTokenAuth.__call__` -> `allows_url` -> here):
# looked at first. Not learnt from other stacks, so a nearer client is never skipped.
_REQUEST_DEPTH = 6


def requests_proxied(url: str) -> str | None:
    """How the requests `Session.request` preparing this request would send it.

    Its adapter for the URL must be requests' own `HTTPAdapter` send path; its proxies
    are what `Session.merge_environment_settings` makes of the call's `proxies`, the
    environment (when the session trusts it) and the session's, as `select_proxy` reads
    them. A request prepared outside `Session.request` cannot be read.
    """
    try:
        prepare: FrameType | None = sys._getframe(_REQUEST_DEPTH - 1)
    except ValueError:
        prepare = None
    if prepare is not None and prepare.f_code is _PREPARE_CODE:
        frame = prepare.f_back
        if frame is not None and frame.f_code is _REQUEST_CODE:
            local = frame.f_locals
            return _requests_route(local["self"], url, local["proxies"])
    # Not where it was last time: look up the stack for `Session.request` running
    # `Session.prepare_request` (a subclass's override may stand between them).
    frame = sys._getframe(1)
    session: Any = None
    for _ in range(_DEPTH):
        if frame is None:
            break
        code = frame.f_code
        if code is _PREPARE_CODE:
            session = frame.f_locals.get("self")
        elif code is _REQUEST_CODE:
            local = frame.f_locals
            if session is None or local.get("self") is not session:
                break
            return _requests_route(session, url, local.get("proxies"))
        frame = frame.f_back
    return cannot_tell(
        "the request was prepared outside Session.request (its proxies are chosen when it is sent); "
        "send it with session.request()/session.post()"
    )


def _requests_route(session: Any, url: str, call: Any) -> str | None:
    cls = type(session)
    plain = cls is _Session
    if not plain and cls.send is not _Session.send:
        return cannot_tell(f"the session's class {cls.__qualname__} overrides send")
    opaque = _adapter_opaque(session.get_adapter(url))
    if opaque is not None:
        return opaque
    start = url.find("//") + 2
    end = url.find("/", start)
    origin = url if end < 0 else url[:end]
    # requests keeps the token across a redirect to any path of the same origin: an
    # adapter mounted for one of its paths (`http://host:port/legacy/`) would carry it.
    within = origin.lower()
    for prefix, adapter in session.adapters.items():
        if len(prefix) > len(within) and prefix.lower().startswith(within):
            opaque = _adapter_opaque(adapter)
            if opaque is not None:
                return opaque
    key: tuple[Any, ...] | None = None
    if ENVIRONMENT_ONLY and (plain or cls.merge_environment_settings is _Session.merge_environment_settings):
        # Everything the answer depends on, by value: a change to any of them is a new key.
        trust_env = session.trust_env
        try:
            key = (
                origin,
                trust_env,
                tuple(session.proxies.items()),
                None if call is None else tuple(call.items()),
                environment_state() if trust_env else None,
            )
            proxied = _requests_memo.get(key)
        except (TypeError, AttributeError):  # an unhashable or odd proxies value: ask every time
            key = proxied = None
        if proxied is not None:
            return THROUGH_PROXY if proxied else None
    # A copy: requests writes the environment's proxies into the dict it is given.
    proxies = session.merge_environment_settings(url, dict(call or {}), None, False, None)["proxies"]
    proxied = bool(select_proxy(url, proxies))
    if key is not None:
        if len(_requests_memo) >= _MEMO_SIZE:
            _requests_memo.clear()
        _requests_memo[key] = proxied
    return THROUGH_PROXY if proxied else None


# Adapter classes already read: None for one that keeps HTTPAdapter's send path, else why not.
_adapter_classes: dict[type, str | None] = {HTTPAdapter: None}


def _adapter_opaque(adapter: Any) -> str | None:
    cls = type(adapter)
    try:
        why = _adapter_classes[cls]
    except KeyError:
        why = _read_adapter_class(cls)
        if len(_adapter_classes) < _MEMO_SIZE:
            _adapter_classes[cls] = why
    if why is None:
        own = adapter.__dict__
        for name in _ADAPTER_SEND:
            if name in own:
                why = f"overrides {name}"
                break
        else:
            pool = adapter.poolmanager
            if type(pool) is urllib3.PoolManager:
                return None
            if isinstance(pool, urllib3.ProxyManager):
                return THROUGH_PROXY
            why = f"connects through a {type(pool).__qualname__}"
    return cannot_tell(f"the requests adapter mounted for the URL ({cls.__qualname__}) {why}")


def _read_adapter_class(cls: type) -> str | None:
    if not issubclass(cls, HTTPAdapter):
        return "is not an HTTPAdapter"
    for name in _ADAPTER_SEND:
        if getattr(cls, name, None) is not getattr(HTTPAdapter, name, None):
            return f"overrides {name}"
    return None


# -- httpx and httpx2 -----------------------------------------------------------------

# The clients of the httpx and httpx2 modules loaded: (the code of their
# `_send_handling_auth`, the module, the client class), per pair of modules.
_Client = tuple[CodeType, ModuleType, Any]
_httpx_clients: tuple[tuple[Any, Any], tuple[_Client, ...]] = ((None, None), ())
# Where `_send_handling_auth` is when the client runs our auth flow (`sync_auth_flow` /
# `async_auth_flow` -> `_advance` -> `bearer_flow` -> `allows_url` -> here): looked at first.
_HTTPX_DEPTH = 5


def _clients() -> tuple[_Client, ...]:
    global _httpx_clients
    modules = (sys.modules.get("httpx"), sys.modules.get("httpx2"))
    known, clients = _httpx_clients
    if modules[0] is known[0] and modules[1] is known[1]:
        return clients
    found = []
    for module in modules:
        for name in ("Client", "AsyncClient"):
            client = getattr(module, name, None)
            send = getattr(client, "_send_handling_auth", None)
            if module is not None and send is not None:
                found.append((inspect.unwrap(send).__code__, module, client))
    _httpx_clients = (modules, tuple(found))
    return _httpx_clients[1]


def _client_frame(frame: FrameType | None, clients: tuple[_Client, ...]) -> tuple[FrameType, _Client] | None:
    if frame is not None:
        code = frame.f_code
        for client in clients:
            if client[0] is code:
                return frame, client
    return None


def httpx_proxied(url: str) -> str | None:
    """How the httpx/httpx2 client running this auth flow would send the request.

    The client's own `_transport_for_url` picks the transport; only the library's own
    `HTTPTransport`/`AsyncHTTPTransport` can be read (its connection pool, or a proxy
    pool). Mounts are fixed when the client is made (environment proxies included,
    when it trusts the environment).
    """
    clients = _clients()
    try:
        found = _client_frame(sys._getframe(_HTTPX_DEPTH), clients)
    except ValueError:
        found = None
    if found is None:
        frame: FrameType | None = sys._getframe(1)
        for _ in range(_DEPTH):
            found = _client_frame(frame, clients)
            if found is not None:
                break
            frame = frame.f_back if frame is not None else None
        else:
            return cannot_tell("the auth flow is not run by an httpx client")
    local = found[0].f_locals
    _, module, base = found[1]
    return _httpx_route(local["self"], module, base, local["request"].url)


def httpx_client_proxied(client: Any, url: str) -> str | None:
    """How the httpx/httpx2 `client` (an openai client's http client, say) would send a
    request to `url`, read as `httpx_proxied` reads the client running an auth flow."""
    for _, module, base in _clients():
        if isinstance(client, base):
            return _httpx_route(client, module, base, module.URL(url))
    return cannot_tell(f"its http client ({type(client).__qualname__}) is not an httpx or httpx2 client")


def _httpx_route(client: Any, module: ModuleType, base: Any, url: Any) -> str | None:
    cls: Any = type(client)
    if cls is not base and cls._send_single_request is not base._send_single_request:
        return cannot_tell(f"the client's class {cls.__qualname__} overrides _send_single_request")
    transport = client._transport_for_url(url)
    kind = type(transport)
    try:
        why = _transport_classes[kind]
    except KeyError:
        why = _read_transport_class(kind, module)
        if len(_transport_classes) < _MEMO_SIZE:
            _transport_classes[kind] = why
    if why is None:
        if "handle_request" in transport.__dict__ or "handle_async_request" in transport.__dict__:
            why = "overrides its handler"
        else:
            pool = type(transport._pool)
            try:
                route = _pool_routes[pool]
            except KeyError:
                route = _read_pool_class(pool)
                if len(_pool_routes) < _MEMO_SIZE:
                    _pool_routes[pool] = route
            if route is None or isinstance(route, str):
                return route
            why = f"uses a {pool.__qualname__}"
    return cannot_tell(f"the {module.__name__} transport for the URL ({kind.__qualname__}) {why}")


# Transport classes already read: None for the library's own (or a subclass keeping its
# handler), else why not. Pool classes: None for a direct pool, THROUGH_PROXY, or False.
_transport_classes: dict[type, str | None] = {}
_pool_routes: dict[type, str | bool | None] = {}


def _read_transport_class(kind: type, module: ModuleType) -> str | None:
    for own, handle in ((module.HTTPTransport, "handle_request"), (module.AsyncHTTPTransport, "handle_async_request")):
        if issubclass(kind, own):
            return None if getattr(kind, handle) is getattr(own, handle) else "overrides " + handle
    return f"is not {module.__name__}'s own HTTPTransport"


def _read_pool_class(pool: type) -> str | bool | None:
    core = sys.modules.get(pool.__module__.partition(".")[0])
    if core is not None and pool in (getattr(core, "ConnectionPool", None), getattr(core, "AsyncConnectionPool", None)):
        return None
    if core is not None and any(
        pool is getattr(core, name, None) for name in ("HTTPProxy", "SOCKSProxy", "AsyncHTTPProxy", "AsyncSOCKSProxy")
    ):
        return THROUGH_PROXY
    return False


# -- aiohttp --------------------------------------------------------------------------

# What aiohttp's TCPConnector runs to connect (directly, or to `request.proxy`).
_CONNECTOR_SEND = (
    "connect",
    "_create_connection",
    "_create_direct_connection",
    "_create_proxy_connection",
    "_wrap_create_connection",
)


def aiohttp_proxied(request: Any) -> str | None:
    """How the aiohttp session that made `request` sends it.

    The session chose the proxy before the middlewares run (`proxy=`, or the
    environment's when `trust_env`): `request.proxy`. Its connector must be aiohttp's own
    `TCPConnector`, which connects to that proxy or to the host itself.
    """
    if request.proxy is not None:
        return THROUGH_PROXY
    from aiohttp import TCPConnector

    session = getattr(request, "_session", None)
    connector = getattr(session, "connector", None)
    cls = type(connector)
    if not isinstance(connector, TCPConnector):
        return cannot_tell(f"the aiohttp session's connector ({cls.__qualname__}) is not a TCPConnector")
    own = vars(connector)
    for name in _CONNECTOR_SEND:
        if name in own or getattr(cls, name) is not getattr(TCPConnector, name):
            return cannot_tell(f"the aiohttp session's connector ({cls.__qualname__}) overrides {name}")
    return None
