"""The token cache: the one mechanism every adapter and provider shares.

A `TokenCache` holds one access token for one credential and one set of scopes and
hands it out until it is due for renewal. Everything else in the package (the
requests auth, the httpx auths, the openai providers) is a thin layer over
`TokenCache.get_token` / `TokenCache.get_token_async` / `TokenCache.invalidate`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import inspect
import logging
import math
import os
import random
import threading
import time
import weakref
from collections.abc import Callable, MutableMapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, NamedTuple, TypedDict

from ._errors import InvalidTokenError, TokenAcquisitionTimeout

if TYPE_CHECKING:
    from azure.core.credentials import SupportsTokenInfo, TokenCredential
    from azure.core.credentials_async import AsyncSupportsTokenInfo, AsyncTokenCredential

    Credential = TokenCredential | SupportsTokenInfo | AsyncTokenCredential | AsyncSupportsTokenInfo

__all__ = [
    "DEFAULT_SCOPE",
    "CacheOptions",
    "CacheStatus",
    "CachedToken",
    "TokenCache",
    "forget_shared_caches",
    "resolve_cache",
]

DEFAULT_SCOPE = "https://cognitiveservices.azure.com/.default"

_log = logging.getLogger("azure_ad_token_auth")

# How long a failure with no valid token is re-raised without asking the credential
# again (at most `retry_backoff`): long enough to spare an identity endpoint that is down
# a call per request, short enough that a fixed `az login` shows at once.
_ERROR_HOLD = 5.0

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


def fingerprint(token: str) -> str:
    """A short, non-reversible name for a token, safe to log and print."""
    return hashlib.sha256(token.encode()).hexdigest()[:8]


class CacheStatus(NamedTuple):
    """A snapshot of a cache, without the token itself."""

    fingerprint: str | None
    """`fingerprint(token)` of the cached token, or None when nothing is cached."""
    expires_on: float | None
    """When the cached token expires (Unix seconds)."""
    refresh_at: float | None
    """When the cache will next ask the credential (Unix seconds)."""
    credential_calls: int
    """Calls started on the credential so far (finished or not, successful or not)."""
    refreshes: int
    """New tokens received from the credential so far."""
    failures: int
    """Credential calls that raised or returned something unusable."""


class CachedToken:
    """A cached token (`TokenCache.current`): immutable, replaced and never edited.

    `header` is `"Bearer <token>"`, built once per token; `refresh_at` and `expires_on`
    are Unix seconds. Its repr shows only the fingerprint.
    """

    __slots__ = ("expires_on", "fingerprint", "header", "refresh_at", "token")

    def __init__(self, token: str, expires_on: float, refresh_at: float) -> None:
        self.token = token
        self.header = "Bearer " + token  # built once per token, not once per request
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
    and event loops alike.
    """

    __slots__ = ("claims", "done", "entry", "error", "generation", "started", "task", "traceback", "waiters")

    def __init__(self, claims: str | None, started: float, generation: int) -> None:
        self.claims = claims
        self.started = started
        self.generation = generation
        self.done = threading.Event()
        self.entry: CachedToken | None = None
        self.error: BaseException | None = None
        self.traceback: TracebackType | None = None
        self.waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self.task: asyncio.Task[None] | None = None  # strong reference for async flights


def _normalize_scopes(scopes: str | Sequence[str]) -> tuple[str, ...]:
    if isinstance(scopes, str):
        result: tuple[str, ...] = (scopes,)
    else:
        result = tuple(scopes)
    if not result or not all(isinstance(s, str) and s for s in result):
        raise ValueError(f"scopes must be a non-empty string or a sequence of them, got {scopes!r}")
    return result


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class TokenCache:
    """A thread-safe, async-aware cache of one Azure AD access token.

    - `credential`: any azure-core credential, sync or async (an object with
      `get_token_info` or `get_token`). `None` means `azure.identity.DefaultAzureCredential()`,
      created once, on first use.
    - `scopes`: one scope or a sequence of them.
    - `refresh_margin`: ask for a new token this many seconds before expiry (default 300).
      For short-lived tokens the margin is capped at half the token's lifetime, so a
      2-minute token is renewed after about one minute, not on every request. A
      `refresh_on` from the credential is honoured when it comes first.
    - `background_refresh`: when a token is due for renewal but still valid, hand it out
      at once and renew in the background (default). With `False`, callers wait for the
      renewal (and still get the valid token if it fails).
    - `retry_backoff`: after a failed renewal, keep serving the valid token and wait this
      long before asking again; also the least time between two renewals forced by a 401.
    - `timeout`: the longest a caller waits for a token before `TokenAcquisitionTimeout`.
    - `jitter`: renew up to this many seconds earlier, at random, to spread a fleet's
      renewals.
    - `tenant_id`, `enable_cae`: passed to the credential.

    One credential call is in flight per cache however many threads and coroutines ask
    at once (a call that hangs is abandoned after `timeout`, and one begun before a 401
    dropped its token is disowned by `invalidate`; in both cases the next caller starts
    another). With no valid token, a failure is re-raised for up to 5 s (at most
    `retry_backoff`) without another call.
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
    ) -> None:
        for name, value in (
            ("refresh_margin", refresh_margin),
            ("retry_backoff", retry_backoff),
            ("timeout", timeout),
            ("jitter", jitter),
        ):
            if not _is_number(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        # Zero would turn "ask again later" into "ask on every request".
        if retry_backoff == 0 or timeout == 0:
            raise ValueError("retry_backoff and timeout must be greater than 0")
        self._scopes = _normalize_scopes(scopes)
        self._credential: Any = credential
        self._fetch: Callable[[str | None], Any] | None = None
        self._is_async = False
        if credential is not None:
            self._fetch, self._is_async = self._bind(credential)
        self._margin = float(refresh_margin)
        self._background = background_refresh
        self._backoff = float(retry_backoff)
        self._timeout = float(timeout)
        self._jitter = float(jitter)
        self._tenant_id = tenant_id
        self._enable_cae = enable_cae

        self._lock = threading.Lock()
        self.current: CachedToken | None = None
        """The token held now, or None: read-only, replaced whole and never edited, so
        adapters may read it without the lock (their per-request fast path)."""
        self._flight: _Flight | None = None
        self._claims: str | None = None  # claims of a CAE challenge, owed to the next flight
        # After a failure with no valid token: that error, re-raised until `_error_until`.
        self._error: BaseException | None = None
        self._error_traceback: TracebackType | None = None
        self._error_until = 0.0
        self._last_forced = float("-inf")  # when a 401 last dropped a token
        self._generation = 0  # bumped when a 401 drops a token: older flights are stale
        self._calls = 0
        self._refreshes = 0
        self._failures = 0
        _CACHES.add(self)

    # -- public API ---------------------------------------------------------------

    @property
    def scopes(self) -> tuple[str, ...]:
        """The scopes tokens are requested for."""
        return self._scopes

    @property
    def credential(self) -> Any:
        """The credential (None until the default one is created on first use)."""
        return self._credential

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
            now = time.time()
            if now - self._last_forced < self._backoff:
                return False
            self._last_forced = now
            self._generation += 1
            self.current = None
            self._error = None
            self._claims = claims
            # A renewal already under way may bring a token the service refuses too (one
            # without these claims): its result is not cached, and the next caller
            # starts a new one.
            self._flight = None
        _log.debug("token %s rejected by the service; dropped%s", entry.fingerprint, " (CAE claims)" if claims else "")
        return True

    def status(self) -> CacheStatus:
        """A snapshot of the cache for display; never contains the token."""
        entry = self.current
        return CacheStatus(
            entry.fingerprint if entry else None,
            entry.expires_on if entry else None,
            entry.refresh_at if entry else None,
            self._calls,
            self._refreshes,
            self._failures,
        )

    def __repr__(self) -> str:
        entry = self.current
        cred = type(self._credential).__name__ if self._credential is not None else "DefaultAzureCredential (lazy)"
        held = (
            f"token {entry.fingerprint} expires in {entry.expires_on - time.time():.0f} s"
            if entry is not None
            else "no token"
        )
        return f"<TokenCache credential={cred} scopes={list(self._scopes)} {held}>"

    # -- credential binding ---------------------------------------------------------

    def _bind(self, credential: Any) -> tuple[Callable[[str | None], Any], bool]:
        """Pick the credential method once: `get_token_info` (carries `refresh_on`) first."""
        info = getattr(credential, "get_token_info", None)
        plain = getattr(credential, "get_token", None)
        scopes = self._scopes
        if callable(info):
            method: Callable[..., Any] = info

            def fetch(claims: str | None) -> Any:
                return method(*scopes, options=self._options(claims) or None)

        elif callable(plain):
            method = plain

            def fetch(claims: str | None) -> Any:
                return method(*scopes, **self._options(claims))

        else:
            raise TypeError(
                f"credential must have a get_token_info() or get_token() method; got {type(credential).__name__}"
            )
        return fetch, inspect.iscoroutinefunction(method)

    def _options(self, claims: str | None) -> dict[str, Any]:
        """`TokenRequestOptions` for `get_token_info`; the same names are `get_token`'s kwargs."""
        options: dict[str, Any] = {}
        if claims is not None:
            options["claims"] = claims
        if claims is not None or self._enable_cae:
            options["enable_cae"] = True
        if self._tenant_id is not None:
            options["tenant_id"] = self._tenant_id
        return options

    def _fetcher(self) -> Callable[[str | None], Any]:
        if self._fetch is None:
            with self._lock:
                if self._fetch is None:
                    from azure.identity import DefaultAzureCredential

                    self._credential = DefaultAzureCredential()
                    self._fetch, self._is_async = self._bind(self._credential)
        return self._fetch

    def _method_name(self) -> str:
        cred = self._credential
        method = "get_token_info" if callable(getattr(cred, "get_token_info", None)) else "get_token"
        return f"{type(cred).__name__}.{method}()"

    # -- deciding what a caller needs ----------------------------------------------

    def _plan(self, now: float, can_start: bool) -> tuple[CachedToken | None, _Flight | None, _Flight | None]:
        """Under the lock: what this caller gets.

        Returns `(entry, wait_for, launch)`: a valid `entry` to use; a flight to wait for
        (when both are set, the caller falls back to `entry` if the flight fails); and a
        new flight this caller must launch (it may be a background renewal nobody waits
        for).
        """
        entry = self.current
        flight = self._flight
        if flight is not None and now - flight.started > self._timeout:
            # The credential hangs. Abandon that call (its thread may never return) so a
            # later caller can try again: at most one abandoned call per `timeout`.
            self._flight = flight = None
        launch = None
        if entry is not None and now < entry.expires_on:
            if now < entry.refresh_at:
                return entry, None, None
            if flight is None:
                if not can_start:
                    return entry, None, None
                flight = launch = self._new_flight(now)
            return (entry, None, launch) if self._background else (entry, flight, launch)
        if flight is None:
            if self._error is not None and now < self._error_until:
                # The credential just failed and nothing valid is cached: its error
                # again, rather than a call per request while the identity is down.
                raise self._error.with_traceback(self._error_traceback)
            if not can_start:
                return None, None, None
            flight = launch = self._new_flight(now)
        return None, flight, launch

    def _new_flight(self, now: float) -> _Flight:
        self._calls += 1
        flight = self._flight = _Flight(self._claims, now, self._generation)
        return flight

    def _entry_slow(self) -> CachedToken:
        if self._fetch is None:
            self._fetcher()
        while True:
            with self._lock:
                entry, flight, launch = self._plan(time.time(), not self._is_async)
            if launch is not None:
                self._launch_thread(launch)
            if flight is None:
                if entry is None:
                    raise TypeError(
                        f"this TokenCache holds an async credential ({type(self._credential).__name__}) and no "
                        "valid token: await get_token_async() or use async_token_provider()"
                    )
                return entry
            if not flight.done.wait(self._timeout):
                if entry is not None and time.time() < entry.expires_on:
                    return entry
                raise self._timeout_error()
            if isinstance(flight.error, asyncio.CancelledError):
                continue  # an async call whose event loop shut down: plan again (see below)
            return self._outcome(flight, entry)

    async def _entry_slow_async(self) -> CachedToken:
        loop = asyncio.get_running_loop()
        if self._fetch is None:
            # Creating DefaultAzureCredential reads files and the environment: off the loop.
            await loop.run_in_executor(None, self._fetcher)
        while True:
            future: asyncio.Future[None] | None = None
            with self._lock:
                entry, flight, launch = self._plan(time.time(), True)
                if flight is not None:
                    # A flight in `_plan`'s hands has not landed: landing happens under this
                    # lock and takes the waiter list with it.
                    future = loop.create_future()
                    flight.waiters.append((loop, future))
            if launch is not None:
                if self._is_async:
                    launch.task = loop.create_task(self._run_flight_async(launch))
                else:
                    self._launch_thread(launch)
            if flight is None or future is None:
                assert entry is not None
                return entry
            try:
                await asyncio.wait_for(asyncio.shield(future), self._timeout)
            except asyncio.TimeoutError:
                if entry is not None and time.time() < entry.expires_on:
                    return entry
                raise self._timeout_error() from None
            if isinstance(flight.error, asyncio.CancelledError):
                # The call ran on another event loop, which shut down under it: nothing
                # is wrong with the credential, so ask again from this loop.
                continue
            return self._outcome(flight, entry)

    def _launch_thread(self, flight: _Flight) -> None:
        # A thread per renewal (rare: once per token lifetime) lets every caller, the
        # one that started it included, give up after `timeout` if the credential hangs.
        try:
            threading.Thread(
                target=self._run_flight, args=(flight,), name="azure-ad-token-auth-refresh", daemon=True
            ).start()
        except BaseException as exc:  # e.g. the interpreter shutting down: land it, or all wait
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
            f"no token from {self._method_name()} within {self._timeout:g} s "
            f"(scopes {list(self._scopes)}); the credential may be hanging"
        )

    # -- running a flight -------------------------------------------------------------

    def _run_flight(self, flight: _Flight) -> None:
        try:
            result = self._fetcher()(flight.claims)
            if inspect.isawaitable(result):
                close = getattr(result, "close", None)
                if callable(close):
                    close()
                raise TypeError(
                    f"{self._method_name()} returned an awaitable: it is an async credential; "
                    "use async_token_provider() or TokenCache.get_token_async()"
                )
            entry = self._make_entry(result)
        except BaseException as exc:  # noqa: BLE001 - handed to every waiter, re-raised there
            self._land(flight, None, exc)
        else:
            self._land(flight, entry, None)

    async def _run_flight_async(self, flight: _Flight) -> None:
        try:
            entry = self._make_entry(await self._fetcher()(flight.claims))
        except asyncio.CancelledError as exc:  # its loop is shutting down
            self._land(flight, None, exc)
            raise
        except BaseException as exc:  # noqa: BLE001
            self._land(flight, None, exc)
        else:
            self._land(flight, entry, None)

    def _make_entry(self, info: object) -> CachedToken:
        """Check what the credential returned and work out when to renew it."""
        source = self._method_name()
        if info is None:
            raise InvalidTokenError(f"{source} returned None instead of an access token")
        token = getattr(info, "token", None)
        if not isinstance(token, str) or not token:
            raise InvalidTokenError(
                f"{source} returned a {type(info).__name__} whose token is "
                f"{'empty' if token == '' else 'of type ' + type(token).__name__}, not a non-empty string"
            )
        expires_on = getattr(info, "expires_on", None)
        if not _is_number(expires_on):
            raise InvalidTokenError(
                f"{source} returned expires_on of type {type(expires_on).__name__}; "
                "expected seconds since the epoch (int)"
            )
        refresh_on = getattr(info, "refresh_on", None)
        if refresh_on is not None and not _is_number(refresh_on):
            refresh_on = None
        assert isinstance(expires_on, (int, float))
        now = time.time()
        lifetime = expires_on - now
        if lifetime <= 0:
            raise InvalidTokenError(
                f"{source} returned a token that expired {-lifetime:.0f} s ago (is this machine's clock right?)"
            )
        # Why half the lifetime: a margin larger than the token's life would renew on
        # every request; half keeps short-lived tokens to one renewal per half-life.
        refresh_at = expires_on - min(self._margin, lifetime / 2)
        if refresh_on is not None and now < refresh_on < refresh_at:
            refresh_at = float(refresh_on)
        if self._jitter:
            refresh_at = max(now + lifetime / 4, refresh_at - random.uniform(0, self._jitter))
        return CachedToken(token, float(expires_on), refresh_at)

    def _land(self, flight: _Flight, entry: CachedToken | None, error: BaseException | None) -> None:
        """Record a flight's outcome and wake everyone waiting for it."""
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
                if current is not None and current.token == entry.token:
                    # The credential answered from its own cache with the token we hold:
                    # azure-identity credentials do so until their own renewal window.
                    # Ask again later rather than on every request.
                    entry = entry.deferred(now + min(self._backoff, (entry.expires_on - now) / 2))
                else:
                    self._refreshes += 1
                if not stale and (
                    current is None or entry.expires_on >= current.expires_on or flight.claims is not None
                ):
                    self.current = entry
                    self._claims = None
            elif not stale and not abandoned:
                cancelled = isinstance(error, asyncio.CancelledError)  # its event loop closed: no failure
                self._failures += not cancelled
                if current is not None and now < current.expires_on:
                    # Keep serving the valid token; the fast path needs no other state to
                    # know the next attempt is `retry_backoff` away.
                    self.current = current.deferred(now + self._backoff)
                    warn = None if cancelled else current
                elif not cancelled:
                    self._error, self._error_until = error, now + min(self._backoff, _ERROR_HOLD)
                    self._error_traceback = flight.traceback
            if self._flight is flight:
                self._flight = None
            flight.entry = entry
            flight.error = error
            flight.traceback = error.__traceback__ if error is not None else None
            waiters, flight.waiters = flight.waiters, []
        if entry is not None:
            _log.debug(
                "acquired token %s for %s from %s: expires in %.0f s, renewal in %.0f s",
                entry.fingerprint,
                list(self._scopes),
                self._method_name(),
                entry.expires_on - now,
                entry.refresh_at - now,
            )
        elif warn is not None:
            _log.warning(
                "token renewal failed (%s from %s); still using the cached token %s, valid for %.0f s more; "
                "next attempt in %.0f s",
                type(error).__name__,
                self._method_name(),
                warn.fingerprint,
                warn.expires_on - now,
                self._backoff,
            )
        else:
            _log.debug("token request failed: %s from %s", type(error).__name__, self._method_name())
        # Wake the waiters last, so what they see (state, log) is complete.
        flight.done.set()
        for loop, future in waiters:
            # RuntimeError: that loop is closed, so nobody waits there any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_resolve, future)

    def _after_fork_in_child(self) -> None:
        # The child has only the forking thread: a lock held by another thread would
        # stay held forever, and a flight running in another thread will never land.
        self._lock = threading.Lock()
        self._flight = None


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _reset_after_fork() -> None:
    for cache in list(_CACHES):
        cache._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


# Caches made by adapters and providers, shared per (credential, scopes, options), so
# that a requests auth and an openai provider built apart still make one credential
# call per renewal. For a credential passed in, the cache lives while an adapter uses
# it (the cache holds its credential, so a table keyed weakly by the credential would
# keep both forever). The default credential's caches live as long as the process, so
# that even `auth=AzureADTokenAuth()` written per request reuses one token.
_SHARED_LOCK = threading.Lock()
_DEFAULT_CACHES: dict[tuple[Any, ...], TokenCache] = {}
_CREDENTIAL_CACHES: weakref.WeakValueDictionary[tuple[Any, ...], TokenCache] = weakref.WeakValueDictionary()


def resolve_cache(
    credential: Credential | TokenCache | None, scopes: str | Sequence[str], options: CacheOptions
) -> TokenCache:
    """The cache an adapter should use: the one passed in, or the shared one for its settings."""
    if isinstance(credential, TokenCache):
        if options:
            raise TypeError(
                f"options {sorted(options)} configure a new cache; pass them to the TokenCache you are sharing instead"
            )
        wanted = _normalize_scopes(scopes)
        if scopes is not DEFAULT_SCOPE and wanted != credential.scopes:
            raise ValueError(f"scopes {list(wanted)} differ from the shared TokenCache's {list(credential.scopes)}")
        return credential
    key: tuple[Any, ...] = (_normalize_scopes(scopes), tuple(sorted(options.items())))
    with _SHARED_LOCK:
        if credential is None:
            table: MutableMapping[tuple[Any, ...], TokenCache] = _DEFAULT_CACHES
        else:
            # id() is safe here: the cache holds its credential, so while the entry
            # exists the credential is alive and its id is not reused.
            table, key = _CREDENTIAL_CACHES, (id(credential), *key)
        cache = table.get(key)
        if cache is None:
            cache = table[key] = TokenCache(credential, scopes, **options)
    return cache


def forget_shared_caches() -> None:
    """Drop the shared caches, so the next adapter starts afresh (for tests)."""
    with _SHARED_LOCK:
        _DEFAULT_CACHES.clear()
        _CREDENTIAL_CACHES.clear()
