"""The token cache: one token, one credential call in flight (the single flight).

A `TokenCache` holds one access token for one credential and one set of scopes and
hands it out until it is due for renewal. Everything else in the package (the
requests auth, the httpx auths, the openai providers) is a thin layer over
`TokenCache.get_token` / `TokenCache.get_token_async` / `TokenCache.invalidate`.
When to renew lives in `_timing`, how to ask the credential in `_credential`, the
caches shared between adapters in `_registry`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import threading
import time
import weakref
from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, NamedTuple, TypedDict

from . import _timing
from ._credential import DEFAULT_SCOPE, CredentialBinding, TokenInfo, fingerprint, normalize_scopes
from ._errors import TokenAcquisitionTimeout
from ._forks import reset_in_child
from ._keep_fresh import keep_fresh as start_keep_fresh
from ._keep_fresh import restart_in_child as restart_keep_fresh_in_child
from ._prefetch import prefetch as start_prefetch
from ._store import SharedBinding, share, shared_cache_setting
from ._timing import ERROR_HOLD, after_failure, after_same_token, is_number, plan_renewal

if TYPE_CHECKING:
    from ._credential import Credential

__all__ = ["DEFAULT_SCOPE", "CacheOptions", "CacheStatus", "CachedToken", "TokenCache", "fingerprint"]

_log = logging.getLogger("azure_ad_token_auth")

# How often a caller waiting on a flight run by another event loop checks that the
# loop still exists (a closed loop never lands its flights).
_ORPHAN_POLL = 0.05

# Every live cache, so a forked child can reset them (see `_reset_after_fork`).
_CACHES: weakref.WeakSet[TokenCache] = weakref.WeakSet()


class CacheOptions(TypedDict, total=False):
    """Keyword options of `TokenCache`, accepted by every adapter that creates one."""

    refresh_margin: float
    background_refresh: bool
    retry_backoff: float
    timeout: float
    jitter: float
    tenant_id: str | None
    enable_cae: bool
    shared_cache: bool | str | os.PathLike[str] | None
    shared_cache_identity: str | None
    keep_fresh: bool
    prefetch: bool


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


class _Flight:
    """One credential call in progress, awaited by every caller that needs its result.

    Sync callers wait on `done`; async callers register an asyncio future of their own
    loop, completed thread-safely when the flight lands, so one flight serves threads
    and event loops alike. A waiter that gives up takes its future back out, so a hung
    call holds no memory for the callers that stopped waiting.
    """

    __slots__ = (
        "claims",
        "done",
        "entry",
        "error",
        "generation",
        "gone",
        "loop",
        "started",
        "task",
        "traceback",
        "waiters",
    )

    def __init__(self, claims: str | None, started: float, generation: int) -> None:
        self.claims = claims
        self.started = started  # monotonic
        self.generation = generation
        self.done = threading.Event()
        self.entry: CachedToken | None = None
        self.error: BaseException | None = None
        self.traceback: TracebackType | None = None
        self.gone = False  # its event loop shut down under it: no outcome, ask again
        self.waiters: dict[asyncio.Future[None], asyncio.AbstractEventLoop] = {}
        self.loop: asyncio.AbstractEventLoop | None = None  # the loop running an async flight
        self.task: _FlightTask | None = None  # strong reference for async flights

    def orphaned(self) -> bool:
        """Will never land with an outcome: its event loop shut down or was closed under it."""
        return self.gone or (self.loop is not None and self.loop.is_closed() and not self.done.is_set())


class _FlightTask(asyncio.Task):  # type: ignore[type-arg]
    """The task of an async flight, which knows whether someone cancelled it.

    A `CancelledError` from the credential itself (one awaiting a cancelled future) is
    a failure like any other; only a cancelled task (its loop shutting down) is not.
    """

    cancel_requested = False

    def cancel(self, *args: Any, **kwargs: Any) -> bool:
        self.cancel_requested = True
        return super().cancel(*args, **kwargs)


class Plan(NamedTuple):
    """What one caller gets, decided under the lock (`TokenCache._plan`)."""

    entry: CachedToken | None
    """A valid token to use (or to fall back on if `wait_for` fails)."""
    wait_for: _Flight | None
    """A flight to wait for."""
    launch: _Flight | None
    """A new flight this caller must start (maybe a background renewal nobody waits for)."""


class TokenCache:
    """A thread-safe, async-aware cache of one Azure AD access token.

    - `credential`: any azure-core credential, sync or async (an object with
      `get_token_info` or `get_token`). `None` means `azure.identity.DefaultAzureCredential()`,
      created once, on first use.
    - `scopes`: one scope or a sequence of them.
    - `refresh_margin`: ask for a new token once this many seconds or fewer remain
      before expiry (default 300; azure-identity's `<=`). For short-lived tokens the
      margin is capped at half the token's lifetime, so a 2-minute token is renewed
      after about one minute, not on every request. A `refresh_on` from the credential
      is honoured when it comes first, even one already past (the next request renews).
    - `background_refresh`: when a token is due for renewal but still valid, hand it out
      at once and renew in the background (default). With `False`, callers wait for the
      renewal (and still get the valid token if it fails).
    - `retry_backoff`: after a failed renewal, keep serving the valid token and wait this
      long before asking again; also the least time between two renewals forced by a 401.
    - `timeout`: the longest a caller waits for a token before `TokenAcquisitionTimeout`.
    - `jitter`: renew up to this many seconds earlier, at random, to spread a fleet's
      renewals (never later than without it).
    - `tenant_id`, `enable_cae`: passed to the credential (a CAE challenge's claims are
      always sent with `enable_cae=True`: see `CredentialBinding.options`).
    - `shared_cache`: share tokens with the other processes of this user on this host
      (one renewal at a time across them): `True` for a per-user private directory, or a
      directory path. `None` (default) follows the `AZURE_AD_TOKEN_AUTH_SHARED_CACHE`
      environment variable; `False` is off whatever it says.
    - `shared_cache_identity`: a name for the identity behind the credential, for the
      store's key, when the credential's class and client id do not tell identities apart.
    - `keep_fresh`: renew ahead of expiry even when no request comes (a daemon timer per
      cache), so a request after an idle spell never waits for the credential.
    - `prefetch`: start fetching the first token in the background now, so the first
      request waits at most for the rest of that fetch.

    One credential call is in flight per cache however many threads and coroutines ask
    at once (a call that hangs is abandoned after `timeout`, and one begun before a 401
    dropped its token is disowned by `invalidate`; in both cases the next caller starts
    another). With no valid token, a failure is re-raised for up to 5 s (at most
    `retry_backoff`) without another call; only `Exception`s are held so.
    """

    def __init__(
        self,
        credential: Credential | None = None,
        scopes: str | Sequence[str] = DEFAULT_SCOPE,
        *,
        refresh_margin: float = 300.0,
        background_refresh: bool = True,
        retry_backoff: float = 30.0,
        timeout: float = 60.0,
        jitter: float = 0.0,
        tenant_id: str | None = None,
        enable_cae: bool = False,
        shared_cache: bool | str | os.PathLike[str] | None = None,
        shared_cache_identity: str | None = None,
        keep_fresh: bool = False,
        prefetch: bool = False,
    ) -> None:
        for name, value in (
            ("refresh_margin", refresh_margin),
            ("retry_backoff", retry_backoff),
            ("timeout", timeout),
            ("jitter", jitter),
        ):
            if not is_number(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        # Zero would turn "ask again later" into "ask on every request".
        if retry_backoff == 0 or timeout == 0:
            raise ValueError("retry_backoff and timeout must be greater than 0")
        self._scopes = normalize_scopes(scopes)
        self._binding: CredentialBinding | SharedBinding = CredentialBinding(
            credential, self._scopes, tenant_id=tenant_id, enable_cae=enable_cae
        )
        directory = shared_cache_setting(shared_cache)
        if directory is not None:
            self._binding = share(self._binding, directory, shared_cache_identity, timeout)
        self._margin = float(refresh_margin)
        self._background = background_refresh
        self._backoff = float(retry_backoff)
        self._timeout = float(timeout)
        self._jitter = float(jitter)

        self._lock = threading.Lock()
        self.current: CachedToken | None = None
        """The token held now, or None: read-only, replaced whole and never edited, so
        adapters may read it without the lock (their per-request fast path)."""
        self._flight: _Flight | None = None
        self._claims: str | None = None  # claims of a CAE challenge, for the next flight only
        # After a failure with no valid token: that error, re-raised until `_error_until`.
        self._error: BaseException | None = None
        self._error_traceback: TracebackType | None = None
        self._error_until = 0.0  # monotonic
        self._last_forced = float("-inf")  # when a 401 last dropped a token (monotonic)
        self._generation = 0  # bumped when a 401 drops a token: older flights are stale
        self._refreshes = 0
        self._failures = 0
        # Flights whose thread has not returned (abandoned ones included): see `renewing`.
        self._in_threads: set[_Flight] = set()
        _CACHES.add(self)
        self._switch_on(keep_fresh, prefetch)

    # -- public API ---------------------------------------------------------------

    @property
    def scopes(self) -> tuple[str, ...]:
        """The scopes tokens are requested for."""
        return self._scopes

    @property
    def credential(self) -> Any:
        """The credential (None until the default one is created on first use)."""
        return self._binding.credential

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
        """`get_token` for coroutines: never blocks the event loop.

        An async credential is awaited on the running loop; a sync one runs in a thread.
        """
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
            entry = self.current
            if entry is None or entry.token != token:
                return True
            mono = _timing.monotonic()
            if mono - self._last_forced < self._backoff:
                return False
            self._last_forced = mono
            self._generation += 1
            self.current = None
            self._error = None
            self._claims = claims
            # A renewal already under way may bring a token the service refuses too (one
            # without these claims): its result is not cached, and the next caller
            # starts a new one.
            self._flight = None
        _log.debug("token %s rejected by the service; dropped%s", entry.fingerprint, " (CAE claims)" if claims else "")
        self._binding.rejected(token)
        return True

    @property
    def renewing(self) -> bool:
        """Whether a credential call this cache started in a thread has not returned yet.

        A call abandoned after `timeout` (the credential hangs) counts until it returns:
        keep-fresh starts no other while one is stuck.
        """
        return bool(self._in_threads)

    def status(self) -> CacheStatus:
        """A snapshot of the cache for display; never contains the token."""
        entry = self.current
        hits = self._binding.store_hits if isinstance(self._binding, SharedBinding) else 0
        return CacheStatus(
            entry.fingerprint if entry else None,
            entry.expires_on if entry else None,
            entry.refresh_at if entry else None,
            self._binding.calls,
            self._refreshes,
            self._failures,
            hits,
        )

    def __repr__(self) -> str:
        entry = self.current
        cred = type(self.credential).__name__ if self._binding.bound else "DefaultAzureCredential (lazy)"
        held = (
            f"token {entry.fingerprint} expires in {entry.expires_on - time.time():.0f} s"
            if entry is not None
            else "no token"
        )
        return f"<TokenCache credential={cred} scopes={list(self._scopes)} {held}>"

    def _switch_on(self, keep_fresh: bool, prefetch: bool) -> None:
        if keep_fresh:
            if self._binding.is_async:
                raise ValueError(
                    "keep_fresh needs a sync credential (its timer is a thread); with an async one, "
                    "requests renew the token in the background"
                )
            start_keep_fresh(self)
        if prefetch:
            start_prefetch(self, self._binding.is_async)

    def _bound(self) -> CredentialBinding | SharedBinding:
        binding = self._binding
        if not binding.bound:
            with self._lock:
                binding.bind()
        return binding

    # -- deciding what a caller needs ----------------------------------------------

    def _plan(self, now: float, can_start: bool) -> Plan:
        """Under the lock: what this caller gets (see `Plan`); `now` is wall-clock time."""
        mono = _timing.monotonic()
        entry = self.current
        flight = self._flight
        if flight is not None and (mono - flight.started > self._timeout or flight.orphaned()):
            # The credential hangs, or the loop running it is gone. Abandon that call
            # (it may never return) so this caller can try again: at most one abandoned
            # hung call per `timeout`.
            self._flight = flight = None
        launch = None
        if entry is not None and now < entry.expires_on:
            if now < entry.refresh_at:
                return Plan(entry, None, None)
            if flight is None:
                if not can_start:
                    return Plan(entry, None, None)
                flight = launch = self._new_flight(mono)
            return Plan(entry, None, launch) if self._background else Plan(entry, flight, launch)
        if flight is None:
            if self._error is not None and mono < self._error_until:
                # The credential just failed and nothing valid is cached: its error
                # again, rather than a call per request while the identity is down.
                raise self._error.with_traceback(self._error_traceback)
            if not can_start:
                return Plan(None, None, None)
            flight = launch = self._new_flight(mono)
        return Plan(None, flight, launch)

    def _new_flight(self, mono: float) -> _Flight:
        # Claims go with one attempt: a credential that refuses them (AzureCliCredential
        # asks the user to run `az login --claims-challenge`) must not fail every later
        # renewal too.
        flight = self._flight = _Flight(self._claims, mono, self._generation)
        self._claims = None
        return flight

    def _entry_slow(self) -> CachedToken:
        binding = self._bound()
        while True:
            with self._lock:
                entry, flight, launch = self._plan(time.time(), not binding.is_async)
            if launch is not None:
                self._launch_thread(launch)
            if flight is None:
                if entry is None:
                    raise TypeError(
                        f"this TokenCache holds an async credential ({type(self.credential).__name__}) and no "
                        "valid token: await get_token_async() or use async_token_provider()"
                    )
                return entry
            if not self._wait(flight):
                if entry is not None and time.time() < entry.expires_on:
                    return entry
                raise self._timeout_error()
            if flight.orphaned():
                continue  # an async call whose event loop shut down: plan again (see below)
            return self._outcome(flight, entry)

    def _wait(self, flight: _Flight) -> bool:
        """Wait for `flight` to land or be orphaned; False after `timeout`."""
        if flight.loop is None:
            return flight.done.wait(self._timeout)
        deadline = _timing.monotonic() + self._timeout
        while not flight.done.wait(_ORPHAN_POLL):
            if flight.orphaned():
                return True
            if _timing.monotonic() >= deadline:
                return False
        return True

    async def _entry_slow_async(self) -> CachedToken:
        loop = asyncio.get_running_loop()
        binding = self._binding
        if not binding.bound:
            # Creating DefaultAzureCredential reads files and the environment: off the loop.
            await loop.run_in_executor(None, self._bound)
        while True:
            future: asyncio.Future[None] | None = None
            with self._lock:
                entry, flight, launch = self._plan(time.time(), True)
                if flight is not None:
                    # A flight in `_plan`'s hands has not landed: landing happens under this
                    # lock and takes the waiters with it.
                    future = loop.create_future()
                    flight.waiters[future] = loop
            if launch is not None:
                if binding.is_async:
                    launch.loop = loop
                    launch.task = _FlightTask(self._run_flight_async(launch), loop=loop)
                else:
                    self._launch_thread(launch, loop)
            if flight is None or future is None:
                assert entry is not None
                return entry
            try:
                landed = await self._wait_async(flight, future)
            finally:
                if not flight.done.is_set():  # timed out or cancelled: stop holding its future
                    with self._lock:
                        flight.waiters.pop(future, None)
            if not landed:
                if entry is not None and time.time() < entry.expires_on:
                    return entry
                raise self._timeout_error()
            if flight.orphaned():
                # The call ran on another event loop, which shut down under it: nothing
                # is wrong with the credential, so ask again from this loop.
                continue
            return self._outcome(flight, entry)

    async def _wait_async(self, flight: _Flight, future: asyncio.Future[None]) -> bool:
        """`_wait` for coroutines: `future` completes when `flight` lands."""
        loop = asyncio.get_running_loop()
        if flight.loop is None or flight.loop is loop:
            # The common case, one wait: a timer beats wait_for + shield (a task and a
            # future more per waiter) when a thousand coroutines wait at once.
            wake = loop.call_later(self._timeout, _resolve, future)
            try:
                await future  # completed by the landing, or by the timer
            finally:
                wake.cancel()
            return flight.done.is_set()
        # A flight on another loop is checked now and then: that loop may be closed.
        deadline = _timing.monotonic() + self._timeout
        while True:
            remaining = deadline - _timing.monotonic()
            if remaining <= 0:
                return False
            done, _ = await asyncio.wait((future,), timeout=min(_ORPHAN_POLL, remaining))
            if done or flight.orphaned():
                return True

    def _launch_thread(self, flight: _Flight, loop: asyncio.AbstractEventLoop | None = None) -> None:
        # A thread per renewal (rare: once per token lifetime) lets every caller, the
        # one that started it included, give up after `timeout` if the credential hangs.
        self._in_threads.add(flight)
        try:
            threading.Thread(
                target=self._run_flight, args=(flight, loop), name="azure-ad-token-auth-refresh", daemon=True
            ).start()
        except BaseException as exc:  # e.g. the interpreter shutting down: land it, or all wait
            self._in_threads.discard(flight)
            self._land(flight, None, exc)
            raise

    def _outcome(self, flight: _Flight, fallback: CachedToken | None) -> CachedToken:
        if flight.entry is not None:
            return flight.entry
        if fallback is not None and time.time() < fallback.expires_on:
            return fallback
        assert flight.error is not None
        # The same exception object reaches every waiter: re-raise it with the traceback
        # it landed with, or each raise would lengthen it (as asyncio.Future does).
        raise flight.error.with_traceback(flight.traceback)

    def _timeout_error(self) -> TokenAcquisitionTimeout:
        return TokenAcquisitionTimeout(
            f"no token from {self._binding.name} within {self._timeout:g} s "
            f"(scopes {list(self._scopes)}); the credential may be hanging"
        )

    # -- running a flight -------------------------------------------------------------

    def _run_flight(self, flight: _Flight, loop: asyncio.AbstractEventLoop | None = None) -> None:
        try:
            entry = self._make_entry(self._binding.fetch(flight.claims, loop=loop))
        except asyncio.CancelledError as exc:  # nobody cancels a thread: the credential's own
            self._land(flight, None, self._foreign_cancellation(exc))
        except BaseException as exc:  # noqa: BLE001 - handed to the waiters, re-raised there
            self._land(flight, None, exc)
        else:
            self._land(flight, entry, None)
        finally:
            self._in_threads.discard(flight)

    async def _run_flight_async(self, flight: _Flight) -> None:
        try:
            entry = self._make_entry(await self._binding.fetch_async(flight.claims))
        except asyncio.CancelledError as exc:
            if flight.task is not None and flight.task.cancel_requested:  # its loop is shutting down
                self._land(flight, None, None, gone=True)
                raise
            self._land(flight, None, self._foreign_cancellation(exc))
        except GeneratorExit:
            # The coroutine is closed with its loop, maybe by the garbage collector inside
            # some thread's `with self._lock`: take no lock, only mark it (waiters poll).
            flight.gone = True
            raise
        except BaseException as exc:  # noqa: BLE001
            self._land(flight, None, exc)
        else:
            self._land(flight, entry, None)

    def _foreign_cancellation(self, exc: asyncio.CancelledError) -> RuntimeError:
        # Re-raised as is, it would look like the waiting callers' own cancellation,
        # and re-planning on it made a credential call per loop turn.
        error = RuntimeError(
            f"{self._binding.name} raised asyncio.CancelledError although nobody cancelled "
            "this token request; treated as a failed call"
        ).with_traceback(exc.__traceback__)
        error.__cause__ = exc
        return error

    def _make_entry(self, info: TokenInfo) -> CachedToken:
        """A checked token, with when to renew it."""
        draw = random.uniform(0, self._jitter) if self._jitter else 0.0
        renewal = plan_renewal(time.time(), info.expires_on, info.refresh_on, self._margin, draw)
        return CachedToken(info.token, renewal.expires_on, renewal.refresh_at)

    def _land(
        self, flight: _Flight, entry: CachedToken | None, error: BaseException | None, *, gone: bool = False
    ) -> None:
        """Record a flight's outcome and wake everyone waiting for it.

        `gone`: its event loop shut down under it, so there is no outcome (and no failure):
        the waiters ask again. A `BaseException` that is not an `Exception`
        (`KeyboardInterrupt`, `SystemExit`) reaches this flight's waiters once and is
        never held for later callers.
        """
        warn = None
        with self._lock:
            now = time.time()
            current = self.current
            # Begun before a 401 dropped a token: its token may be refused too, and its
            # failure says nothing about the renewal that replaced it.
            stale = flight.generation != self._generation
            # A call abandoned after `timeout` that fails late says nothing about the
            # token a later call brought either.
            abandoned = self._flight is not flight
            if entry is not None:
                self._error = None
                renewed = current is None or current.token != entry.token
                if not renewed:
                    # The credential answered from its own cache with the token we hold:
                    # azure-identity credentials do so until their own renewal window.
                    # Ask again later rather than on every request.
                    entry = entry.deferred(after_same_token(now, entry.expires_on, self._backoff))
                # The newest usable token wins, even one that expires before the one held
                # (a 24 h CAE token, then 1 h tokens); a call abandoned after `timeout`
                # does not replace the valid token a later call brought.
                if not stale and (not abandoned or current is None or now >= current.expires_on):
                    self.current = entry
                    self._refreshes += renewed
            elif not stale and not abandoned and not gone:
                self._failures += 1
                if current is not None and now < current.expires_on:
                    # Keep serving the valid token; the fast path needs no other state to
                    # know the next attempt is `retry_backoff` away.
                    self.current = current.deferred(after_failure(now, current.expires_on, self._backoff))
                    warn = current
                elif isinstance(error, Exception) and flight.claims is None:
                    # A refusal of claims reaches its callers once and is not held: the
                    # next caller asks without them.
                    self._error, self._error_until = error, _timing.monotonic() + min(self._backoff, ERROR_HOLD)
                    self._error_traceback = error.__traceback__
            if self._flight is flight:
                self._flight = None
            flight.entry = entry
            flight.error = error
            flight.gone = gone
            flight.traceback = error.__traceback__ if error is not None else None
            waiters, flight.waiters = flight.waiters, {}
        if entry is not None:
            _log.debug(
                "acquired token %s for %s from %s: expires in %.0f s, renewal in %.0f s",
                entry.fingerprint,
                list(self._scopes),
                self._binding.name,
                entry.expires_on - now,
                entry.refresh_at - now,
            )
        elif warn is not None:
            _log.warning(
                "token renewal failed (%s from %s); still using the cached token %s, valid for %.0f s more; "
                "next attempt in %.0f s",
                type(error).__name__,
                self._binding.name,
                warn.fingerprint,
                warn.expires_on - now,
                self._backoff,
            )
        elif not gone:
            _log.debug("token request failed: %s from %s", type(error).__name__, self._binding.name)
        # Wake the waiters last, so what they see (state, log) is complete.
        flight.done.set()
        for future, loop in waiters.items():
            # RuntimeError: that loop is closed, so nobody waits there any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_resolve, future)

    def _after_fork_in_child(self) -> None:
        # The child has only the forking thread: a lock held by another thread would
        # stay held forever, and a flight running in another thread will never land.
        self._lock = threading.Lock()
        self._flight = None
        self._in_threads = set()


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _reset_after_fork() -> None:
    for cache in list(_CACHES):
        cache._after_fork_in_child()
    restart_keep_fresh_in_child()  # only now: its timers use the caches just reset


reset_in_child(_reset_after_fork)
