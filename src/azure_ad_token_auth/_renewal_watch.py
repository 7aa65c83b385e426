"""Renewal for clients that hold a token past the request that fetched it (Redis connections).

An HTTP adapter asks its cache on every request, and each request renews a token that
falls due. A Redis connection authenticates once and then must be told of the next token
before the current one expires, whether or not anyone sends a command. A `RenewalWatch`
(one per provider) is run by one daemon thread per cache, shared by every provider on that
cache (a provider made per client is common), that sleeps until the held token falls due, renews
it through the cache (the same single flight every adapter uses: one credential call,
however many watchers and requests ask), and hands each new token to `on_token`. When
the token has expired and no new one can be had, it calls `on_expired(error)` once, and
keeps trying.

An async credential is asked on an event loop: the one `use_loop` names (the loop of an
async client that asked for credentials), never the watcher's thread. Built on the cache's
public API (`current`, `renewing`, `get_token`, `get_token_async`); the thread holds the
watches, and each watch its provider's callbacks, weakly: a provider nobody uses any more
drops out, and the thread ends with the last watch of its cache.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._forks import fork_safe_lock, reset_in_child
from ._timing import AFTER_FAILURE, LONGEST_SLEEP

if TYPE_CHECKING:
    from ._cache import TokenCache
    from ._state import CachedToken

__all__ = ["RenewalWatch"]

_log = logging.getLogger("azure_ad_token_auth")

# Between two looks at a renewal under way (a thread of the cache, or a task on a loop).
_LANDING_POLL = 0.05
# With no running loop to await an async credential on: one may ask any moment, and the token
# it renews must reach the clients before the one they hold expires.
_NO_RUNNING_LOOP = 0.25

_WATCHES: weakref.WeakSet[RenewalWatch] = weakref.WeakSet()


class _Group:
    """The watches of one cache, and whether the thread that runs them is alive."""

    __slots__ = ("running", "wake", "watches")

    def __init__(self) -> None:
        self.watches: weakref.WeakSet[RenewalWatch] = weakref.WeakSet()
        self.wake = threading.Event()  # a watch started or stopped: look again now
        self.running = False


# Keyed weakly by the cache: the group (held by its thread) holds neither the cache nor its watches.
_GROUPS: weakref.WeakKeyDictionary[TokenCache, _Group] = weakref.WeakKeyDictionary()
_GROUPS_LOCK = fork_safe_lock()


class RenewalWatch:
    """Renews `cache`'s token on time and reports each new one (see the module)."""

    def __init__(
        self,
        cache: TokenCache,
        on_token: Callable[[CachedToken], None],
        on_expired: Callable[[Exception], None],
        wanted: Callable[[], bool],
    ) -> None:
        self.cache = cache
        # Bound methods of the provider: held weakly, so the provider is not kept alive by its thread.
        self._on_token = weakref.WeakMethod(on_token)
        self._on_expired = weakref.WeakMethod(on_expired)
        self._wanted = weakref.WeakMethod(wanted)
        self._lock = fork_safe_lock()
        self._stop = threading.Event()
        self._started = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._warned = False  # about a loop that stopped running: once per watch
        self.delivered: str | None = None
        """The last token handed out or reported: a newer `current` is reported."""
        _WATCHES.add(self)

    @property
    def running(self) -> bool:
        return self._started and not self._stop.is_set()

    def start(self, handed_out: str) -> None:
        """Watch from now on (idempotent; not after `stop`); `handed_out` is the token clients have."""
        with self._lock:
            if self._started or self._stop.is_set():
                return
            self._started = True
            self.delivered = handed_out
        with _GROUPS_LOCK:
            group = _GROUPS.get(self.cache)
            if group is None:
                group = _GROUPS[self.cache] = _Group()
            if self not in group.watches:
                group.watches.add(self)
                weakref.finalize(self, group.wake.set).atexit = False  # collected: the thread looks again
            group.wake.set()
            if group.running:
                return  # the cache's thread runs this watch from its next look
            group.running = True
        threading.Thread(target=_run, args=(group,), name="azure-ad-token-auth-renewal", daemon=True).start()

    def _still_wanted(self) -> bool:
        """Whether to go on; if not, the thread ends and a later `start` begins another."""
        wanted = self._wanted()
        with self._lock:
            if wanted is not None and wanted():
                return True
            self._started = False
            return False

    def use_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Run an async credential on `loop` (a running loop that asked for credentials), kept
        while it runs: a loop that stopped without closing (`run_until_complete` returned) runs
        nothing scheduled on it, so the next loop that asks replaces it."""
        with self._lock:
            if self._loop is None or self._loop.is_closed() or not self._loop.is_running():
                self._loop = loop

    def stop(self) -> None:
        self._stop.set()
        with _GROUPS_LOCK:
            group = _GROUPS.get(self.cache)
        if group is not None:
            group.wake.set()

    def forget(self) -> None:
        """Back to as made (the testing kit's reset): the thread ends, nothing counts as
        delivered, and the next `start` (the next token handed out) begins another."""
        with self._lock:
            self._stop.set()
            self._stop = threading.Event()
            self._started = False
            self._loop = None
            self.delivered = None
        with _GROUPS_LOCK:
            group = _GROUPS.get(self.cache)
        if group is not None:
            group.wake.set()  # its thread looks again, and drops this watch until the next start

    # -- one step of the thread --------------------------------------------------------

    def step(self) -> float | None:
        """Report a new token, renew a due one; return how long to sleep (None: end the thread)."""
        if not self._still_wanted():
            return None
        cache = self.cache
        entry, now = cache.current, time.time()
        if entry is not None and now < entry.expires_on and entry.token != self.delivered:
            self.delivered = entry.token
            _call(self._on_token, entry)
        if entry is not None and now < entry.refresh_at:
            return entry.refresh_at - now
        if cache.renewing:
            return _LANDING_POLL  # a renewal is under way in a thread of the cache
        try:
            retry_in = self._renew()
        except Exception as error:  # noqa: BLE001 - reported below; the cache logged it
            if (entry is None or time.time() >= entry.expires_on) and self.delivered is not None:
                self.delivered = None  # report it once, and the next token whatever it is
                _call(self._on_expired, error)
            return AFTER_FAILURE
        if retry_in is not None:
            return retry_in
        return self._landed(entry)

    def _renew(self) -> float | None:
        """Ask the cache for the due token, which starts its renewal: None once asked, else how
        long to wait before trying again."""
        if not self.cache.is_async:
            self.cache.get_token()
            return None
        loop = self._loop
        if loop is None or loop.is_closed():
            return AFTER_FAILURE  # new connections on an async client's loop renew it as they ask
        if not loop.is_running():
            # Scheduled there, the renewal would wait until the loop runs again, perhaps never.
            if not self._warned:  # once: this is polled until a running loop asks
                _log.warning(
                    "token renewal: the event loop whose clients asked for credentials last is not running, so the "
                    "async credential cannot be awaited there; renewing when a client asks from a running loop. "
                    "Run the async clients on one event loop (asyncio.run), not several run_until_complete calls"
                )
            self._warned = True
            return _NO_RUNNING_LOOP
        future = asyncio.run_coroutine_threadsafe(self.cache.get_token_async(), loop)
        try:
            future.result(LONGEST_SLEEP)
        except concurrent.futures.TimeoutError:  # the loop is blocked or gone: try later
            future.cancel()
            return AFTER_FAILURE
        return None

    def _landed(self, before: CachedToken | None) -> float:
        """Wait (a little at a time) for the renewal just started to land."""
        if self.cache.current is not before:
            return 0.0  # landed already (a renewal that waited, or a token from another caller)
        return _LANDING_POLL


def _call(method: weakref.WeakMethod[Callable[[Any], None]], argument: Any) -> None:
    bound = method()
    if bound is not None:
        bound(argument)


def _run(group: _Group) -> None:
    """The thread of one cache: steps each running watch, then sleeps until the soonest is due."""
    while True:
        group.wake.clear()
        with _GROUPS_LOCK:
            watches = [watch for watch in group.watches if watch.running]
            if not watches:
                group.running = False  # a later start begins another thread
                return
        delay = LONGEST_SLEEP
        for watch in watches:
            try:
                step = watch.step()
            except Exception as error:  # noqa: BLE001 - a subscriber's own bug must not end renewals
                _log.warning("token renewal watch: %s; carrying on", type(error).__name__)
                step = AFTER_FAILURE
            delay = min(delay, 0.0 if step is None else step)  # None: no longer wanted, look again at once
        del watches, watch  # a sleeping thread does not keep providers alive
        group.wake.wait(delay)


def _restart_in_child() -> None:
    # The parent's thread does not exist in a forked child: the next credentials asked start one.
    for watch in list(_WATCHES):
        watch._stop = threading.Event()
        watch._started = False
        watch._loop = None
    _GROUPS.clear()


reset_in_child(_restart_in_child)
