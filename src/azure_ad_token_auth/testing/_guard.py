"""A guard that keeps a test process on the machine: nothing but loopback is resolved or connected.

While a `NetworkGuard` is installed, a connection (TCP connect, UDP send) to an
address outside 127.0.0.0/8 and ::1, or the lookup of any name but ``localhost``, is
refused with `NonLoopbackConnectionError` *before* the system call is made (from a
`sys.addaudithook` hook), and recorded in `violations`. Clients often swallow connection errors
(`DefaultAzureCredential` moves on to its next credential), so a test runner should
fail the test when `violations` is not empty, not rely on the exception; see
README's "Testing your own code". Unix sockets and socket pairs are left alone.

`NetworkGuard(children=True)` covers the Python processes started meanwhile too
(subprocesses, multiprocessing workers, forked children): see `NetworkGuard`.

Not covered: code that resolves names or connects without Python's `socket` module
(c-ares in aiodns, libcurl), and child processes that are not Python or that replace
`PYTHONPATH` instead of extending it.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import os
import socket
import sys
import tempfile
import threading
import weakref
from collections.abc import Iterator
from types import TracebackType
from typing import Any

__all__ = ["CHILD_BOOTSTRAP", "REPORT_ENV", "NetworkGuard", "NonLoopbackConnectionError", "guard_child", "is_loopback"]

_LOCALHOST = "localhost"

REPORT_ENV = "AZURE_AD_TOKEN_AUTH_GUARD_REPORT"
"""Names the file where guarded child processes append what they were refused."""
CHILD_BOOTSTRAP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_child_guard")
"""The directory holding the `sitecustomize` that guards a Python child process."""


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

    `children=True` guards the child processes too. While installed, the guard puts
    `CHILD_BOOTSTRAP` first on `PYTHONPATH` and names a report file in `REPORT_ENV`, so
    every Python child (subprocess, multiprocessing spawn or forkserver worker) starts
    with the same guard, before its own code runs; forked children keep the parent's.
    A child's refusals are appended to the report file, and `take_violations()` adds
    them, marked with the child's pid. Loading the bootstrap imports only this module.
    """

    _active: NetworkGuard | None = None

    def __init__(self, *, children: bool = False) -> None:
        self._lock = threading.Lock()
        self.violations: list[str] = []
        """What was refused, oldest first (``"connect to 169.254.169.254:80"``)."""
        self._sinks: list[list[str]] = []
        self._children = children
        self._report: str | None = None  # the file children append their refusals to
        self._reader = os.getpid()  # the process that reads the report; others write it
        self._read_upto = 0
        self._saved_env: dict[str, str | None] = {}

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
        if self._children:
            self._guard_children()
        return self

    def uninstall(self) -> None:
        """Stop refusing (no-op if not installed)."""
        with _state_lock:
            if NetworkGuard._active is not self:
                return
            NetworkGuard._active = None
        if self._saved_env:
            for name, value in self._saved_env.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
            self._saved_env = {}

    def _guard_children(self) -> None:
        if self._report is None:
            handle, self._report = tempfile.mkstemp(prefix="azure-ad-token-auth-guard-", suffix=".txt")
            os.close(handle)
            weakref.finalize(self, _remove, self._report)
        self._reader = os.getpid()
        path = os.environ.get("PYTHONPATH")
        self._saved_env = {"PYTHONPATH": path, REPORT_ENV: os.environ.get(REPORT_ENV)}
        os.environ["PYTHONPATH"] = os.pathsep.join([CHILD_BOOTSTRAP, path] if path else [CHILD_BOOTSTRAP])
        os.environ[REPORT_ENV] = self._report

    def __enter__(self) -> NetworkGuard:
        return self.install()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.uninstall()

    # -- records -----------------------------------------------------------------

    def take_violations(self) -> list[str]:
        """The violations so far (child processes' included), clearing them."""
        with self._lock:
            taken, self.violations = self.violations, []
            taken += self._children_reports()
        return taken

    def _children_reports(self) -> list[str]:
        if self._report is None or os.getpid() != self._reader:
            return []
        with open(self._report, "rb") as report:
            report.seek(self._read_upto)
            lines = report.read().split(b"\n")[:-1]  # a line still being written waits
        self._read_upto += sum(len(line) + 1 for line in lines)
        return [line.decode("utf-8", "replace") for line in lines]

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

    def _refuse(self, what: str) -> NonLoopbackConnectionError:  # pragma: no cover - runs in the audit hook
        if self._report is not None and os.getpid() != self._reader:
            # A child: its parent's test must fail. One O_APPEND write per line, so
            # lines from many children do not interleave.
            line = f"{what} (in child process {os.getpid()})\n".encode("utf-8", "replace")
            with contextlib.suppress(OSError):
                handle = os.open(self._report, os.O_WRONLY | os.O_APPEND)
                try:
                    os.write(handle, line)
                finally:
                    os.close(handle)
        else:
            with self._lock:
                (self._sinks[-1] if self._sinks else self.violations).append(what)
        return NonLoopbackConnectionError(what)

    def _check(self, event: str, args: tuple[Any, ...]) -> None:  # pragma: no cover - runs in the audit hook
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


# Not through the package's `_forks`: the child bootstrap loads this module on its own,
# without importing the package (which would cost every child process a second or so).
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_lock)


# CPython runs audit hooks with tracing off, so coverage never sees `_audit`, `_check` or
# `_refuse` run (tests/kit/test_network_guard.py exercises each of them).


def _remove(path: str) -> None:
    with contextlib.suppress(OSError):
        os.remove(path)


def guard_child() -> NetworkGuard | None:
    """Install a guard reporting to the file named in `REPORT_ENV`, if set (run by `CHILD_BOOTSTRAP`)."""
    report = os.environ.get(REPORT_ENV)
    if not report:
        return None
    guard = NetworkGuard()
    guard._report, guard._reader = report, -1  # every refusal here goes to the parent
    return guard.install()


def _audit(event: str, args: tuple[Any, ...]) -> None:  # pragma: no cover - runs in the audit hook
    if not event.startswith("socket."):
        return
    guard = NetworkGuard._active
    if guard is not None:
        guard._check(event, args)
