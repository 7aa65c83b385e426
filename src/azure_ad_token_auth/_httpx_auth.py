"""What the drivers (`_drivers`) need of httpx and httpx2, for `AzureADHttpxAuth`.

Neither package is imported here: `azure_ad_token_auth.httpx` and
`azure_ad_token_auth.httpx2` combine `BearerAuthMixin` with their package's `Auth` class
and name the stream type whose body can be sent twice.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Generator
from typing import Any, ClassVar, Generic, TypeVar

from ._adapter import AdapterBase
from ._drivers import async_flow, sync_flow
from ._flow import Response

__all__ = ["BearerAuthMixin"]

_Req = TypeVar("_Req")
_Resp = TypeVar("_Resp")


class BearerAuthMixin(AdapterBase, Generic[_Req, _Resp]):
    """`sync_auth_flow` / `async_auth_flow` (httpx's public auth protocol) for an `Auth`
    subclass: the drivers' `sync_flow` and `async_flow`.

    A subclass sets `_replayable_stream` to its package's in-memory stream type. The only
    I/O is the token's: `get_header()` in the sync flow, `await get_header_async()` in the
    async one, so an `AsyncClient` never blocks its loop on the credential.
    """

    requires_request_body = False
    requires_response_body = False
    _replayable_stream: ClassVar[type]

    def __call__(self, request: Any, *rest: Any) -> Any:
        """Another client calling this auth as a function: the error naming its adapter.

        httpx and httpx2 call `sync_auth_flow`/`async_auth_flow` on their own `Auth`
        class; requests (`session.auth`), the other httpx package and aiohttp (as a
        middleware) call the auth object itself. Nothing has been sent.
        """
        raise self._wrong_client(request)

    def auth_flow(self, request: _Req) -> Generator[_Req, _Resp, None]:
        """The sync flow; httpx clients call `sync_auth_flow` or `async_auth_flow`."""
        return self.sync_auth_flow(request)

    def sync_auth_flow(self, request: _Req) -> Generator[_Req, _Resp, None]:
        return sync_flow(self, request, str(request.url))  # type: ignore[attr-defined]

    def async_auth_flow(self, request: _Req) -> AsyncGenerator[_Req, _Resp]:
        return async_flow(self, request, str(request.url))  # type: ignore[attr-defined]

    def _read(self, request: Any, response: Any) -> Response:
        # httpx has followed redirects: `response.request` is the last hop.
        return Response(
            response.status_code,
            response.request.headers.get("Authorization"),
            response.headers.get("WWW-Authenticate"),
        )

    def _replayable(self, request: Any) -> bool:
        return isinstance(request.stream, self._replayable_stream)
