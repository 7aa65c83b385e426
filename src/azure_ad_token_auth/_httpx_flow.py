"""The bearer-token auth flow shared by the httpx and httpx2 adapters.

Neither package is imported here: `azure_ad_token_auth.httpx` and
`azure_ad_token_auth.httpx2` combine `BearerAuthMixin` with their package's `Auth` class
and name the stream type whose body can be sent twice.

As in httpx's own `_auth.py`, the logic is one generator, `bearer_flow`, that yields the
requests to send. Where it needs a token it yields `TOKEN_NEEDED` instead, and the
caller sends back an `Authorization` value: `TokenCache.get_header()` in
`sync_auth_flow`, `await TokenCache.get_header_async()` in `async_auth_flow`. That fetch
is the only I/O; `TokenCache.invalidate` never waits on the credential, so the flow
calls it itself.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Generator, Mapping, MutableMapping
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from ._adapter import AdapterBase
from ._cache import TokenCache
from ._policy import HostPolicy, claims_from_challenge

__all__ = ["TOKEN_NEEDED", "BearerAuthMixin", "TokenNeeded", "bearer_flow"]


class _URLLike(Protocol):
    @property
    def scheme(self) -> str: ...
    @property
    def host(self) -> str: ...


class RequestLike(Protocol):
    """What the flow reads of an `httpx.Request` / `httpx2.Request`."""

    @property
    def url(self) -> _URLLike: ...
    @property
    def headers(self) -> MutableMapping[str, str]: ...
    @property
    def stream(self) -> object: ...


class ResponseLike(Protocol):
    """What the flow reads of an `httpx.Response` / `httpx2.Response`."""

    @property
    def status_code(self) -> int: ...
    @property
    def headers(self) -> Mapping[str, str]: ...
    @property
    def request(self) -> RequestLike: ...


class TokenNeeded:
    """Yielded by `bearer_flow` in place of a request: send it a token string."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "TOKEN_NEEDED"


TOKEN_NEEDED = TokenNeeded()

_Req = TypeVar("_Req", bound=RequestLike)
_Resp = TypeVar("_Resp", bound=ResponseLike)


def bearer_flow(
    request: _Req, cache: TokenCache, policy: HostPolicy, https_fast_path: bool, replayable: type
) -> Generator[_Req | TokenNeeded, Any, None]:
    """Attach the token, and on a 401 to it resend once with a new one.

    Yields `request` (send back the response) or `TOKEN_NEEDED` (send back the
    `Authorization` value, `"Bearer <token>"`).
    `https_fast_path`: the policy has no host list, so an https URL needs no check.
    `replayable`: the stream type that can be sent again (httpx's `ByteStream`).
    Raises `InsecureTransportError` before anything is sent for plain http to a host
    that is not loopback.
    """
    url = request.url
    if not (https_fast_path and url.scheme == "https") and not policy.allows(url.scheme, url.host):
        yield request
        return
    header: str = yield TOKEN_NEEDED
    request.headers["Authorization"] = header
    token = header[7:]
    response: ResponseLike = yield request
    if response.status_code != 401:
        return
    # Only a 401 to our token: after a cross-origin redirect httpx has stripped the
    # header, and that host must not make us renew (nor get a token).
    if response.request.headers.get("Authorization") != header:
        return
    claims = claims_from_challenge(response.headers.get("WWW-Authenticate"))
    # Even when the body cannot be replayed the token is dropped, so the caller's next
    # request gets a new one; this request is not resent with a consumed (empty) body.
    if not cache.invalidate(token, claims) or not isinstance(request.stream, replayable):
        return
    renewed: str = yield TOKEN_NEEDED
    if renewed == header:  # the credential handed back the rejected token: no use resending
        return
    request.headers["Authorization"] = renewed
    yield request  # once: whatever comes back goes to the caller


class BearerAuthMixin(AdapterBase, Generic[_Req, _Resp]):
    """`sync_auth_flow` / `async_auth_flow` around `bearer_flow`, for an `Auth` subclass.

    A subclass sets `_replayable` to its package's in-memory stream type.
    """

    requires_request_body = False
    requires_response_body = False
    _replayable: ClassVar[type]

    def _flow(self, request: _Req) -> Generator[_Req | TokenNeeded, Any, None]:
        return bearer_flow(request, self.cache, self._policy, self._https_fast_path, self._replayable)

    def auth_flow(self, request: _Req) -> Generator[_Req, _Resp, None]:
        """The sync flow; httpx clients call `sync_auth_flow` or `async_auth_flow`."""
        return self.sync_auth_flow(request)

    def sync_auth_flow(self, request: _Req) -> Generator[_Req, _Resp, None]:
        flow = self._flow(request)
        step = next(flow)
        while True:
            if isinstance(step, TokenNeeded):
                reply: Any = self.cache.get_header()
            else:
                reply = yield step
            try:
                step = flow.send(reply)
            except StopIteration:
                return

    async def async_auth_flow(self, request: _Req) -> AsyncGenerator[_Req, _Resp]:
        flow = self._flow(request)
        step = next(flow)
        while True:
            if isinstance(step, TokenNeeded):
                reply: Any = await self.cache.get_header_async()
            else:
                reply = yield step
            try:
                step = flow.send(reply)
            except StopIteration:
                return
