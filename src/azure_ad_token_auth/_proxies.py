"""Would a request leave the machine through a proxy? (For plain http to loopback.)

An auth sees the request, not the client sending it, so these look for the client on
the caller's stack (the requests `Session` preparing the request, the httpx `Client`
driving the auth flow) and read what that client would do: the call's and the
session's `proxies` and, when the client trusts the environment, `HTTP_PROXY` /
`NO_PROXY`; the transport an httpx client mounts for the URL. With no client found the
environment decides, as if the client trusted it: the safe side, a refusal rather than
a token through a proxy. Only plain http to a loopback host asks, so none of this is on
the path of an https request.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from types import FrameType
from typing import Any

from requests.utils import get_environ_proxies, select_proxy

__all__ = ["environment_proxied", "httpx_proxied", "requests_proxied"]

_DEPTH = 16  # frames to look up for the client
_PROXY_POOLS = frozenset({"HTTPProxy", "SOCKSProxy", "AsyncHTTPProxy", "AsyncSOCKSProxy"})
# The variables that can send a plain-http URL to a proxy (requests, httpx and aiohttp read these).
_HTTP_PROXY_VARIABLES = ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY")
# `os.environ.get` of a missing name raises and catches a KeyError inside: looking the
# encoded names up in its store directly costs a tenth (this runs per plain-http request).
_ENVIRON_DATA: Any = getattr(os.environ, "_data", None)
_ENCODED_VARIABLES = (
    tuple(os.environ.encodekey(name) for name in _HTTP_PROXY_VARIABLES) if _ENVIRON_DATA is not None else ()
)


def _environment_proxies(url: str) -> dict[str, str]:
    # Reading NO_PROXY and friends costs more than a request to loopback: only when a
    # variable that could apply is set at all.
    if _ENVIRON_DATA is not None:
        named = any(key in _ENVIRON_DATA for key in _ENCODED_VARIABLES)
    else:  # pragma: no cover - an interpreter whose os.environ has no `_data`
        named = any(os.environ.get(name) for name in _HTTP_PROXY_VARIABLES)
    if not named:
        return {}
    proxies: dict[str, str] = get_environ_proxies(url)
    return proxies


def environment_proxied(url: str) -> bool:
    """True if `HTTP_PROXY`-style variables send `url` to a proxy (`NO_PROXY` honoured)."""
    return _selects(url, _environment_proxies(url))


def _selects(url: str, proxies: dict[str, Any]) -> bool:
    proxies = {scheme: proxy for scheme, proxy in proxies.items() if proxy}
    return bool(proxies) and select_proxy(url, proxies) is not None


def _callers(names: tuple[str, ...]) -> Iterator[FrameType]:
    """The frames up the stack running a function of one of these names."""
    frame: FrameType | None = sys._getframe(2)
    for _ in range(_DEPTH):
        if frame is None:
            return
        if frame.f_code.co_name in names:
            yield frame
        frame = frame.f_back


def requests_proxied(url: str) -> bool:
    """Whether the requests session preparing this request would send it through a proxy.

    As requests merges them: the call's `proxies=`, then the environment (when the
    session trusts it), then the session's `proxies`. A request prepared by
    `Session.prepare_request` outside a call has no call proxies.
    """
    import requests

    session: requests.Session | None = None
    proxies: dict[str, Any] = {}
    for frame in _callers(("prepare_request", "request")):
        owner = frame.f_locals.get("self")
        if isinstance(owner, requests.Session):
            session = owner
            if frame.f_code.co_name == "request":
                proxies = dict(frame.f_locals.get("proxies") or {})
                break
    if session is None or session.trust_env:
        for scheme, proxy in _environment_proxies(url).items():
            proxies.setdefault(scheme, proxy)
    if session is not None:
        for scheme, proxy in session.proxies.items():
            proxies.setdefault(scheme, proxy)
    return _selects(url, proxies)


def httpx_proxied(url: str) -> bool:
    """Whether the httpx/httpx2 client running this auth flow mounts a proxy for `url`."""
    for frame in _callers(("_send_handling_auth",)):
        client = frame.f_locals.get("self")
        request = frame.f_locals.get("request")
        transport_for_url = getattr(client, "_transport_for_url", None)
        if callable(transport_for_url) and request is not None:
            transport = transport_for_url(request.url)
            return type(getattr(transport, "_pool", None)).__name__ in _PROXY_POOLS
    return environment_proxied(url)
