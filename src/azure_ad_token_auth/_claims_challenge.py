"""A CAE claims challenge put to a `CachedCredential`'s credential, off the cache.

azure-core's bearer policy answers a 401 `insufficient_claims` by calling
`get_token(..., claims=...)` once. That call goes to the wrapped credential as asked, never
answered from the cache nor single-flighted with renewals, and what comes back reaches that
caller only. Before it, the cached token the service refused is dropped (`_drop_refused`).

It is bounded like every credential call of the library: a sync credential runs in a daemon
thread of its own (`_flights.start_thread`), never on an event loop nor in its default
executor, and the caller gives up after the cache's `timeout` (`TokenAcquisitionTimeout`); an
async credential is awaited on the caller's loop and cancelled at `timeout`. While a call
given up on has not returned, further claims calls fail at once instead of each leaving
another thread stuck in a hung credential.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from . import _timing
from ._credential import is_async_credential, validate
from ._errors import TokenAcquisitionTimeout
from ._flights import RunningFlight, start_thread, wait, wait_async, wake
from ._state import CachedToken

if TYPE_CHECKING:
    from ._cache import TokenCache

__all__ = ["ClaimsCalls"]


def _options(claims: str, tenant_id: str | None, enable_cae: bool) -> dict[str, Any]:
    """The request as the caller made it: `claims`, and `tenant_id` / `enable_cae` when set.

    Unlike the adapters (`CredentialBinding.options`), `enable_cae` is not forced on: here
    azure-core's policy made that choice, and a credential passes it on as given.
    """
    options: dict[str, Any] = {"claims": claims}
    if tenant_id is not None:
        options["tenant_id"] = tenant_id
    if enable_cae:
        options["enable_cae"] = True
    return options


def _drop_refused(cache: TokenCache) -> None:
    """A claims challenge means the service refused the token it was sent, most likely the
    one held: drop it (without the claims), so later callers get a fresh one."""
    held = cache.current
    if held is not None:
        cache.invalidate(held.token)


class ClaimsCalls:
    """The claims calls of one `CachedCredential`: to `credential` (None: each cache's
    default one), bounded by `timeout`, with the `tenant_id` and `enable_cae` it was made
    with unless a call asks otherwise."""

    def __init__(self, credential: Any, timeout: float, tenant_id: str | None, enable_cae: bool) -> None:
        self._credential = credential
        self._timeout = timeout
        self._tenant_id = tenant_id
        self._enable_cae = enable_cae
        # Calls given up on after `timeout` whose thread has not returned.
        self._abandoned: set[RunningFlight] = set()

    def forget(self) -> None:
        """The testing kit's reset: calls given up on earlier no longer stop new ones."""
        self._abandoned = set()

    def ask(
        self, cache: TokenCache, scopes: tuple[str, ...], claims: str, tenant_id: str | None, enable_cae: bool
    ) -> CachedToken:
        """The credential's checked answer to `claims`, from sync code."""
        flight = self._start(cache, scopes, self._asked(cache, claims, tenant_id, enable_cae), None)
        if not wait(flight, self._timeout):
            raise self._abandon(flight, cache)
        return _landed(flight)

    async def ask_async(
        self, cache: TokenCache, scopes: tuple[str, ...], claims: str, tenant_id: str | None, enable_cae: bool
    ) -> CachedToken:
        """The credential's checked answer to `claims`, from a coroutine: never blocks the loop."""
        options = self._asked(cache, claims, tenant_id, enable_cae)
        credential = self._credential
        if credential is not None and is_async_credential(credential):
            return await self._awaited(cache, credential, scopes, options)
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        flight = self._start(cache, scopes, options, (future, loop))
        try:
            landed = await wait_async(flight, future, self._timeout)
        finally:
            flight.waiters.pop(future, None)
        if not landed:
            raise self._abandon(flight, cache)
        return _landed(flight)

    def _asked(self, cache: TokenCache, claims: str, tenant_id: str | None, enable_cae: bool) -> dict[str, Any]:
        """The call's options; the refused token dropped first."""
        _drop_refused(cache)
        return _options(claims, tenant_id or self._tenant_id, enable_cae or self._enable_cae)

    def _start(
        self,
        cache: TokenCache,
        scopes: tuple[str, ...],
        options: Mapping[str, Any],
        waiter: tuple[asyncio.Future[None], asyncio.AbstractEventLoop] | None,
    ) -> RunningFlight:
        name = _name(self._credential)
        if self._abandoned:
            raise TokenAcquisitionTimeout(
                f"a claims call to {name} given up on after {self._timeout:g} s has not returned yet; "
                "not starting another (the credential may be hanging)"
            )
        credential = self._credential

        def fetch() -> CachedToken:
            # The default credential is created here, off the caller's thread and loop: it
            # reads files and the environment.
            asked = credential if credential is not None else cache._bound().credential
            # The answer goes straight on: no local of a frame that may raise holds a token.
            return cache._make_entry(validate(_call(asked, scopes, options), time.time(), _name(asked)))

        def land(flight: RunningFlight, outcome: CachedToken | BaseException | None) -> None:
            flight.entry = outcome if isinstance(outcome, CachedToken) else None
            flight.error = outcome if isinstance(outcome, BaseException) else None
            waiters, flight.waiters = flight.waiters, {}
            wake(flight, waiters)
            self._abandoned.discard(flight)  # after `done` is set: see `_abandon`

        flight = RunningFlight(options.get("claims"), _timing.monotonic(), 0)
        if waiter is not None:
            flight.waiters[waiter[0]] = waiter[1]  # before the thread starts: it cannot land unseen
        start_thread(flight, fetch, land, name)
        return flight

    def _abandon(self, flight: RunningFlight, cache: TokenCache) -> TokenAcquisitionTimeout:
        self._abandoned.add(flight)
        if flight.done.is_set():  # landed meanwhile: `land` may have discarded it before the add
            self._abandoned.discard(flight)
        return _timed_out(self._credential, self._timeout, cache)

    async def _awaited(
        self, cache: TokenCache, credential: Any, scopes: tuple[str, ...], options: Mapping[str, Any]
    ) -> CachedToken:
        async def answer() -> CachedToken:
            return cache._make_entry(validate(await _call(credential, scopes, options), time.time(), _name(credential)))

        task = asyncio.ensure_future(answer())
        try:
            done, _ = await asyncio.wait((task,), timeout=self._timeout)
        finally:
            if not task.done():  # timed out, or this caller was cancelled: nobody waits for it
                task.cancel()
        if not done:
            raise _timed_out(credential, self._timeout, cache)
        return task.result()


def _call(credential: Any, scopes: tuple[str, ...], options: Mapping[str, Any]) -> Any:
    """The wrapped credential's answer (an awaitable for an async one) for a claims challenge."""
    method = getattr(credential, "get_token_info", None)
    if callable(method):
        return method(*scopes, options=dict(options))
    return credential.get_token(*scopes, **options)


def _name(credential: Any) -> str:
    """`ClassName.method()` of the credential asked, for messages."""
    if credential is None:
        return "DefaultAzureCredential"
    method = "get_token_info" if callable(getattr(credential, "get_token_info", None)) else "get_token"
    return f"{type(credential).__name__}.{method}()"


def _landed(flight: RunningFlight) -> CachedToken:
    if flight.entry is not None:
        return flight.entry
    error = flight.error
    assert error is not None
    raise error


def _timed_out(credential: Any, timeout: float, cache: TokenCache) -> TokenAcquisitionTimeout:
    return TokenAcquisitionTimeout(
        f"no answer from {_name(credential)} to a claims challenge within {timeout:g} s "
        f"(scopes {list(cache.scopes)}); the credential may be hanging"
    )
