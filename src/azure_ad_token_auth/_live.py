"""Every live `TokenCache`, for what acts on all of them at once: a forked child, the testing kit's reset."""

from __future__ import annotations

import weakref
from typing import Protocol

from . import _keep_fresh, _reset

__all__ = ["add", "after_fork_in_child"]


class _Cache(Protocol):
    def _after_fork_in_child(self) -> None: ...

    def _on_reset(self) -> None: ...


_CACHES: weakref.WeakSet[_Cache] = weakref.WeakSet()


def add(cache: _Cache) -> None:
    _CACHES.add(cache)


def after_fork_in_child() -> None:
    """The fork handler `_cache` registers last, after those of the modules it imports."""
    for cache in list(_CACHES):
        cache._after_fork_in_child()
    _keep_fresh.restart_in_child()  # only now: its timers use the caches just reset


def _forget_all() -> None:
    for cache in list(_CACHES):
        cache._on_reset()


_reset.on_reset(_forget_all)
