"""The trusted directory handle: the store directory, verified once along its whole path.

`open_trusted` walks from `/` to the store directory one component at a time, each
opened relative to its verified parent without following symbolic links (a link among
the ancestors is followed by hand, only where root or this user put it), and checks
every ancestor as OpenSSH's StrictModes does: owned by root or this user and not
writable by group or others, except a sticky world-writable directory (/tmp) right
above a directory this user (or root) owns. The store directory itself is this user's, mode
0700. Directories it creates are 0700 whatever the umask. Every later operation uses
the descriptor it returns (`dir_fd=`), so swapping the directory or an ancestor
afterwards changes nothing.

`open_file` opens an entry of that directory only if it is a regular file of this user's
alone, without ever blocking: a FIFO, device, socket or symbolic link is refused.
`new_file` creates one, mode 0600 whatever the umask (a umask of 277 would make it 0400,
which other processes of this user could not open for writing); `open_file` creates a
missing one under a temporary name and links it into place, so nobody ever opens it with
another mode or before its content is written.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path

__all__ = ["StoreFault", "check_file", "new_file", "open_file", "open_trusted"]

_DIRECTORY = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
_FILE = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | os.O_NOCTTY
_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


class StoreFault(Exception):
    """The store cannot be trusted or used; the message says why (never a token)."""


def open_trusted(path: Path) -> int:
    """A descriptor of the store directory `path`, created (0700) if missing; `StoreFault`
    if it or any ancestor could be changed by another user."""
    uid = os.geteuid()
    pending = list(Path(os.path.normpath(path)).parts[1:])
    where = Path("/")
    fd = os.open("/", _DIRECTORY)
    links = 0
    try:
        info = os.fstat(fd)
        sticky = _ancestor_is_sticky(info, where, uid)
        while pending:
            name = pending.pop(0)
            if name == "..":
                parent = os.open("..", _DIRECTORY, dir_fd=fd)
                os.close(fd)
                fd, where = parent, where.parent
                info = os.fstat(fd)
                sticky = _ancestor_is_sticky(info, where, uid)
                continue
            target = _link(fd, name, where, sticky, uid, last=not pending)
            if target is not None:
                # A link among the ancestors (/var/run -> /run), in a directory checked
                # so far: only root or this user can have put it there. Follow it by hand.
                links += 1
                if links > 40:
                    raise StoreFault(f"too many symbolic links on the way to {path}")
                parts = list(Path(target).parts)
                if os.path.isabs(target):
                    os.close(fd)
                    fd, where, parts = os.open("/", _DIRECTORY), Path("/"), parts[1:]
                    info = os.fstat(fd)
                    sticky = _ancestor_is_sticky(info, where, uid)
                pending[:0] = parts
                continue
            child = _open_child(fd, name, where / name)
            os.close(fd)
            fd, where = child, where / name
            info = os.fstat(fd)
            if sticky and info.st_uid not in (0, uid):  # in /tmp: others may not rename root's or ours
                raise StoreFault(
                    f"{where} is in the world-writable directory {where.parent} but belongs to "
                    f"user id {info.st_uid}, not this user ({uid})"
                )
            if pending:
                sticky = _ancestor_is_sticky(info, where, uid)
        if info.st_uid != uid:
            raise StoreFault(f"{where} belongs to user id {info.st_uid}, not this user ({uid})")
        if info.st_mode & 0o077:
            raise StoreFault(f"{where} is open to other users (mode {stat.S_IMODE(info.st_mode):04o}); chmod 700 it")
        return fd
    except OSError as exc:
        os.close(fd)
        raise StoreFault(f"cannot open {where}: {exc.strerror}") from None
    except BaseException:
        os.close(fd)
        raise


def _link(directory: int, name: str, where: Path, sticky: bool, uid: int, *, last: bool) -> str | None:
    """The target of `name` if it is a symbolic link to follow; None if it is not a link."""
    try:
        info = os.stat(name, dir_fd=directory, follow_symlinks=False)
    except FileNotFoundError:
        return None
    if not stat.S_ISLNK(info.st_mode):
        return None
    if last:
        raise StoreFault(f"{where / name} is not a directory (a symbolic link or a file)")
    if sticky and info.st_uid not in (0, uid):
        raise StoreFault(
            f"{where / name} is a symbolic link in the world-writable directory {where} "
            f"belonging to user id {info.st_uid}, not this user ({uid})"
        )
    return os.readlink(name, dir_fd=directory)


def _open_child(parent: int, name: str, where: Path) -> int:
    for _ in range(2):
        try:
            return os.open(name, _DIRECTORY, dir_fd=parent)
        except FileNotFoundError:
            try:
                os.mkdir(name, 0o700, dir_fd=parent)
                # Before opening it: the umask may have taken bits away (under 0777 this user
                # could not even open it) or left group ones. By name, in a parent checked so
                # far: only root or this user could have put anything else there since.
                os.chmod(name, 0o700, dir_fd=parent)
            except FileExistsError:
                pass  # another process made it first: open it and check it like any other
            except OSError as exc:
                raise StoreFault(f"cannot create {where}: {exc.strerror}") from None
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise StoreFault(f"{where} is not a directory (a symbolic link or a file)") from None
            raise StoreFault(f"cannot open {where}: {exc.strerror}") from None
    raise StoreFault(f"{where} keeps disappearing")


def _ancestor_is_sticky(info: os.stat_result, where: Path, uid: int) -> bool:
    """Check an ancestor; True if it is a sticky world-writable directory (the next
    component must then be this user's)."""
    if info.st_uid not in (0, uid):
        raise StoreFault(
            f"{where} belongs to user id {info.st_uid}: only root or this user ({uid}) may own "
            "the directories above the store"
        )
    if info.st_mode & 0o022:
        if info.st_mode & stat.S_ISVTX:
            return True
        raise StoreFault(
            f"{where} is writable by other users (mode {stat.S_IMODE(info.st_mode):04o}): they could replace the store"
        )
    return False


def check_file(info: os.stat_result, where: str) -> None:
    """`StoreFault` unless `info` is a regular file of this user's alone."""
    if not stat.S_ISREG(info.st_mode):
        raise StoreFault(f"{where} is {_kind(info.st_mode)}, not a regular file")
    if info.st_uid != os.geteuid() or info.st_mode & 0o077:
        raise StoreFault(
            f"{where} is not this user's alone (owner {info.st_uid}, mode {stat.S_IMODE(info.st_mode):04o})"
        )


def open_file(
    directory: int, name: str, flags: int, where: str, *, temp: str | None = None, content: bytes = b""
) -> int | None:
    """Open `name` in `directory` (a descriptor from `open_trusted`) if it is a regular
    file of this user's alone; None if it does not exist (and no `temp` is given). With
    `temp`, a missing one is made, mode 0600, holding `content` (empty by default), through
    that temporary name (see `_create`).

    Checked before opening (a device is never opened) and again through the descriptor
    (what was opened is what was checked). Never blocks.
    """
    for _ in range(3):  # a sweep may remove a file between its creation and its opening
        try:
            check_file(os.stat(name, dir_fd=directory, follow_symlinks=False), where)
        except FileNotFoundError:
            if temp is None:
                return None
            _create(directory, name, temp, where, content)
        try:
            fd = os.open(name, flags | _FILE, dir_fd=directory)
        except FileNotFoundError:
            if temp is None:
                return None
            continue
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENXIO):
                raise StoreFault(f"{where} is not a regular file") from None
            raise StoreFault(f"cannot open {where}: {exc.strerror}") from None
        try:
            check_file(os.fstat(fd), where)
        except BaseException:
            os.close(fd)
            raise
        return fd
    raise StoreFault(f"cannot open {where}: it keeps disappearing")


def new_file(directory: int, name: str) -> int:
    """Create `name` in `directory` (it must not exist: `FileExistsError`), mode 0600
    whatever the umask; a descriptor open for writing. `OSError` as `os.open` raises it."""
    fd = os.open(name, _NEW, 0o600, dir_fd=directory)
    try:
        os.fchmod(fd, 0o600)  # a umask of 277 or 377 took the owner's write bit away
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(name, dir_fd=directory)
        raise
    return fd


def _create(directory: int, name: str, temp: str, where: str, content: bytes) -> None:
    """Make `name` exist as a file of this user's, mode 0600, holding `content`, unless it exists.

    Made as `temp` and hard-linked into place (which, unlike a rename, never replaces a
    file another process made meanwhile): nobody sees it with the mode the umask gave it,
    or before `content` is in it."""
    try:
        with os.fdopen(new_file(directory, temp), "wb") as handle:
            handle.write(content)
        try:
            os.link(temp, name, src_dir_fd=directory, dst_dir_fd=directory)
        except FileExistsError:
            pass  # another process made it first
        finally:
            with contextlib.suppress(OSError):
                os.unlink(temp, dir_fd=directory)
    except OSError as exc:
        raise StoreFault(f"cannot create {where}: {exc.strerror}") from None


def _kind(mode: int) -> str:
    for test, kind in (
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISDIR, "a directory"),
    ):
        if test(mode):
            return kind
    return "not a regular file"
