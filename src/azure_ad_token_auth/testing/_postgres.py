"""Azure Database for PostgreSQL on loopback: Azure's token check in front of a real server.

`AzurePostgresStandIn` speaks PostgreSQL's wire protocol on 127.0.0.1 (port 0) the way an
Azure flexible server with Microsoft Entra authentication does: TLS required (a throwaway
CA from `trustme`), the password asked in clear text inside TLS, and that password is
the access token, checked once, when the connection opens: issued by the `TokenRegistry`
(signature), not expired, past its `nbf` (5 min of clock skew), for the server's audience
(`ossrdbms-aad`), and belonging to the Entra principal the user name maps to. A refusal
is the server's own FATAL 28P01. An accepted connection is spliced, byte for byte, to a real PostgreSQL server
(`PostgresServer`) on its private socket, where it lives on whatever the token's expiry,
as on Azure. Cancel requests are forwarded, so `cancel()` works. A client that has not
authenticated within `auth_timeout` (PostgreSQL's `authentication_timeout`) is dropped.
"""

from __future__ import annotations

import asyncio
import functools
import shutil
import ssl
import tempfile
import threading
import time
import weakref
from collections.abc import Coroutine
from pathlib import Path
from types import TracebackType
from typing import Any

from .._clouds import POSTGRES_SCOPE
from ._postgres_server import PostgresServer
from ._postgres_wire import PostgresAuthRecord, Session
from ._token_registry import DEFAULT_SUBJECT, TokenRegistry

__all__ = ["AUDIENCE", "AzurePostgresStandIn", "PostgresAuthRecord"]

AUDIENCE = POSTGRES_SCOPE.removesuffix("/.default")
"""The audience of the tokens Azure Database for PostgreSQL accepts in the public cloud (`aud`)."""

# Token validators allow this much clock skew on `nbf` (Microsoft.IdentityModel's default, 5 min).
_CLOCK_SKEW = 300.0
_HOW = {"expired": "has expired", "revoked": "was revoked", "unknown": "was not issued by Microsoft Entra ID"}


@functools.lru_cache(maxsize=8)
def _tls(names: tuple[str, ...]) -> tuple[Any, Any]:
    """A throwaway CA and a server certificate for `names` (made once per set of names)."""
    try:
        import trustme
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError(
            "AzurePostgresStandIn serves TLS with a throwaway CA from 'trustme': pip install trustme "
            "(or azure-ad-token-auth[test])",
            name="trustme",
        ) from None
    ca = trustme.CA()
    return ca, ca.issue_cert(*names)


class AzurePostgresStandIn:
    """An Azure Database for PostgreSQL server on loopback, with Microsoft Entra authentication.

    ```python
    with PostgresServer() as server, AzurePostgresStandIn(server, registry=registry) as azure:
        azure.add_principal("my-app")                      # the role Azure maps the token's identity to
        psycopg.connect(azure.conninfo("my-app"), password=token)
    ```

    - `server`: the real `PostgresServer` behind it (default: a new one). One not running yet
      is started with the stand-in and stopped with it.
    - `registry`: the `TokenRegistry` whose tokens are checked (a managed-identity or Entra
      stand-in sharing it issues them).
    - `audience`: what the tokens' `aud` must be (default the public cloud's `ossrdbms-aad`).
    - `host_name`: the server's DNS name in its TLS certificate (and `conninfo()`); libpq
      connects to 127.0.0.1 through `hostaddr`, so the name is never looked up.

    The principal `default_user` (object id `DEFAULT_SUBJECT`, the registry's default
    identity) exists from the start. `records` lists every token check; `accepted`,
    `rejected`, `cancels` count them. `ca_path` is the CA file to trust (`sslrootcert`).
    """

    default_user = "loopback-identity"

    def __init__(
        self,
        server: PostgresServer | None = None,
        *,
        registry: TokenRegistry | None = None,
        audience: str = AUDIENCE,
        host_name: str = "loopback.postgres.database.azure.com",
        auth_timeout: float = 60.0,
    ) -> None:
        self.registry = registry if registry is not None else TokenRegistry()
        self.auth_timeout = auth_timeout
        """Seconds a client has to authenticate before it is dropped (PostgreSQL's
        `authentication_timeout`, 60 s by default, as on Azure)."""
        self.audience = audience
        self.host_name = host_name
        self.server = server if server is not None else PostgresServer()
        self._own_server = not self.server.running
        ca, certificate = _tls((host_name, "localhost", "127.0.0.1", "::1"))
        self.server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        certificate.configure_cert(self.server_context)
        self._dir = Path(tempfile.mkdtemp(prefix="azure-pg-ca-"))
        weakref.finalize(self, shutil.rmtree, self._dir, ignore_errors=True)
        self.ca_path = str(self._dir / "ca.pem")
        """PEM of the CA that signed the server's certificate: libpq's `sslrootcert`."""
        ca.cert_pem.write_to_path(self.ca_path)
        self._lock = threading.Lock()
        self._principals: dict[str, str] = {}
        self._records: list[PostgresAuthRecord] = []
        self._counts = {"cancels": 0, "tls_failures": 0}
        self.sessions: set[Session] = set()
        self._tasks: set[asyncio.Future[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # -- life cycle ------------------------------------------------------------------

    def start(self) -> AzurePostgresStandIn:
        """Start the real server if it is ours, then listen on 127.0.0.1 (a free port)."""
        if self._own_server:
            self.server.start()
        self.socket_path = f"{self.server.socket_dir}/.s.PGSQL.{self.server.port}"
        self.add_principal(self.default_user, DEFAULT_SUBJECT)
        loop = asyncio.new_event_loop()
        started = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(started.set)
            loop.run_forever()

        self._loop = loop
        self._thread = threading.Thread(target=run, name="azure-postgres-stand-in", daemon=True)
        self._thread.start()
        started.wait()
        listening = asyncio.run_coroutine_threadsafe(
            loop.create_server(lambda: Session(self), "127.0.0.1", 0, backlog=512), loop
        ).result(30)
        self._listener = listening
        self.port = listening.sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        """Close every connection and the listener; stop the real server if it is ours."""
        loop = self._loop
        if loop is not None:

            async def shut() -> None:
                self._listener.close()
                for session in list(self.sessions):
                    session.close()
                await asyncio.sleep(0)

            asyncio.run_coroutine_threadsafe(shut(), loop).result(30)
            loop.call_soon_threadsafe(loop.stop)
            assert self._thread is not None
            self._thread.join(30)
            loop.close()
            self._loop = None
        if self._own_server:
            self.server.stop()

    def __enter__(self) -> AzurePostgresStandIn:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    # -- principals and checks -----------------------------------------------------------

    def add_principal(self, user: str, object_id: str = DEFAULT_SUBJECT) -> None:
        """Map the PostgreSQL role `user` to the Entra object id `object_id` (the token's `oid`),
        creating the role: what `pgaadauth_create_principal_with_oid` does in Azure."""
        self.server.create_role(user)
        with self._lock:
            self._principals[user] = object_id

    def judge(self, user: str, token: str) -> str:
        """Why `token` does not open a connection as `user`, or "" when it does (as Azure judges it)."""
        failed = f'password authentication failed for user "{user}"'
        status = self.registry.check(token)
        if status != "valid":
            return f"{failed}: the access token {_HOW[status]}"
        claims = self.registry.claims(token) or {}
        not_before = claims.get("nbf")
        if isinstance(not_before, (int, float)) and not_before > time.time() + _CLOCK_SKEW:
            return f"{failed}: the access token is not valid yet (nbf)"
        audience = str(claims.get("aud", ""))
        if audience.rstrip("/") != self.audience.rstrip("/"):
            return f"{failed}: the access token is for {audience!r}, not for this server ({self.audience!r})"
        with self._lock:
            expected = self._principals.get(user)
        if expected is None:
            return f'{failed}: role "{user}" is not a Microsoft Entra principal of this server'
        if claims.get("oid") != expected:
            return f"{failed}: the access token belongs to object id {claims.get('oid')!r}, not {expected!r}"
        return ""

    def record(self, record: PostgresAuthRecord) -> None:
        with self._lock:
            self._records.append(record)

    def count(self, name: str) -> None:
        with self._lock:
            self._counts[name] += 1

    def forward_cancel(self, packet: bytes) -> None:
        """Send a CancelRequest on to the real server (its key came from the server, spliced)."""
        self.count("cancels")

        async def forward() -> None:
            try:
                _, writer = await asyncio.open_unix_connection(self.socket_path)
            except OSError:
                return
            writer.write(packet)
            await writer.drain()
            writer.close()

        self.spawn(forward())

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` on the stand-in's loop, holding it until done (the loop holds tasks weakly)."""
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- what happened --------------------------------------------------------------------

    @property
    def records(self) -> list[PostgresAuthRecord]:
        """Every token check so far, oldest first."""
        with self._lock:
            return list(self._records)

    @property
    def accepted(self) -> int:
        """Connections opened with a valid token."""
        return sum(record.outcome == "accepted" for record in self.records)

    @property
    def rejected(self) -> int:
        """Passwords refused (FATAL 28P01)."""
        return sum(record.outcome == "rejected" for record in self.records)

    @property
    def cancels(self) -> int:
        """Cancel requests forwarded to the real server."""
        with self._lock:
            return self._counts["cancels"]

    # -- how to connect ---------------------------------------------------------------------

    def conninfo(self, user: str | None = None, dbname: str = "postgres") -> str:
        """A libpq connection string to this server, TLS verified (`sslmode=verify-full`), without password."""
        values = {
            "host": self.host_name,
            "hostaddr": "127.0.0.1",
            "port": str(self.port),
            "dbname": dbname,
            "user": user or self.default_user,
            "sslmode": "verify-full",
            "sslrootcert": self.ca_path,
        }
        return " ".join(f"{name}={_quote(value)}" for name, value in values.items())

    def environ(self) -> dict[str, str]:
        """libpq's and asyncpg's variables for this server, for code that names only the host:
        `PGHOSTADDR` (libpq then never looks the name up), `PGPORT`, `PGSSLROOTCERT`, `PGSSLMODE`."""
        return {
            "PGHOSTADDR": "127.0.0.1",
            "PGPORT": str(self.port),
            "PGSSLROOTCERT": self.ca_path,
            "PGSSLMODE": "verify-full",
        }

    def ssl_context(self) -> ssl.SSLContext:
        """A client context trusting this server's CA (asyncpg's `ssl=`; it checks 127.0.0.1)."""
        return ssl.create_default_context(cafile=self.ca_path)

    def __repr__(self) -> str:
        return f"<AzurePostgresStandIn 127.0.0.1:{self.port} accepted={self.accepted} rejected={self.rejected}>"


def _quote(value: str) -> str:
    """A libpq connection-string value: quoted when it has spaces, quotes or backslashes."""
    if value and not any(c in value for c in " '\\"):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
