"""The single flight's decisions, as pure transitions of a `CacheState`.

What a caller gets now and whether a renewal starts (`plan`), what a finished
credential call changes (`land`) and what a service's 401 changes (`invalidate`):
each takes a state and the clocks and returns the new state and what to do
(`CacheStatus` is the state's public snapshot). No threads, no asyncio, no logging,
no clock read here: the driver (`_cache.TokenCache`) holds the lock, reads the
clocks, runs the calls and wakes the waiters. `now` is wall-clock Unix seconds
(token times), `mono` the monotonic clock (durations); see `_timing`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import NamedTuple

from ._credential import fingerprint
from ._settings import CacheSettings
from ._timing import ERROR_HOLD, after_failure, after_same_token

__all__ = [
    "BearerHeader",
    "CacheState",
    "CacheStatus",
    "CachedToken",
    "Flight",
    "Held",
    "Landing",
    "Plan",
    "drop",
    "forget",
    "invalidate",
    "land",
    "plan",
    "usable",
]


class BearerHeader(str):
    """`"Bearer <token>"`, a `str` whose repr hides the token.

    HTTP libraries keep the request's headers in their frames' locals (urllib3's
    `headers`), which error trackers render with `repr` when a connection fails.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return "'Bearer <token hidden>'"


class CachedToken:
    """A cached token (`TokenCache.current`): immutable, replaced and never edited.

    `header` is `"Bearer <token>"`, built once per token; `refresh_at` and `expires_on`
    are Unix seconds. Its repr shows only the fingerprint.
    """

    __slots__ = ("expires_on", "fingerprint", "header", "refresh_at", "token")

    def __init__(self, token: str, expires_on: float, refresh_at: float) -> None:
        self.token = token
        self.header = BearerHeader("Bearer " + token)  # built once per token, not once per request
        self.expires_on = expires_on
        self.refresh_at = refresh_at
        self.fingerprint = fingerprint(token)

    def deferred(self, until: float) -> CachedToken:
        """The same token, next renewal attempt at `until` (never past expiry)."""
        entry = CachedToken.__new__(CachedToken)
        entry.token, entry.header, entry.fingerprint = self.token, self.header, self.fingerprint
        entry.expires_on, entry.refresh_at = self.expires_on, min(self.expires_on, until)
        return entry

    def __repr__(self) -> str:
        return f"<token {self.fingerprint} expires_on={self.expires_on:.0f}>"


class Flight:
    """One credential call: the CAE claims it asks with, when it started (`mono`), and
    the generation of the state it began in (a 401 since makes it stale).

    Compared by identity: the driver subclasses it to hang its waiters on it.
    """

    __slots__ = ("claims", "generation", "started")

    def __init__(self, claims: str | None, started: float, generation: int) -> None:
        self.claims = claims
        self.started = started
        self.generation = generation


class Held(NamedTuple):
    """A failure with no valid token, re-raised without another call until `until` (`mono`)."""

    error: BaseException
    traceback: TracebackType | None
    until: float


@dataclass(frozen=True)
class CacheState:
    """What a cache knows, replaced whole by each transition."""

    settings: CacheSettings
    entry: CachedToken | None = None
    """The token held (`TokenCache.current`)."""
    flight: Flight | None = None
    """The call whose outcome callers wait for (abandoned and disowned calls are not it)."""
    claims: str | None = None
    """Claims of a CAE challenge, for the next flight only."""
    held: Held | None = None
    last_forced: float = float("-inf")
    """When a 401 last dropped a token (`mono`)."""
    generation: int = 0
    """Bumped when a 401 drops a token: flights begun before are stale."""
    refreshes: int = 0
    failures: int = 0


class CacheStatus(NamedTuple):
    """A snapshot of a cache, without the token itself."""

    fingerprint: str | None
    """`fingerprint(token)` of the cached token, or None when nothing is cached."""
    expires_on: float | None
    """When the cached token expires (Unix seconds)."""
    refresh_at: float | None
    """When the cache will next ask the credential (Unix seconds)."""
    credential_calls: int
    """Calls started on the credential so far (finished or not, successful or not). With
    `shared_cache`, a renewal that took another process's token from the store is not
    one: it counts in `store_hits`."""
    refreshes: int
    """New tokens received so far, from the credential or the shared store."""
    failures: int
    """Credential calls that raised or returned something unusable."""
    store_hits: int = 0
    """Renewals that took another process's token from the shared store, with no credential call."""


class Plan(NamedTuple):
    """What one caller does now."""

    entry: CachedToken | None
    """A valid token to use (or to fall back on if waiting for `wait_for` fails)."""
    wait_for: Flight | None = None
    """A flight to wait for."""
    launch: Flight | None = None
    """A new flight this caller must start (maybe a background renewal nobody waits for)."""
    raise_held: Held | None = None
    """A failure to re-raise at once (no valid token, and the credential just failed)."""


class Landing(NamedTuple):
    """What a landed flight gives its waiters, and what the driver reports."""

    entry: CachedToken | None
    """The token the call brought (deferred if it was the one already held), or None."""
    kept: CachedToken | None = None
    """After a failed renewal: the still-valid token served on (worth a warning)."""


def usable(entry: CachedToken | None, now: float) -> CachedToken | None:
    """`entry` if it has not expired at `now`: a fallback when a renewal fails or hangs."""
    return entry if entry is not None and now < entry.expires_on else None


def plan(
    state: CacheState,
    now: float,
    mono: float,
    *,
    can_start: bool = True,
    orphaned: bool = False,
    others_running: bool = False,
    new_flight: Callable[[str | None, float, int], Flight] = Flight,
) -> tuple[CacheState, Plan]:
    """A caller arrives: what it gets (see `Plan`).

    `can_start`: whether this caller can start a call (a sync caller cannot run an
    async credential). `orphaned`: the flight in progress can never land (its event
    loop is gone). `others_running`: a call abandoned earlier has not returned yet, so
    the one in progress is not abandoned in turn (at most two calls run at once).
    `new_flight` makes the flight to launch (the driver's subclass).
    """
    entry, flight = state.entry, state.flight
    hung = flight is not None and mono - flight.started > state.settings.timeout and not others_running
    if flight is not None and (hung or orphaned):
        # The credential hangs, or the loop running it is gone. Abandon that call (it
        # may never return) so this caller can try again: at most one abandoned hung
        # call at a time.
        state = dataclasses.replace(state, flight=None)
        flight = None
    if entry is not None and now < entry.expires_on:
        if now < entry.refresh_at:
            return state, Plan(entry)
        launch = None
        if flight is None:
            if not can_start:
                return state, Plan(entry)
            state, flight = _start(state, mono, new_flight)
            launch = flight
        if state.settings.background_refresh:
            return state, Plan(entry, None, launch)
        return state, Plan(entry, flight, launch)
    if flight is not None:
        return state, Plan(None, flight)
    if state.held is not None and mono < state.held.until:
        # The credential just failed and nothing valid is cached: its error again,
        # rather than a call per request while the identity is down.
        return state, Plan(None, raise_held=state.held)
    if not can_start:
        return state, Plan(None)
    state, flight = _start(state, mono, new_flight)
    return state, Plan(None, flight, flight)


def _start(
    state: CacheState, mono: float, new_flight: Callable[[str | None, float, int], Flight]
) -> tuple[CacheState, Flight]:
    # Claims go with one attempt: a credential that refuses them (AzureCliCredential
    # asks the user to run `az login --claims-challenge`) must not fail every later
    # renewal too.
    flight = new_flight(state.claims, mono, state.generation)
    return dataclasses.replace(state, flight=flight, claims=None), flight


def land(
    state: CacheState, flight: Flight, outcome: CachedToken | BaseException | None, now: float, mono: float
) -> tuple[CacheState, Landing]:
    """A credential call ended with a token, an exception, or (None) nothing: its event
    loop shut down under it, so its waiters ask again and nothing failed.

    A `BaseException` that is not an `Exception` (`KeyboardInterrupt`, `SystemExit`)
    reaches this flight's waiters only and is never held for later callers.
    """
    settings, current, held = state.settings, state.entry, state.held
    refreshes, failures, kept = state.refreshes, state.failures, None
    # Begun before a 401 dropped a token: its token may be refused too, and its failure
    # says nothing about the renewal that replaced it.
    stale = flight.generation != state.generation
    # A call abandoned after `timeout` that fails late says nothing about the token a
    # later call brought either.
    abandoned = state.flight is not flight
    entry = outcome if isinstance(outcome, CachedToken) else None
    if entry is not None:
        held = None
        renewed = current is None or current.token != entry.token
        if not renewed:
            # The credential answered from its own cache with the token we hold:
            # azure-identity credentials do so until their own renewal window. Ask again
            # later rather than on every request.
            entry = entry.deferred(after_same_token(now, entry.expires_on, settings.retry_backoff))
        # The newest usable token wins, even one that expires before the one held (a
        # 24 h CAE token, then 1 h tokens); a call abandoned after `timeout` does not
        # replace the valid token a later call brought.
        if not stale and (not abandoned or current is None or now >= current.expires_on):
            current = entry
            refreshes += renewed
    elif outcome is not None and not stale and not abandoned:
        failures += 1
        if current is not None and now < current.expires_on:
            # Keep serving the valid token; the fast path needs no other state to know
            # the next attempt is `retry_backoff` away.
            current = kept = current.deferred(after_failure(now, current.expires_on, settings.retry_backoff))
        elif isinstance(outcome, Exception) and flight.claims is None:
            # A refusal of claims reaches its callers once and is not held: the next
            # caller asks without them.
            held = Held(outcome, outcome.__traceback__, mono + min(settings.retry_backoff, ERROR_HOLD))
    state = dataclasses.replace(
        state,
        entry=current,
        flight=None if state.flight is flight else state.flight,
        held=held,
        refreshes=refreshes,
        failures=failures,
    )
    return state, Landing(entry, kept)


def invalidate(state: CacheState, token: str, claims: str | None, mono: float) -> tuple[CacheState, bool]:
    """A service refused `token` (a 401, with a CAE challenge's `claims`): whether to retry.

    The token is dropped only if it is still the one held (another caller may have
    renewed it already), and at most once per `retry_backoff`, so a service that rejects
    every token cannot cause a credential call per request. A renewal under way is
    disowned: it may bring a token the service refuses too (one without these claims),
    so its result is not cached and the next caller starts a new one.
    """
    entry = state.entry
    if entry is None or entry.token != token:
        return state, True
    if mono - state.last_forced < state.settings.retry_backoff:
        return state, False
    return dataclasses.replace(drop(state, claims), last_forced=mono), True


def drop(state: CacheState, claims: str | None = None) -> CacheState:
    """The token held dropped, with no condition: the next caller asks the credential (with
    `claims`). A renewal under way is disowned (the generation moves on): it may bring a token
    begun before the drop, so its result is not cached."""
    return dataclasses.replace(
        state, entry=None, flight=None, claims=claims, held=None, generation=state.generation + 1
    )


def forget(state: CacheState) -> CacheState:
    """Back to as made (the testing kit's reset): no token, no held error, no backoff, no
    counts. The generation moves on, so a call begun before brings nothing into the new state."""
    return CacheState(state.settings, generation=state.generation + 1)
