"""The OS lock: one `flock` per key, dropped by the kernel when its holder dies.

POSIX only. Windows has no tested locking path here, so `AVAILABLE` is False there and
the store is not used (see `share`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys

from .._forks import fork_safe_lock, reset_in_child

__all__ = ["AVAILABLE", "LockFault", "held", "release", "try_lock"]

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

AVAILABLE = fcntl is not None and sys.platform != "win32"
"""Whether this platform has the lock the store relies on."""


class LockFault(Exception):
    """The lock cannot be taken for a reason other than another holder."""


def try_lock(fd: int) -> bool:
    """Take the exclusive lock on the open file `fd` if it is free; never waits.

    flock, not lockf: flock locks belong to the open file, so two caches in one process
    exclude each other too, and the kernel drops them when the holder dies.
    """
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            return False
        raise LockFault(f"cannot lock: {exc.strerror}") from None
    return True


def held(fd: int) -> None:
    """Note that `fd` holds a lock, so a child forked meanwhile closes its copy."""
    with _HELD_LOCK:
        _HELD.add(fd)


def release(fd: int) -> None:
    """Release a lock taken with `try_lock` and close its file."""
    with _HELD_LOCK:
        _HELD.discard(fd)
    # Unlock before closing: a child forked while this thread was still waiting for the
    # lock holds a copy of the same open file, and closing ours alone would leave the
    # lock held for as long as that child lives.
    with contextlib.suppress(OSError):
        fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


# Lock files held now. A child forked meanwhile shares their open file (and so the
# lock) but not the thread that would close it: it closes its copies at once.
_HELD: set[int] = set()
_HELD_LOCK = fork_safe_lock()


def _close_held_in_child() -> None:
    for fd in _HELD:
        with contextlib.suppress(OSError):
            os.close(fd)
    _HELD.clear()


reset_in_child(_close_held_in_child)
