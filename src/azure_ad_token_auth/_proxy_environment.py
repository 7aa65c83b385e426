"""What the proxy variables alone decide, as every client reading them would.

For what hands a token over without seeing the request (a provider given its endpoint,
openai's module client, a websocket handshake), and the snapshot that tells the
requests check when a remembered answer is stale. Each function returns None for a
request that goes straight to its host, else the end of the refusal's message.
"""

from __future__ import annotations

import importlib
import os
import sys
import urllib.request
from typing import Any

import requests
from requests.utils import select_proxy

from ._policy import THROUGH_PROXY

__all__ = ["ENVIRONMENT_ONLY", "cannot_tell", "environment_proxied", "environment_state", "websocket_proxied"]


def cannot_tell(what: str) -> str:
    """The refusal for a client that cannot be read: what it was, and the way out."""
    return (
        f"when it cannot tell whether it goes through a proxy: {what}. Use https, the client's own "
        "transport/adapter, or pass allow_http=True to allow plain http"
    )


# Where urllib reads proxies from the environment only (not macOS's system settings or
# Windows' registry), a snapshot of the variables tells when a remembered answer is stale.
ENVIRONMENT_ONLY = (
    urllib.request.getproxies is urllib.request.getproxies_environment
    and urllib.request.proxy_bypass is getattr(urllib.request, "proxy_bypass_environment", None)
)
_snapshot: tuple[tuple[Any, ...], tuple[tuple[Any, Any], ...]] = ((), ())


def _proxy_variable(name: Any) -> bool:
    text = name.decode("latin-1") if isinstance(name, bytes) else str(name)
    # urllib's `getproxies_environment`: any `*_proxy` name in any case; under CGI
    # (`REQUEST_METHOD` set) it drops HTTP_PROXY.
    return text.lower().endswith("_proxy") or text == "REQUEST_METHOD"


def environment_state() -> tuple[tuple[Any, Any], ...] | None:
    """The proxy variables now (None where the platform's proxy settings live elsewhere).

    Equal values mean equal answers from urllib. Cheap when nothing changed: the
    variables' names are compared as one tuple, the few proxy variables by identity.
    """
    if not ENVIRONMENT_ONLY:
        return None
    environ = os.environ
    data = getattr(environ, "_data", environ)
    names = tuple(data)
    global _snapshot
    known_names, relevant = _snapshot
    if names == known_names:
        for name, value in relevant:
            if data.get(name) is not value:
                break
        else:
            return relevant
    relevant = tuple((name, data[name]) for name in names if _proxy_variable(name))
    _snapshot = (names, relevant)
    return relevant


def environment_proxied(url: str) -> str | None:
    """Whether the proxy variables alone (`*_proxy` in any case, `no_proxy`) would send
    `url` through a proxy, as any client reading them would: requests, httpx or httpx2.

    For what hands a token over without seeing the request (a provider given its
    endpoint, openai's module client with the application's own http client): the
    client is not on the stack to ask, so the environment it trusts by default decides.
    The clients read `NO_PROXY` differently (requests honours a CIDR and a leading dot
    matching the name itself, httpx neither): proxied if any of them would proxy it.
    """
    proxies = requests.utils.get_environ_proxies(url)
    if select_proxy(url, proxies):
        return THROUGH_PROXY
    for name in ("httpx", "httpx2"):
        module = sys.modules.get(name)
        if module is None:
            try:
                module = importlib.import_module(name)
            except ImportError:
                continue
        try:
            utils = module._utils
            target = module.URL(url)
            mounts = sorted(
                ((utils.URLPattern(key), proxy) for key, proxy in utils.get_environment_proxies().items()),
                key=lambda mount: mount[0],
            )
            proxied = next((proxy is not None for pattern, proxy in mounts if pattern.matches(target)), False)
        except (module.InvalidURL, ValueError, AttributeError):  # a NO_PROXY entry it cannot parse
            return cannot_tell(f"{name} cannot read the proxy variables")
        if proxied:
            return THROUGH_PROXY
    return None


def websocket_proxied(url: str, http_url: str) -> str | None:
    """Whether the websocket `url` (`ws://`), whose http form is `http_url`, would go
    through a proxy: as websockets chooses one (`ws_proxy`, then `socks`, `https_proxy`,
    `http_proxy`, by its own `get_proxy`), or as `environment_proxied` reads `http_url`."""
    try:
        from websockets.proxy import get_proxy
        from websockets.uri import parse_uri
    except ImportError:  # websockets without proxy support (< 15) connects directly
        return environment_proxied(http_url)
    try:
        if get_proxy(parse_uri(url)) is not None:
            return THROUGH_PROXY
    except ValueError:
        return cannot_tell("websockets cannot read the URL or the proxy variables")
    return environment_proxied(http_url)
