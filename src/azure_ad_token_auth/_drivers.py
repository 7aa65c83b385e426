"""The drivers of every adapter: one sync, one async, each with its per-request fast path.

As httpx's `Auth` base class writes `sync_auth_flow` and `async_auth_flow` once for every
auth, these two serve requests' `AzureADTokenAuth`, httpx's and httpx2's
`AzureADHttpxAuth` (and openai's `http_client` auth built on them) and aiohttp's
middleware. An adapter only says how its client's requests and responses read
(`AdapterBase._read`, `_replayable`, ...).

- `attach` / `attach_async`: the per-request path. The token's header on the request, from
  the cache its URL's origin was last routed to (`AdapterBase._fast`), or, past that memo,
  `AdapterBase._route` (the `HostPolicy`, the scope's cache); where the token does not go,
  no `Authorization` at all (`drop_authorization`).
- `sync_flow` / `async_flow`: httpx's auth-flow protocol (aiohttp's middleware drives
  `async_flow` by hand): the request with the token, then, after a 401 to it, the steps
  of `_flow.challenge_flow`, each answered here (`sync_steps`) but the resend, which is
  yielded to the client.

requests' auth sees no response: it binds `attach` itself as `__call__`, and its response
hook runs `sync_steps`. A call of ours between requests and `attach` would cost more than
the rest of the path, so `attach` puts requests' hook on the request itself
(benchmarks/per_request.py measures the path, side by side with earlier versions).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Generator
from time import time as _now
from typing import TYPE_CHECKING, Any

from ._flow import REPLAYABLE, TOKEN, Flow, Invalidate, Response, Step, challenge_flow, drop_authorization, rejects
from ._state import BearerHeader

if TYPE_CHECKING:
    from ._adapter import AdapterBase
    from ._cache import TokenCache

__all__ = ["async_flow", "attach", "attach_async", "sync_flow", "sync_steps"]


def attach(adapter: AdapterBase, request: Any, url: Any = None) -> Any:
    """The sync per-request path: the token's header on `request` (none where it may not
    go), and returns `request`. `url`: the request's URL as text (default `request.url`).

    `InsecureTransportError`, before anything is sent, where the token may not go in clear.
    """
    prefix, cache, hook = adapter._fast
    try:
        fast = (url or request.url).startswith(prefix)
    except AttributeError:  # no str: no URL yet, or another client's request (aiohttp passes a handler)
        fast = False
    if not fast:
        found = adapter._route(request, url or request.url)
        if found is None:
            drop_authorization(request.headers)
            return request
        cache = found
    # `TokenCache.get_header()`'s own fast path, inlined: this runs on every request.
    entry = cache.current
    request.headers["Authorization"] = (
        entry.header if entry is not None and _now() < entry.refresh_at else cache.get_header()
    )
    if hook is not None:  # requests: the 401 steps run in a response hook on each request
        body = request.body
        if body is None or body.__class__ is bytes or body.__class__ is str:
            request.hooks["response"].append(hook)
        else:
            request.hooks["response"].append(adapter._stream_hook(body))
    return request


async def attach_async(adapter: AdapterBase, request: Any, url: str) -> str | None:
    """`attach` for the async drivers: the header, awaited when a token is due (an async
    credential on the running loop, a sync one in a thread); returns it, or None."""
    prefix, cache, _ = adapter._fast
    if not url.startswith(prefix):
        found = adapter._route(request, url)
        if found is None:
            drop_authorization(request.headers)
            return None
        cache = found
    header = await cache.get_header_async()
    request.headers["Authorization"] = header
    return header


def sync_flow(adapter: AdapterBase, request: Any, url: str) -> Generator[Any, Any, None]:
    """The sync driver: yields `request` with the token, is sent back the response, and
    after a 401 to our token yields the request once more, with a new one."""
    attach(adapter, request, url)
    attached = _attached(request)
    seen = adapter._read(request, (yield request))
    if rejects(seen, attached):
        yield from sync_steps(adapter.cache_for(url), request, seen, attached, adapter._replayable(request))


def sync_steps(
    cache: TokenCache, request: Any, seen: Response, attached: str | None, replayable: bool
) -> Generator[Any, Any, None]:
    """`challenge_flow` after `seen`, its steps answered from `cache`; yields the request to
    resend, if any (what comes back goes to the caller)."""
    flow = challenge_flow(request, seen, attached)
    step = _advance(flow, None)
    while step is not None:
        if step is TOKEN:
            try:
                header = cache.get_header()
            except Exception as exc:  # noqa: BLE001 - the flow re-raises it, maybe chained to the 401
                step = _throw(flow, exc)
            else:
                step = _advance(flow, header)
        elif step is REPLAYABLE:
            step = _advance(flow, replayable)
        elif isinstance(step, Invalidate):
            step = _advance(flow, cache.invalidate(step.token, step.claims))
        else:  # the resend, the flow's last step: what comes back goes to the caller
            yield step
            return


async def async_flow(adapter: AdapterBase, request: Any, url: str) -> AsyncGenerator[Any, Any]:
    """`sync_flow` for async clients: the token and the renewal awaited, the rejection
    reported off the event loop (`TokenCache.invalidate_async`)."""
    attached = await attach_async(adapter, request, url)
    seen = adapter._read(request, (yield request))
    if not rejects(seen, attached):
        return
    cache = adapter.cache_for(url)
    flow = challenge_flow(request, seen, attached)
    step = _advance(flow, None)
    while step is not None:
        if step is TOKEN:
            try:
                header = await cache.get_header_async()
            except Exception as exc:  # noqa: BLE001 - the flow re-raises it, maybe chained to the 401
                step = _throw(flow, exc)
            else:
                step = _advance(flow, header)
        elif step is REPLAYABLE:
            step = _advance(flow, adapter._replayable(request))
        elif isinstance(step, Invalidate):
            step = _advance(flow, await cache.invalidate_async(step.token, step.claims))
        else:  # the resend, the flow's last step: what comes back goes to the caller
            yield step
            return


def _attached(request: Any) -> str | None:
    """The `Authorization` `attach` left on `request`: ours, or None (it leaves no other). The
    client keeps it as text: it goes on hidden from reprs (a traceback's locals) again."""
    sent = request.headers.get("Authorization")
    return None if sent is None else BearerHeader(sent)


def _advance(flow: Flow, reply: Any) -> Step | None:
    """The flow's next step, or None once it has finished."""
    try:
        return flow.send(reply)
    except StopIteration:
        return None


def _throw(flow: Flow, error: Exception) -> Step | None:
    """`error` thrown into the flow: it raises it (maybe chained); a step if it went on."""
    try:
        return flow.throw(error)
    except StopIteration:
        return None
