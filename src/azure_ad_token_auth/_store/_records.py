"""Records and markers on disk: one directory of tokens, locks and rejection markers.

Per key (its digest `D`, names in `_names`): `aadta-D.json`, the record (mode 0600,
replaced atomically through a temp file `.aadta-D.<random>.tmp`); `aadta-D.lock`, the file
the OS lock is taken on; and `aadta-D.<fingerprint>.rejected`, a marker per token a service
refused. A record carries its key's parts, and the reader compares them with its own: a
record renamed or copied from another key is refused as corrupt. Its token is checked by
the credential binding's own validator (`_credential.validate`). Nothing here lists the
directory: keeping it bounded is `_sweep`'s job.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import threading
from collections.abc import Generator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from .. import _timing
from .._credential import TokenInfo, fingerprint, validate
from .._errors import InvalidTokenError
from ._directory import StoreFault, check_file, new_file, open_file, open_trusted
from ._identity import StoreKey
from ._lock import LockFault, held, release, try_lock
from ._names import SALT, lock_name, marker_name, record_name, salt_temp_name, temp_name

__all__ = ["FORMAT", "MAX_RECORD", "SALT_BYTES", "CorruptRecordFault", "LockBusyFault", "TokenStore", "expired"]

FORMAT = 3
"""The record format this version writes and reads (names changed with 3: see `_names`)."""
# A record is a token (a few kB) and its key: anything much larger is not one.
MAX_RECORD = 64 * 1024
SALT_BYTES = 32
"""The size of the store's salt (`TokenStore.salt`)."""
# Lock polling: quick at first (the holder usually only reads), then every 50 ms.
_POLL_FIRST, _POLL_MAX = 0.002, 0.05


class CorruptRecordFault(ValueError):
    """A record that is not a usable token record for this key; the message says why."""


class LockBusyFault(Exception):
    """Another process held the key's lock for longer than this one would wait."""


class TokenStore:
    """One store directory, opened and verified once (`handle`), used through that handle."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._fd: int | None = None
        self._salt: bytes | None = None
        self._retired: list[int] = []
        self._opening = threading.Lock()

    def __repr__(self) -> str:
        return f"<TokenStore {self.directory}>"

    def handle(self) -> int:
        """The directory's descriptor, opened and checked on first use (`StoreFault`)."""
        with self._opening:
            if self._fd is None:
                self._fd = open_trusted(self.directory)
            return self._fd

    def after_fork(self) -> None:
        """In a forked child: a new opening lock (another thread may have held this one)."""
        self._opening = threading.Lock()

    def reopen(self) -> None:
        """Check the directory again on next use (after a fault's back-off).

        The old descriptor is not closed at once: another thread may be using it, and its
        number, reused by an unrelated open, would send that thread's operations elsewhere.
        It is closed a few reopenings (so back-offs, minutes) later."""
        with self._opening:
            self._salt = None
            if self._fd is not None:
                self._retired.append(self._fd)
                self._fd = None
            while len(self._retired) > 4:
                with contextlib.suppress(OSError):
                    os.close(self._retired.pop(0))

    def salt(self) -> bytes:
        """This store's secret salt: `SALT_BYTES` random bytes in its file `aadta-salt` (0600,
        made on first use, read once per opening). The key's hashes of what it must not
        write (a secret that chooses the identity, `_identity`) are keyed by it: only who can
        read this directory can compute or test them. `StoreFault` for a file the store did
        not make (another size)."""
        if self._salt is None:
            where = self._where(SALT)
            made = secrets.token_bytes(SALT_BYTES)  # used only if there is none yet
            fd = open_file(self.handle(), SALT, os.O_RDONLY, where, temp=salt_temp_name(), content=made)
            assert fd is not None
            with os.fdopen(fd, "rb") as handle:
                try:
                    salt = handle.read(SALT_BYTES + 1)
                except OSError as exc:
                    raise StoreFault(f"cannot read {where}: {exc.strerror}") from None
            if len(salt) != SALT_BYTES:
                raise StoreFault(
                    f"{where} holds {len(salt)} bytes, not a salt the store made ({SALT_BYTES}); remove it"
                )
            self._salt = salt
        return self._salt

    def _where(self, name: str) -> str:
        return str(self.directory / name)

    # -- the lock --------------------------------------------------------------------

    def lock_steps(self, key: StoreKey, wait: float) -> Generator[float, None, int]:
        """Take the key's lock: yields how long to sleep between tries, returns the
        locked descriptor (`release` it). `LockBusyFault` after `wait` seconds."""
        deadline = _timing.monotonic() + wait
        delay = _POLL_FIRST
        while True:
            fd = self.lock_if_free(key.digest)
            if fd is not None:
                return fd
            if _timing.monotonic() >= deadline:
                name = lock_name(key.digest)
                raise LockBusyFault(f"another process has held the lock {name} for more than {wait:g} s")
            yield delay
            delay = min(delay * 2, _POLL_MAX)

    def lock_if_free(self, digest: str) -> int | None:
        """The locked descriptor of the key `digest`'s lock file (`release` it), or None
        if another holds it; never waits. Creates the lock file if missing."""
        directory = self.handle()
        name = lock_name(digest)
        # Read-only: flock needs no more.
        fd = open_file(directory, name, os.O_RDONLY, self._where(name), temp=temp_name(digest))
        assert fd is not None
        try:
            locked = try_lock(fd)
        except LockFault as exc:
            os.close(fd)
            raise StoreFault(str(exc)) from None
        if not locked:
            os.close(fd)
            return None
        # A sweep may have removed the file between our open and our lock: a lock on a
        # file no longer in the directory excludes nobody. Try again on the current one.
        try:
            current = os.stat(name, dir_fd=directory, follow_symlinks=False)
            mine = os.fstat(fd)
            same = (current.st_ino, current.st_dev) == (mine.st_ino, mine.st_dev)
        except OSError:
            same = False
        if not same:
            release(fd)
            return self.lock_if_free(digest)
        held(fd)
        return fd

    # -- records ---------------------------------------------------------------------

    def read(self, key: StoreKey, now: float) -> TokenInfo | None:
        """The key's stored token, or None when there is none or it has expired.
        `StoreFault` when the file cannot be trusted, `CorruptRecordFault` when it is corrupt
        or made for another key."""
        value = self.load(record_name(key.digest))
        if value is None:
            return None
        if value.get("key") != key.parts:
            raise CorruptRecordFault("the record was made for another key (renamed or copied from another identity)")
        expires_on, refresh_on = value.get("expires_on"), value.get("refresh_on")
        if not (refresh_on is None or _timing.is_number(refresh_on)):
            raise CorruptRecordFault("the record's refresh_on is not a number")
        if expired(expires_on, now):
            return None  # expired: renewed, never served
        answer = SimpleNamespace(token=value.get("token"), expires_on=expires_on, refresh_on=refresh_on)
        try:
            return validate(answer, now, "the store record")
        except InvalidTokenError as exc:
            raise CorruptRecordFault(str(exc)) from None

    def load(self, name: str) -> dict[str, Any] | None:
        """The record in the file `name` (JSON of this format, at most `MAX_RECORD` bytes),
        or None if there is none. `StoreFault`, `CorruptRecordFault`."""
        fd = open_file(self.handle(), name, os.O_RDONLY, self._where(name))
        if fd is None:
            return None
        with os.fdopen(fd, "rb") as handle:
            try:
                data = handle.read(MAX_RECORD + 1)
            except OSError as exc:
                raise StoreFault(f"cannot read {self._where(name)}: {exc.strerror}") from None
        if len(data) > MAX_RECORD:
            raise CorruptRecordFault(f"the record is larger than {MAX_RECORD} bytes")
        try:
            value = json.loads(data)
        except (ValueError, RecursionError):  # RecursionError: nested too deep
            raise CorruptRecordFault("not a token record") from None
        if not isinstance(value, dict) or value.get("format") != FORMAT:
            raise CorruptRecordFault("not a token record")
        return value

    def write(self, key: StoreKey, info: TokenInfo) -> None:
        """Replace the key's record atomically (a reader sees the old one or the new one)."""
        directory = self.handle()
        payload = {
            "format": FORMAT,
            "key": key.parts,
            "token": info.token,
            "expires_on": info.expires_on,
            "refresh_on": info.refresh_on,
        }
        data = json.dumps(payload).encode()
        temp, name = temp_name(key.digest), record_name(key.digest)
        try:
            fd = new_file(directory, temp)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(temp, name, src_dir_fd=directory, dst_dir_fd=directory)
        except FileNotFoundError:
            return  # a sweep took the temp file for a dead writer's (a clock step): not stored this time
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(temp, dir_fd=directory)
            raise StoreFault(f"cannot write {self._where(name)}: {exc.strerror}") from None

    # -- rejections ------------------------------------------------------------------

    def mark_rejected(self, key: StoreKey, token: str) -> None:
        """Record that a service refused `token`; needs no lock (creating a file is atomic)."""
        name = marker_name(key.digest, fingerprint(token))
        fd = open_file(self.handle(), name, os.O_RDONLY, self._where(name), temp=temp_name(key.digest))
        assert fd is not None
        os.close(fd)

    def is_rejected(self, key: StoreKey, token: str) -> bool:
        name = marker_name(key.digest, fingerprint(token))
        try:
            info = os.stat(name, dir_fd=self.handle(), follow_symlinks=False)
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise StoreFault(f"cannot read {self._where(name)}: {exc.strerror}") from None
        check_file(info, self._where(name))
        return True


def expired(expires_on: object, now: float) -> bool:
    """Whether a record's `expires_on` is a number at or before `now`."""
    return isinstance(expires_on, (int, float)) and _timing.is_number(expires_on) and expires_on <= now
