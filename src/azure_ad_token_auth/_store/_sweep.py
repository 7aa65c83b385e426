"""The clean-up: keeps the store directory bounded, removing only what the store made.

After a renewal stores a token, `Sweeper.sweep` reads at most `SWEEP_ENTRIES` names of
the directory, going on from where the last sweep stopped (a pass over 10,000 keys
spreads over many renewals; none pays for the whole directory), and of the keys among
them tidies at most `SWEEP_KEYS`, each under its own lock taken only if free: every file
of a key whose token has expired or which has no record, the rejection markers of
tokens other than the one stored, and temp files a killed writer left (after
`STALE_TEMP`). Its cost is bounded by these counts, whatever the directory holds.

A file goes only when the store can prove it made it: named as the store names its
files (`_names`), a regular file of this user's with mode 0600, and either empty where
the store leaves files empty (a lock, a marker, a temp file never written) or holding a
record whose own key hashes to the digest in its name. A key whose record cannot be
proven is left alone, and anything else in the directory is never touched.

It reads the directory, so nobody waits for it and it never runs on an event loop: the
cache runs it (`SharedBinding.after_landing`) once the renewal's token has reached
everyone waiting for it, in the renewal's own thread, or for an async credential in the
loop's default executor.
"""

from __future__ import annotations

import os
import random
import stat
import threading
from collections.abc import Iterator
from typing import Any

from .._credential import fingerprint
from ._directory import StoreFault
from ._identity import key_digest
from ._lock import release
from ._names import StoreName, parse_name, record_name
from ._records import CorruptRecordFault, TokenStore, expired

__all__ = ["STALE_TEMP", "SWEEP_ENTRIES", "SWEEP_KEYS", "Sweeper"]

# Directory entries read per sweep: a renewal's clean-up costs this much at most.
SWEEP_ENTRIES = 64
# Keys tidied per sweep, each under its lock.
SWEEP_KEYS = 8
# A temp file this old was left by a writer that died: a write takes microseconds.
STALE_TEMP = 60.0

_DIRECTORY = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)
_FOREIGN = object()  # what `_proven` finds where the store's record should be, but cannot prove


class Sweeper:
    """The clean-up of one store; one sweep at a time per process (others skip theirs)."""

    def __init__(self, store: TokenStore) -> None:
        self.store = store
        self._running = threading.Lock()
        # Where the last sweep stopped: a directory stream of its own (not sharing the
        # store handle's offset), and the handle it reads (a reopened store starts anew).
        self._cursor: Iterator[os.DirEntry[str]] | None = None
        self._cursor_of = -1

    def after_fork(self) -> None:
        """In a forked child: no sweep runs, and the stream's offset is the parent's."""
        self._running = threading.Lock()
        self._cursor = None

    def sweep(self, now: float, entries: int = SWEEP_ENTRIES, keys: int = SWEEP_KEYS) -> int:
        """Tidy what `entries` names of the directory show (see the module's docstring);
        how many files went. `StoreFault`, `OSError` when the directory cannot be read."""
        if not self._running.acquire(blocking=False):
            return 0  # another thread of this process is sweeping this store
        try:
            directory = self.store.handle()
            removed = 0
            keyed: dict[str, list[StoreName]] = {}
            for entry in self._next_names(directory, entries):
                name = parse_name(entry)
                if name is None:
                    continue  # not the store's: never touched, whatever it holds
                if name.kind == "tmp":
                    removed += self._remove_stale_temp(directory, name, now)
                else:
                    keyed.setdefault(name.digest, []).append(name)
            for digest in random.sample(sorted(keyed), min(keys, len(keyed))):
                removed += self._tidy_key(directory, digest, keyed[digest], now)
            return removed
        finally:
            self._running.release()

    def _next_names(self, directory: int, count: int) -> list[str]:
        """Up to `count` names, going on from where the last sweep stopped; a directory
        smaller than `count` is read once round."""
        names: dict[str, None] = {}
        restarted = False
        while len(names) < count:
            if self._cursor is None or self._cursor_of != directory:
                if restarted:
                    break
                own = os.open(".", _DIRECTORY, dir_fd=directory)
                try:
                    self._cursor = os.scandir(own)  # it reads a duplicate of `own`
                finally:
                    os.close(own)
                self._cursor_of, restarted = directory, True
            entry = next(self._cursor, None)
            if entry is None:
                self._cursor = None  # the end: the next read starts a new pass
                continue
            names[entry.name] = None
        return list(names)

    def _tidy_key(self, directory: int, digest: str, names: list[StoreName], now: float) -> int:
        try:
            fd = self.store.lock_if_free(digest)
        except StoreFault:
            return 0
        if fd is None:
            return 0  # in use right now
        try:
            record = self._proven(directory, record_name(digest), digest)
            if record is _FOREIGN:
                return 0  # a record the store cannot prove it made: its key is left alone
            if isinstance(record, dict) and not expired(record.get("expires_on"), now):
                # Live: only the markers of tokens other than the one stored go.
                token = record.get("token")
                keep = fingerprint(token) if isinstance(token, str) else None
                return sum(_remove(directory, n, None) for n in names if n.kind == "rejected" and n.fingerprint != keep)
            # The lock file last, still held: a process that opened it meanwhile finds
            # it gone once it has the lock, and takes the lock on a new one.
            return sum(_remove(directory, n, None) for n in sorted(names, key=lambda n: n.kind == "lock"))
        finally:
            release(fd)

    def _remove_stale_temp(self, directory: int, name: StoreName, now: float) -> int:
        try:
            info = os.stat(name.name, dir_fd=directory, follow_symlinks=False)
        except OSError:
            return 0
        if abs(now - info.st_mtime) <= STALE_TEMP:
            return 0  # maybe being written right now
        if info.st_size and not isinstance(self._proven(directory, name.name, name.digest), dict):
            return 0
        return _remove(directory, name, info)

    def _proven(self, directory: int, name: str, digest: str) -> dict[str, Any] | object | None:
        """The record in `name` if the store made it (its format, and a key that hashes to
        `digest`); None if there is none; `_FOREIGN` if something else is there."""
        try:
            if not _made_here(os.stat(name, dir_fd=directory, follow_symlinks=False)):
                return _FOREIGN
            value = self.store.load(name)
        except FileNotFoundError:
            return None
        except (OSError, StoreFault, CorruptRecordFault):
            return _FOREIGN
        if value is None:
            return None
        return value if key_digest(value.get("key")) == digest else _FOREIGN


def _remove(directory: int, name: StoreName, info: os.stat_result | None) -> int:
    """Unlink `name` if it is a file of this user's with the store's mode, empty unless it
    is a record or temp file (whose content the caller proved). 1 if it went."""
    try:
        if info is None:
            info = os.stat(name.name, dir_fd=directory, follow_symlinks=False)
        if not _made_here(info) or (info.st_size and name.kind in ("lock", "rejected")):
            return 0
        os.unlink(name.name, dir_fd=directory)
    except OSError:
        return 0
    return 1


def _made_here(info: os.stat_result) -> bool:
    """A regular file of this user's with the mode the store gives its files."""
    return stat.S_ISREG(info.st_mode) and info.st_uid == os.geteuid() and stat.S_IMODE(info.st_mode) == 0o600
