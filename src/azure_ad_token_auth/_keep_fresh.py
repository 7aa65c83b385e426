"""keep-fresh: renew a cache's token ahead of expiry even when no request comes.

One daemon thread per cache sleeps until the token falls due and then asks the cache
for it, which starts the renewal (in the background, as a request would). So a request
after an idle hour finds a fresh token instead of waiting for the credential. Built on
the cache's public API only (`current`, `renewing`, `get_token()`); forked children get
a timer of their own; the timers stop at interpreter exit.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref
from typing import TYPE_CHECKING

from . import _reset
from ._errors import ConfigurationError
from ._forks import fork_safe_lock
from ._timing import AFTER_FAILURE, LONGEST_SLEEP

if TYPE_CHECKING:
    from ._source import TokenSource

__all__ = ["check_sync", "keep_fresh", "restart_in_child"]

_log = logging.getLogger("azure_ad_token_auth")

# Between two looks at a token still being renewed, or after a failure the cache holds.
_RECHECK = 0.5

_AWAKE = object()  # a timer that is not waiting after a reset (`_Keeper.idle_past`)

_KEEPERS: weakref.WeakKeyDictionary[TokenSource, _Keeper] = weakref.WeakKeyDictionary()
_KEEPERS_LOCK = fork_safe_lock()


def check_sync(is_async: bool) -> None:
    """Refuse keep-fresh for an async credential (`ConfigurationError`): also for those
    that check before they make a cache."""
    if is_async:
        raise ConfigurationError(
            "keep_fresh needs a sync credential (its timer is a thread); with an async one, "
            "requests renew the token in the background"
        )


def keep_fresh(cache: TokenSource) -> None:
    """Keep `cache`'s token fresh from now on (once per cache; idempotent)."""
    check_sync(cache.is_async)
    with _KEEPERS_LOCK:
        if cache in _KEEPERS:
            return
        keeper = _KEEPERS[cache] = _Keeper(cache)
    keeper.start()


class _Keeper:
    def __init__(self, cache: TokenSource) -> None:
        self._cache = weakref.ref(cache)
        self._stop = threading.Event()
        self.idle_past: object = _AWAKE
        """After a reset (`_quiet_after_reset`), the token the cache held then: until the cache
        holds another (one someone asked for), this timer fetches nothing."""
        # A cache nobody uses any more takes its timer with it. At exit `_stop_all` stops
        # every timer: one rule, so this finalizer stays out of the exit.
        weakref.finalize(cache, self.stop).atexit = False

    def start(self) -> None:
        threading.Thread(target=self._run, name="azure-ad-token-auth-keep-fresh", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        stop = self._stop
        while not stop.is_set():
            cache = self._cache()
            if cache is None:
                return
            entry = cache.current
            if self.idle_past is not _AWAKE and (entry is None or entry is self.idle_past):
                delay = _RECHECK
            else:
                self.idle_past = _AWAKE
                delay = _step(cache)
            del entry
            del cache  # not kept alive by a sleeping timer
            if stop.wait(min(delay, LONGEST_SLEEP)):
                return


def _step(cache: TokenSource) -> float:
    """Ask for the token if it is due (or missing); return how long to sleep."""
    entry = cache.current
    now = time.time()
    if entry is not None and now < entry.refresh_at:
        return entry.refresh_at - now
    if cache.renewing:
        # A call is under way, or hung and abandoned by a caller: asking now would start
        # another thread beside it, one more per `timeout` for as long as it hangs.
        return _RECHECK
    try:
        cache.get_token()  # at/after refresh_at: starts the renewal
    except Exception as exc:  # noqa: BLE001 - the next request sees the cache's error
        _log.debug("keep-fresh: token renewal failed: %s", type(exc).__name__)
        return AFTER_FAILURE
    entry = cache.current
    if entry is None:
        return AFTER_FAILURE
    return max(_RECHECK, entry.refresh_at - time.time())


def restart_in_child() -> None:
    """Start a forked child's own timers (the parent's threads do not exist there).

    Called by the cache's fork handler once the caches' flights are reset (the locks are new): a
    timer started earlier could find a due token and block for good on a lock that a
    parent thread held at the fork.
    """
    for keeper in list(_KEEPERS.values()):
        keeper._stop = threading.Event()
        keeper.start()


def _quiet_after_reset() -> None:
    """The testing kit's reset: each timer starts over, idle until its cache holds a token
    someone asked for (a reset cache is empty, and the environment may not be a test's)."""
    for cache, keeper in list(_KEEPERS.items()):
        keeper.stop()
        keeper._stop = threading.Event()
        keeper.idle_past = cache.current  # renewers are quieted before the caches are reset
        keeper.start()


_reset.on_reset(_quiet_after_reset, renewer=True)


def _stop_all() -> None:
    for keeper in list(_KEEPERS.values()):
        keeper.stop()


atexit.register(_stop_all)
