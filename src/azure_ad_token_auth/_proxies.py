"""Would a request leave the machine through a proxy? (For plain http to loopback.)

An auth sees the request, not the client sending it, so these look for the client on
the caller's stack (the requests `Session.request` call, the httpx `Client` driving the
auth flow) and read what that client would do: the session's and the call's `proxies`
and, when the client trusts the environment, `HTTP_PROXY`/`NO_PROXY`; the transport an
httpx client mounts for the URL. With no client found the environment decides, as if
the client trusted it: the safe side, a refusal rather than a token through a proxy.
Only plain http to a loopback host asks, so none of this is on the per-request path of
an https request.
"""

from __future__ import annotations

import sys
from types import FrameType
from typing import Any

from requests.utils import get_environ_proxies, select_proxy

__all__ = ["environment_proxied", "httpx_proxied", "requests_proxied"]

_DEPTH = 16  # frames to look up for the client
_PROXY_POOLS = frozenset({"HTTPProxy", "SOCKSProxy", "AsyncHTTPProxy", "AsyncSOCKSProxy"})


def environment_proxied(url: str) -> bool:
    """True if `HTTP_PROXY`-style variables send `url` to a proxy (`NO_PROXY` honoured)."""
    return select_proxy(url, get_environ_proxies(url)) is not None


def _callers() -> list[FrameType]:
    frames: list[FrameType] = []
    frame: FrameType | None = sys._getframe(2)
    while frame is not None and len(frames) < _DEPTH:
        frames.append(frame)
        frame = frame.f_back
    return frames


def requests_proxied(url: str) -> bool:
    """Whether the requests session preparing this request would send it through a proxy.

    The proxies of `Session.request(..., proxies=)` count when the session prepares the
    request inside that call; `Session.prepare_request` alone gives the session's own.
    """
    import requests

    session: requests.Session | None = None
    call_proxies: Any = None
    for frame in _callers():
        owner = frame.f_locals.get("self")
        if isinstance(owner, requests.Session) and frame.f_code.co_name in ("prepare_request", "request"):
            session = owner
            if frame.f_code.co_name == "request":
                call_proxies = frame.f_locals.get("proxies")
                break
    if session is None:
        return environment_proxied(url)
    settings = session.merge_environment_settings(url, dict(call_proxies or {}), None, None, None)
    return select_proxy(url, settings["proxies"]) is not None


def httpx_proxied(url: str) -> bool:
    """Whether the httpx/httpx2 client running this auth flow mounts a proxy for `url`."""
    for frame in _callers():
        client = frame.f_locals.get("self")
        transport_for_url = getattr(client, "_transport_for_url", None)
        if frame.f_code.co_name == "_send_handling_auth" and callable(transport_for_url):
            request = frame.f_locals.get("request")
            transport = transport_for_url(request.url if request is not None else url)
            return type(getattr(transport, "_pool", None)).__name__ in _PROXY_POOLS
    return environment_proxied(url)
