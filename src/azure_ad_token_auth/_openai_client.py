"""openai's own http client, carrying this package's auth: the per-request check for openai >= 1.

A provider hands openai the token without seeing a request; openai then puts it in the
request's `Authorization` header itself. The auth on the client's `http_client` sees every
request's real URL (a `with_options(base_url=...)` copy's, an absolute URL passed to
`client.get()`), so it is where that URL is checked. Everything here uses openai's public
names only: `openai.DefaultHttpxClient` / `DefaultAsyncHttpxClient` (openai's defaults:
timeouts, connection limits, redirects), and their base class tells httpx from httpx2.
"""

from __future__ import annotations

import functools
from types import ModuleType
from typing import Any

__all__ = ["default_http_client", "openai_http_package", "strict_auth_class"]


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
    (`sync_auth_flow` / `async_auth_flow`, its public protocol), before the flow starts.
    """
    if package == "httpx2":
        from .httpx2 import AzureADHttpxAuth
    else:
        from .httpx import AzureADHttpxAuth  # type: ignore[assignment]

    class OpenAIHttpClientAuth(AzureADHttpxAuth):
        """`AzureADHttpxAuth` for an openai client's `http_client`: refuses a request the
        token may not go with, since openai has put it there already."""

        def sync_auth_flow(self, request: Any) -> Any:
            self.policy.check_url(str(request.url))
            return super().sync_auth_flow(request)

        def async_auth_flow(self, request: Any) -> Any:
            self.policy.check_url(str(request.url))
            return super().async_auth_flow(request)

    OpenAIHttpClientAuth.__qualname__ = f"{package}.OpenAIHttpClientAuth"
    return OpenAIHttpClientAuth


def default_http_client(openai: ModuleType, *args: Any, asynchronous: bool = False, **kwargs: Any) -> Any:
    """openai's default http client (sync or async) with a strict auth made from `args` and
    `kwargs` (`AzureADHttpxAuth`'s arguments); None for an openai without one (< 1.17)."""
    package = openai_http_package(openai)
    if package is None:
        return None
    auth = strict_auth_class(package)(*args, **kwargs)
    factory = openai.DefaultAsyncHttpxClient if asynchronous else openai.DefaultHttpxClient
    return factory(auth=auth)
