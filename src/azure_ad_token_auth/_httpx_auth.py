"""The httpx and httpx2 drivers of the bearer flow (`_flow.bearer_flow`).

Neither package is imported here: `azure_ad_token_auth.httpx` and
`azure_ad_token_auth.httpx2` combine `BearerAuthMixin` with their package's `Auth` class
and name the stream type whose body can be sent twice.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Generator
from typing import Any, ClassVar, Generic, TypeVar

from ._adapter import AdapterBase
from ._cache import TokenCache
from ._flow import REPLAYABLE, TOKEN, Flow, Invalidate, Response, bearer_flow

__all__ = ["BearerAuthMixin"]

_Req = TypeVar("_Req")
_Resp = TypeVar("_Resp")


class BearerAuthMixin(AdapterBase, Generic[_Req, _Resp]):
    """`sync_auth_flow` / `async_auth_flow` driving `bearer_flow`, for an `Auth` subclass.

    A subclass sets `_replayable` to its package's in-memory stream type. The only I/O
    is the token: `get_header()` in the sync flow, `await get_header_async()` in the
    async one, so an `AsyncClient` never blocks its loop on the credential.
    """

    requires_request_body = False
    requires_response_body = False
    _replayable: ClassVar[type]

    def __call__(self, request: Any, *rest: Any) -> Any:
        """Another client calling this auth as a function: the error naming its adapter.

        httpx and httpx2 call `sync_auth_flow`/`async_auth_flow` on their own `Auth`
        class; requests (`session.auth`), the other httpx package and aiohttp (as a
        middleware) call the auth object itself. Nothing has been sent.
        """
        raise self._wrong_client(request)

    def _start(self, request: Any) -> tuple[TokenCache, Flow]:
        """The cache for `request`'s URL and the flow drawing on it (the URL read once)."""
        url = str(request.url)
        cache = self.cache_for(url) if self._follows_cloud else self.cache
        return cache, self._flow(request, url, cache)

    def _flow(self, request: Any, url: str, cache: TokenCache) -> Flow:
        return bearer_flow(self._policy, request, url)

    def _reply(self, request: Any, step: Any) -> Any:
        """The answer to a step that needs no I/O."""
        if step is REPLAYABLE:
            return isinstance(request.stream, self._replayable)
        # A response: httpx has followed redirects, so `response.request` is the last hop.
        return Response(
            step.status_code, step.request.headers.get("Authorization"), step.headers.get("WWW-Authenticate")
        )

    def auth_flow(self, request: _Req) -> Generator[_Req, _Resp, None]:
        """The sync flow; httpx clients call `sync_auth_flow` or `async_auth_flow`."""
        return self.sync_auth_flow(request)

    def sync_auth_flow(self, request: _Req) -> Generator[_Req, _Resp, None]:
        cache, flow = self._start(request)  # before a transport can touch the request
        step = _advance(flow, None)
        while step is not None:
            if step is TOKEN:
                try:
                    header = cache.get_header()
                except Exception as exc:  # thrown into the flow, which re-raises it (maybe chained to a 401)
                    flow.throw(exc)
                    raise  # pragma: no cover - the flow never swallows it
                step = _advance(flow, header)
            elif isinstance(step, Invalidate):
                step = _advance(flow, cache.invalidate(step.token, step.claims))
            else:
                step = _advance(flow, self._reply(request, step if step is REPLAYABLE else (yield step)))

    async def async_auth_flow(self, request: _Req) -> AsyncGenerator[_Req, _Resp]:
        cache, flow = self._start(request)
        step = _advance(flow, None)
        while step is not None:
            if step is TOKEN:
                try:
                    header = await cache.get_header_async()
                except Exception as exc:  # thrown into the flow, which re-raises it (maybe chained to a 401)
                    flow.throw(exc)
                    raise  # pragma: no cover - the flow never swallows it
                step = _advance(flow, header)
            elif isinstance(step, Invalidate):
                step = _advance(flow, await cache.invalidate_async(step.token, step.claims))
            else:
                step = _advance(flow, self._reply(request, step if step is REPLAYABLE else (yield step)))


def _advance(flow: Flow, reply: Any) -> Any:
    """The flow's next step, or None once it has finished."""
    try:
        return flow.send(reply)
    except StopIteration:
        return None
