"""A guard that keeps a test process on the machine: nothing but loopback is resolved or connected.

While a `NetworkGuard` is installed, a connection (TCP connect, UDP send) to an
address outside 127.0.0.0/8 and ::1, or the lookup of any name but ``localhost``, is
refused with `NonLoopbackConnectionError` *before* the system call is made (from a
`sys.addaudithook` hook), and recorded in `violations`. Clients often swallow connection errors
(`DefaultAzureCredential` moves on to its next credential), so a test runner should
fail the test when `violations` is not empty, not rely on the exception; see
README's "Testing your own code". Unix sockets and socket pairs are left alone.

Not covered: code that resolves names or connects without Python's `socket` module
(c-ares in aiodns, libcurl) and subprocesses.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import socket
import sys
import threading
from collections.abc import Iterator
from types import TracebackType
from typing import Any

from .._forks import reset_in_child

__all__ = ["NetworkGuard", "NonLoopbackConnectionError", "is_loopback"]

_LOCALHOST = "localhost"


class NonLoopbackConnectionError(OSError):
    """A connection or name lookup that would leave the machine, refused by `NetworkGuard`."""

    def __init__(self, what: str) -> None:
        super().__init__(errno.ENETUNREACH, f"NetworkGuard refused {what}: tests stay on loopback")
        self.what = what


def is_loopback(host: object) -> bool:
    """Whether `host` is ``localhost`` or a loopback IP literal (127.0.0.0/8, ::1, v4-mapped)."""
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if not isinstance(host, str):
        return False
    host = host.strip("[]").split("%", 1)[0]
    if host.lower() == _LOCALHOST:
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return bool(address.is_loopback or (mapped is not None and mapped.is_loopback))


class NetworkGuard:
    """Refuse and record every non-loopback connection and name lookup while installed.

    Use as a context manager (or `install()` / `uninstall()`); one guard at a time.
    `capture()` collects the refusals made inside a block apart from `violations`, for
    a test that expects one.
    """

    _active: NetworkGuard | None = None

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.violations: list[str] = []
        """What was refused, oldest first (``"connect to 169.254.169.254:80"``)."""
        self._sinks: list[list[str]] = []

    # -- life cycle --------------------------------------------------------------

    def install(self) -> NetworkGuard:
        """Start refusing; raises if another guard is active.

        The guard is a `sys.addaudithook` hook: CPython raises the audit event at the
        start of the socket call, before the system call, on every path (`socket`,
        `asyncio`, `_socket`, extension modules calling them). Audit hooks cannot be
        removed: `uninstall()` makes this one inert, and a later guard reuses it.
        """
        global _hook_installed
        with _state_lock:
            if NetworkGuard._active is not None:
                raise RuntimeError("a NetworkGuard is already installed")
            NetworkGuard._active = self
            if not _hook_installed:
                sys.addaudithook(_audit)
                _hook_installed = True
        return self

    def uninstall(self) -> None:
        """Stop refusing (no-op if not installed)."""
        with _state_lock:
            if NetworkGuard._active is self:
                NetworkGuard._active = None

    def __enter__(self) -> NetworkGuard:
        return self.install()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.uninstall()

    # -- records -----------------------------------------------------------------

    def take_violations(self) -> list[str]:
        """The violations so far, clearing them."""
        with self._lock:
            taken, self.violations = self.violations, []
        return taken

    @contextlib.contextmanager
    def capture(self) -> Iterator[list[str]]:
        """Record the refusals made inside the block in the yielded list instead of `violations`."""
        sink: list[str] = []
        with self._lock:
            self._sinks.append(sink)
        try:
            yield sink
        finally:
            with self._lock:
                self._sinks.remove(sink)

    def _refuse(self, what: str) -> NonLoopbackConnectionError:
        with self._lock:
            (self._sinks[-1] if self._sinks else self.violations).append(what)
        return NonLoopbackConnectionError(what)

    def _check(self, event: str, args: tuple[Any, ...]) -> None:
        if event in ("socket.connect", "socket.sendto", "socket.sendmsg"):
            sock, address = args[0], args[-1]
            if getattr(sock, "family", None) not in (socket.AF_INET, socket.AF_INET6) or address is None:
                return  # Unix sockets, netlink, a connected socket's send: not a new destination
            host = address[0] if isinstance(address, tuple) and address else address
            if not is_loopback(host):
                port = address[1] if isinstance(address, tuple) and len(address) > 1 else "?"
                verb = "connect" if event == "socket.connect" else "send"
                raise self._refuse(f"{verb} to {host}:{port}")
        elif event in ("socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyaddr", "socket.getnameinfo"):
            # A reverse lookup (gethostbyaddr, getnameinfo: the host of an address) asks
            # the resolver too, unless the address is loopback.
            host = args[0][0] if event == "socket.getnameinfo" and isinstance(args[0], tuple) else args[0]
            if host not in (None, "", b"") and not is_loopback(host):
                name = host.decode("ascii", "replace") if isinstance(host, bytes) else host
                raise self._refuse(f"lookup of {name}")


_state_lock = threading.Lock()
_hook_installed = False


def _reset_lock() -> None:
    global _state_lock
    _state_lock = threading.Lock()


reset_in_child(_reset_lock)


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if not event.startswith("socket."):
        return
    guard = NetworkGuard._active
    if guard is not None:
        guard._check(event, args)
