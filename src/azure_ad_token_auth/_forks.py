"""Fork safety: locks a forked child never inherits held, and hooks run in the child.

A fork copies only the forking thread: a lock another thread held at that moment
stays held in the child for ever. Every lock of the package is a `fork_safe_lock()`,
replaced by a fresh one in the child before any `reset_in_child` hook runs.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable
from types import TracebackType

__all__ = ["ForkSafeLock", "fork_safe_lock", "reset_in_child"]


class ForkSafeLock:
    """A `threading.Lock` (use it in `with`) that is new and free in a forked child."""

    __slots__ = ("__weakref__", "lock")

    def __init__(self) -> None:
        self.lock = threading.Lock()

    def __enter__(self) -> bool:
        return self.lock.acquire()

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.lock.release()


_LOCKS: weakref.WeakSet[ForkSafeLock] = weakref.WeakSet()


def fork_safe_lock() -> ForkSafeLock:
    """A lock replaced by a fresh one in every forked child."""
    lock = ForkSafeLock()
    _LOCKS.add(lock)
    return lock


def reset_in_child(reset: Callable[[], None]) -> None:
    """Run `reset` in every forked child, before it returns from `fork()` (after the locks are new)."""
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=reset)


def _renew_locks() -> None:
    for lock in list(_LOCKS):
        lock.lock = threading.Lock()


reset_in_child(_renew_locks)  # registered first, so it runs before every other hook
