"""The token cache's driver: locks, threads, event loops and logs around `_state`.

Every adapter and provider is a thin layer over `TokenCache.get_token` /
`get_token_async` / `invalidate`. The pure transitions of `_state` decide; this module
reads the clocks, holds the lock, runs credential calls (a thread, or a task on the
caller's loop), logs, and wakes the waiters (`_flights`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

from . import _advice, _keep_fresh, _live, _state, _timing
from ._binding import Binding
from ._clouds import DEFAULT_SCOPE
from ._credential import CredentialBinding, TokenInfo, fingerprint
from ._errors import TokenAcquisitionTimeout, UsageError
from ._flights import RunningFlight, start_task, start_thread, wait, wait_async, wake
from ._forks import fork_safe_lock, reset_in_child
from ._prefetch import prefetch as start_prefetch
from ._scopes import normalize_scopes
from ._settings import CacheOptions, CacheSettings
from ._state import CachedToken, CacheState, CacheStatus, Flight
from ._store import share

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ._credential import Credential

__all__ = ["CacheOptions", "CacheStatus", "CachedToken", "TokenCache", "fingerprint"]

_log = logging.getLogger("azure_ad_token_auth")


class TokenCache:
    """A thread-safe, async-aware cache of one Azure AD access token.

    - `credential`: any azure-core credential, sync or async (an object with
      `get_token_info` or `get_token`). `None` means `azure.identity.DefaultAzureCredential()`,
      created once, on first use.
    - `scopes`: one scope or a sequence of them.
    - keyword options (`refresh_margin`, `background_refresh`, `retry_backoff`,
      `timeout`, `jitter`, `tenant_id`, `enable_cae`, `shared_cache`,
      `shared_cache_identity`, `keep_fresh`, `prefetch`): see `CacheOptions`. A
      misspelled one is a type error to mypy and pyright, and `UsageError` at run time.

    One credential call is in flight per cache however many threads and coroutines ask
    at once (a call that hangs is abandoned after `timeout`, one abandoned call at most
    at a time; one begun before a 401 dropped its token is disowned by `invalidate`). With
    no valid token, a failure is re-raised for up to 5 s (at most `retry_backoff`)
    without another call; only `Exception`s are held so.
    """

    def __init__(
        self,
        credential: Credential | None = None,
        scopes: str | Sequence[str] = DEFAULT_SCOPE,
        **options: Unpack[CacheOptions],
    ) -> None:
        settings = CacheSettings.from_options(options, "TokenCache")
        self._scopes = normalize_scopes(scopes)
        base = CredentialBinding(credential, self._scopes, tenant_id=settings.tenant_id, enable_cae=settings.enable_cae)
        self._binding: Binding = share(base, settings)  # through the shared store if `shared_cache` says so
        self._settings = settings
        self._lock = fork_safe_lock()
        self._state = CacheState(settings)
        # Flights whose thread has not returned, abandoned ones included: see `renewing`.
        self._in_threads: set[RunningFlight] = set()
        self.current: CachedToken | None = None
        """The token held now, or None: read-only, replaced whole and never edited, so
        adapters may read it without the lock (their per-request fast path)."""
        self._refresh_on_warned = False
        _live.add(self)  # a forked child resets it, and so does the testing kit's reset
        if settings.keep_fresh:
            _keep_fresh.keep_fresh(self)
        if settings.prefetch:
            start_prefetch(self)

    # -- public API ---------------------------------------------------------------

    @property
    def scopes(self) -> tuple[str, ...]:
        """The scopes tokens are requested for."""
        return self._scopes

    @property
    def credential(self) -> Any:
        """The credential (None until the default one is created on first use)."""
        return self._binding.credential

    @property
    def is_async(self) -> bool:
        """Whether the credential is async: only `get_token_async` can fetch its tokens."""
        return self._binding.is_async

    def get_token(self) -> str:
        """Return a valid access token, asking the credential only when one is due.

        Raises the credential's own exception when no valid token can be had,
        `InvalidTokenError` when the credential returns something unusable and
        `TokenAcquisitionTimeout` when it does not answer within `timeout`.
        """
        entry = self.current
        if entry is not None and time.time() < entry.refresh_at:
            return entry.token
        return self._entry_slow().token

    def get_header(self) -> str:
        """`get_token()` as an `Authorization` header value: `"Bearer <token>"`."""
        entry = self.current
        if entry is not None and time.time() < entry.refresh_at:
            return entry.header
        return self._entry_slow().header

    async def get_token_async(self) -> str:
        """`get_token` for coroutines, never blocking the loop: an async credential is awaited
        on the running loop, a sync one runs in a thread."""
        entry = self.current
        if entry is not None and time.time() < entry.refresh_at:
            return entry.token
        return (await self._entry_slow_async()).token

    async def get_header_async(self) -> str:
        """`get_header()` for coroutines."""
        entry = self.current
        if entry is not None and time.time() < entry.refresh_at:
            return entry.header
        return (await self._entry_slow_async()).header

    def invalidate(self, token: str, claims: str | None = None) -> bool:
        """Report that a service rejected `token` (a 401); return whether to retry.

        The token is dropped only if it is still the cached one (another caller may have
        renewed it already), and at most once per `retry_backoff`, so a service that
        rejects every token cannot cause a credential call per request. `claims` from a
        CAE challenge are passed to the credential for the next token.
        """
        with self._lock:
            before = self._state
            state, retry = _state.invalidate(before, token, claims, _timing.monotonic())
            self._commit(state)
        if state is not before and before.entry is not None:
            cae = " (CAE claims)" if claims else ""
            _log.debug("token %s rejected by the service; dropped%s", before.entry.fingerprint, cae)
            self._binding.rejected(token)
        return retry

    async def invalidate_async(self, token: str, claims: str | None = None) -> bool:
        """`invalidate()` for coroutines, off the event loop (with `shared_cache` it writes a file)."""
        return await asyncio.get_running_loop().run_in_executor(None, self.invalidate, token, claims)

    @property
    def renewing(self) -> bool:
        """Whether a credential call this cache started in a thread has not returned yet
        (one abandoned after `timeout` included): keep-fresh starts no other meanwhile."""
        return bool(self._in_threads)

    def status(self) -> CacheStatus:
        """A snapshot of the cache for display; never contains the token."""
        entry, state = self.current, self._state
        return CacheStatus(
            entry.fingerprint if entry else None,
            entry.expires_on if entry else None,
            entry.refresh_at if entry else None,
            self._binding.calls,
            state.refreshes,
            state.failures,
            self._binding.store_hits,
        )

    def __repr__(self) -> str:
        entry = self.current
        cred = type(self.credential).__name__ if self._binding.bound else "DefaultAzureCredential (lazy)"
        held = f"token {entry.fingerprint} expires in {entry.expires_on - time.time():.0f} s" if entry else "no token"
        return f"<TokenCache credential={cred} scopes={list(self._scopes)} {held}>"

    # -- driving the transitions ------------------------------------------------------

    @property
    def _flight(self) -> RunningFlight | None:
        """The flight callers wait for now (for tests and the fork reset)."""
        return cast("RunningFlight | None", self._state.flight)

    def _commit(self, state: CacheState) -> None:
        """Under the lock: the new state, and the token the fast paths read."""
        self._state = state
        self.current = state.entry

    def _plan(self, now: float, can_start: bool) -> _state.Plan:
        """Under the lock: what this caller does now (`_state.plan`)."""
        flight = self._state.flight
        state, plan = _state.plan(
            self._state,
            now,
            _timing.monotonic(),
            can_start=can_start,
            orphaned=isinstance(flight, RunningFlight) and flight.orphaned(),
            # An abandoned call still stuck in its thread: abandoning this one too would
            # add a thread per `timeout` for as long as the credential hangs.
            others_running=len(self._in_threads) > (flight in self._in_threads),
            new_flight=RunningFlight,
        )
        if state is not self._state:
            self._commit(state)
        if plan.raise_held is not None:
            held = plan.raise_held
            # The same exception object reaches every caller: re-raise it with the
            # traceback it was held with, or each raise would lengthen it.
            raise held.error.with_traceback(held.traceback)
        return plan

    def _bound(self) -> Binding:
        binding = self._binding
        if not binding.bound:
            with self._lock:
                binding.bind()
        return binding

    def _entry_slow(self) -> CachedToken:
        binding = self._bound()
        while True:
            with self._lock:
                entry, flight, launch, _ = self._plan(time.time(), not binding.is_async)
            if launch is not None:
                self._launch_thread(_running(launch))
            if flight is None:
                if entry is None:
                    raise UsageError(
                        f"this TokenCache holds an async credential ({type(self.credential).__name__}) and no "
                        "valid token: await get_token_async() or use async_token_provider()"
                    )
                return entry
            running = _running(flight)
            if not wait(running, self._settings.timeout):
                return self._fallback(entry)
            if running.orphaned():
                continue  # an async call whose event loop shut down: plan again (see below)
            return self._outcome(running, entry)

    async def _entry_slow_async(self) -> CachedToken:
        loop = asyncio.get_running_loop()
        binding = self._binding
        if not binding.bound:
            # Creating DefaultAzureCredential reads files and the environment: off the loop.
            await loop.run_in_executor(None, self._bound)
        while True:
            future: asyncio.Future[None] | None = None
            with self._lock:
                entry, flight, launch, _ = self._plan(time.time(), True)
                if flight is not None:
                    # A flight in the plan's hands has not landed: landing happens under
                    # this lock and takes the waiters with it.
                    future = loop.create_future()
                    _running(flight).waiters[future] = loop
            if launch is not None:
                if binding.is_async:
                    self._launch_task(_running(launch))
                else:
                    self._launch_thread(_running(launch), loop)
            if flight is None or future is None:
                assert entry is not None
                return entry
            running = _running(flight)
            try:
                landed = await wait_async(running, future, self._settings.timeout)
            finally:
                if not running.done.is_set():  # timed out or cancelled: stop holding its future
                    with self._lock:
                        running.waiters.pop(future, None)
            if not landed:
                return self._fallback(entry)
            if running.orphaned():
                # The call ran on another event loop, which shut down under it: nothing
                # is wrong with the credential, so ask again from this loop.
                continue
            return self._outcome(running, entry)

    def _outcome(self, flight: RunningFlight, fallback: CachedToken | None) -> CachedToken:
        if flight.entry is not None:
            return flight.entry
        usable = _state.usable(fallback, time.time())
        if usable is not None:
            return usable
        assert flight.error is not None
        # The same exception object reaches every waiter: re-raise it with the traceback
        # it landed with, or each raise would lengthen it (as asyncio.Future does).
        raise flight.error.with_traceback(flight.traceback)

    def _fallback(self, entry: CachedToken | None) -> CachedToken:
        """After waiting `timeout` in vain: the valid token held before, or the timeout error."""
        usable = _state.usable(entry, time.time())
        if usable is not None:
            return usable
        raise TokenAcquisitionTimeout(
            f"no token from {self._binding.name} within {self._settings.timeout:g} s "
            f"(scopes {list(self._scopes)}); the credential may be hanging"
        )

    # -- running a flight -------------------------------------------------------------

    def _launch_thread(self, flight: RunningFlight, loop: asyncio.AbstractEventLoop | None = None) -> None:
        # `loop`: the async caller's, where a credential that answers with an awaitable
        # is awaited (see `CredentialBinding.fetch`). The binding of now, not a later reset's (`_on_reset`).
        binding = self._binding

        def fetch() -> CachedToken:
            return self._make_entry(binding.fetch(flight.claims, loop=loop))

        def land(flight: RunningFlight, outcome: CachedToken | BaseException | None) -> None:
            try:
                self._land(flight, outcome)
            finally:
                self._in_threads.discard(flight)

        self._in_threads.add(flight)
        start_thread(flight, fetch, land, binding.name, binding.after_landing)

    def _launch_task(self, flight: RunningFlight) -> None:
        binding = self._binding  # as in `_launch_thread`

        async def fetch() -> CachedToken:
            return self._make_entry(await binding.fetch_async(flight.claims))

        start_task(flight, fetch, self._land, binding.name, binding.after_landing)

    def _make_entry(self, info: TokenInfo) -> CachedToken:
        """A checked token, with when to renew it; one WARNING per cache for a `refresh_on` that cannot be
        right, not for the token held (azure-identity hands it back, `refresh_on` past, while it waits)."""
        settings, held, draw = self._settings, self.current, random.uniform(0, self._settings.jitter)
        margin = settings.refresh_margin
        renewal = _timing.plan_renewal(time.time(), info.expires_on, info.refresh_on, margin, draw, info.issued_at)
        problem = renewal.refresh_on_problem
        if problem and not self._refresh_on_warned and (held is None or held.token != info.token):
            self._refresh_on_warned = True
            _log.warning("%s %s; renewing %g s before expiry", self._binding.name, problem, settings.refresh_margin)
        return CachedToken(info.token, renewal.expires_on, renewal.refresh_at)

    def _land(self, flight: RunningFlight, outcome: CachedToken | BaseException | None) -> None:
        """Record a flight's outcome (`_state.land`; None: its event loop shut down under
        it), log it, and wake everyone waiting for it."""
        with self._lock:
            now = time.time()
            state, landing = _state.land(self._state, flight, outcome, now, _timing.monotonic())
            self._commit(state)
            error = outcome if isinstance(outcome, BaseException) else None
            flight.entry, flight.error, flight.gone = landing.entry, error, outcome is None
            flight.traceback = error.__traceback__ if error is not None else None
            waiters, flight.waiters = flight.waiters, {}
        entry, kept = landing
        if entry is not None:
            _log.debug(
                "acquired token %s for %s from %s: expires in %.0f s, renewal in %.0f s",
                entry.fingerprint,
                list(self._scopes),
                self._binding.name,
                entry.expires_on - now,
                entry.refresh_at - now,
            )
        elif kept is not None:
            _log.warning(
                "token renewal failed (%s from %s); still using the cached token %s, valid for %.0f s more; "
                "next attempt in %.0f s",
                _advice.described(error),
                self._binding.name,
                kept.fingerprint,
                kept.expires_on - now,
                self._settings.retry_backoff,
            )
        elif outcome is not None:
            _log.debug("token request failed: %s from %s", type(error).__name__, self._binding.name)
        wake(flight, waiters)  # last, so what the waiters see (state, log) is complete

    def _after_fork_in_child(self) -> None:
        # The child has only the forking thread: a flight in another never lands (the lock is new: `fork_safe_lock`).
        self._state = dataclasses.replace(self._state, flight=None)
        self._in_threads = set()

    def _drop(self) -> None:  # the token held, unconditionally (`TokenRefresh.cached_token = None`)
        with self._lock:
            self._commit(_state.drop(self._state))

    def _on_reset(self) -> None:
        """The testing kit's reset (`_reset`): no token, error, backoff or count; the binding as made."""
        with self._lock:
            self._binding, self._in_threads, self._refresh_on_warned = self._binding.anew(), set(), False
            self._commit(_state.forget(self._state))


def _running(flight: Flight) -> RunningFlight:  # a flight of this driver's state: one it made (`new_flight=`)
    return cast(RunningFlight, flight)


reset_in_child(_live.after_fork_in_child)
