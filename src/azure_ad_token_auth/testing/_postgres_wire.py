"""PostgreSQL's wire protocol, as `AzurePostgresStandIn` speaks it: the startup exchange, then a splice.

`Session` is one client connection: it answers SSLRequest (then TLS), declines GSSAPI,
forwards a CancelRequest, refuses a StartupMessage outside TLS, asks for the password in
clear text inside TLS, has the front judge it, and then splices the connection byte for
byte to the real server's socket (`_Pipe`), with back-pressure both ways.
"""

from __future__ import annotations

import asyncio
import ssl
import struct
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from ._token_registry import fingerprint

__all__ = ["AuthOutcome", "Front", "PostgresAuthRecord", "Session"]

_SSL_REQUEST, _GSSENC_REQUEST, _CANCEL_REQUEST = 80877103, 80877104, 80877102
_MAX_STARTUP = 10_000  # a startup packet longer than this is no PostgreSQL client's
_CLEARTEXT_PASSWORD = b"R" + struct.pack(">ii", 8, 3)
AuthOutcome = Literal["accepted", "rejected"]


@dataclass(frozen=True)
class PostgresAuthRecord:
    """One password (token) check; holds the token's fingerprint, never the token."""

    user: str
    database: str
    outcome: AuthOutcome
    reason: str
    """Why it was refused (the message the client got), or "" when accepted."""
    fingerprint: str
    time: float


class Front(Protocol):
    """What a session needs of the stand-in it serves."""

    server_context: ssl.SSLContext
    socket_path: str
    sessions: set[Session]
    auth_timeout: float

    def judge(self, user: str, token: str) -> str: ...
    def record(self, record: PostgresAuthRecord) -> None: ...
    def count(self, name: str) -> None: ...
    def forward_cancel(self, packet: bytes) -> None: ...
    def spawn(self, work: Coroutine[Any, Any, None]) -> None: ...


def _error(code: str, message: str) -> bytes:
    """A FATAL ErrorResponse message."""
    fields = b"".join(key + value.encode() + b"\0" for key, value in ((b"S", "FATAL"), (b"V", "FATAL"), (b"C", code)))
    body = fields + b"M" + message.encode() + b"\0\0"
    return b"E" + struct.pack(">i", len(body) + 4) + body


def _startup_parameters(body: bytes) -> dict[str, str]:
    """The name/value pairs of a StartupMessage after its version (NUL-terminated strings)."""
    items = body.split(b"\0")
    return {
        items[i].decode(errors="replace"): items[i + 1].decode(errors="replace") for i in range(0, len(items) - 2, 2)
    }


class _Pipe(asyncio.Protocol):
    """The real server's side of a spliced connection: what it sends goes to the client, with back-pressure."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.session.to_client(data)

    def pause_writing(self) -> None:
        self.session.pause_client()

    def resume_writing(self) -> None:
        self.session.resume_client()

    def connection_lost(self, exc: Exception | None) -> None:
        self.session.close()


class Session(asyncio.Protocol):
    """A client connection: the startup exchange and the token check, then the splice."""

    def __init__(self, front: Front) -> None:
        self.front = front
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.state = "startup"  # -> "tls" -> "startup" -> "password" -> "connecting" -> "spliced"
        self.tls = False
        self.startup = b""
        self.parameters: dict[str, str] = {}
        self.backend: _Pipe | None = None

    # -- the client's side --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.transport is None:  # the first transport (start_tls makes another): the clock starts
            asyncio.get_running_loop().call_later(self.front.auth_timeout, self._auth_timed_out)
        self.transport = transport  # type: ignore[assignment]
        self.front.sessions.add(self)

    def _auth_timed_out(self) -> None:
        """PostgreSQL's `authentication_timeout`: a client that has not authenticated by then is dropped."""
        if self.state in ("tls", "startup", "password"):
            self._refuse("57014", "canceling authentication due to timeout")

    def data_received(self, data: bytes) -> None:
        if self.state in ("spliced", "connecting") and self.backend is not None and self.backend.transport:
            self.backend.transport.write(data)
            return
        self.buffer += data
        self._handle()

    def _handle(self) -> None:
        """Handle the complete packets buffered (more may come before a TLS upgrade returns)."""
        while self.transport is not None and self.state in ("startup", "password"):
            if not (self._startup_packet() if self.state == "startup" else self._password_message()):
                break

    def _startup_packet(self) -> bool:
        """Handle one complete startup-phase packet; False while incomplete."""
        if len(self.buffer) < 8:
            return False
        (length,) = struct.unpack(">i", self.buffer[:4])
        if not 8 <= length <= _MAX_STARTUP:
            self._refuse("08P01", "invalid length of startup packet")
            return False
        if len(self.buffer) < length:
            return False
        packet, self.buffer = self.buffer[:length], self.buffer[length:]
        (code,) = struct.unpack(">i", packet[4:8])
        if code == _SSL_REQUEST and not self.tls and not self.buffer:
            self._write(b"S")
            self.state = "tls"
            self.front.spawn(self._start_tls())
            return False
        if code == _GSSENC_REQUEST:
            self._write(b"N")  # no GSSAPI: the client goes on with TLS or in the clear
            return True
        if code == _CANCEL_REQUEST and length == 16:
            self.front.forward_cancel(packet)
            self.close()
            return False
        if code >> 16 != 3:
            self._refuse("0A000", f"unsupported frontend protocol {code >> 16}.{code & 0xFFFF}")
            return False
        self.parameters = _startup_parameters(packet[8:])
        user, database = self.parameters.get("user", ""), self.parameters.get("database", "")
        if not self.tls:
            # Azure requires TLS (require_secure_transport): refused before a password is asked.
            self._refuse(
                "28000",
                f'no pg_hba.conf entry for host "127.0.0.1", user "{user}", database "{database}", no encryption',
            )
            return False
        self.startup = packet
        self.state = "password"
        self._write(_CLEARTEXT_PASSWORD)
        return True

    async def _start_tls(self) -> None:
        loop = asyncio.get_running_loop()
        assert self.transport is not None
        try:
            transport = await loop.start_tls(self.transport, self, self.front.server_context, server_side=True)
        except (OSError, ssl.SSLError, ConnectionError):  # the client does not trust us, or left
            self.front.count("tls_failures")
            self.close()
            return
        self.transport = transport
        self.tls = True
        self.state = "startup"
        self._handle()

    def _password_message(self) -> bool:
        if len(self.buffer) < 5:
            return False
        (length,) = struct.unpack(">i", self.buffer[1:5])
        if self.buffer[:1] != b"p" or not 4 < length <= _MAX_STARTUP:
            self._refuse("08P01", "expected a password message")
            return False
        if len(self.buffer) < length + 1:
            return False
        token = self.buffer[5 : length + 1].rstrip(b"\0").decode(errors="replace")
        self.buffer = self.buffer[length + 1 :]
        user, database = self.parameters.get("user", ""), self.parameters.get("database", "")
        reason = self.front.judge(user, token)
        self.front.record(
            PostgresAuthRecord(
                user, database, "rejected" if reason else "accepted", reason, fingerprint(token), time.time()
            )
        )
        del token
        if reason:
            self._refuse("28P01", reason)
            return False
        self.state = "connecting"
        self.front.spawn(self._splice())
        return False

    async def _splice(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            _, backend = await loop.create_unix_connection(lambda: _Pipe(self), self.front.socket_path)
        except OSError as error:
            self._refuse("57P03", f"the database system is not reachable: {error}")
            return
        self.backend = backend
        assert backend.transport is not None
        backend.transport.write(self.startup + self.buffer)  # trust auth: the server answers AuthenticationOk
        self.buffer = b""
        self.state = "spliced"
        if self.transport is None or self.transport.is_closing():
            self.close()

    # -- both sides -----------------------------------------------------------------------

    def to_client(self, data: bytes) -> None:
        self._write(data)

    def pause_writing(self) -> None:  # the client reads slower than the server answers
        if self.backend is not None and self.backend.transport is not None:
            self.backend.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.backend is not None and self.backend.transport is not None:
            self.backend.transport.resume_reading()

    def pause_client(self) -> None:
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_client(self) -> None:
        if self.transport is not None:
            self.transport.resume_reading()

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _refuse(self, code: str, message: str) -> None:
        self._write(_error(code, message))
        self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.state != "tls":  # start_tls hands the connection to a new transport
            self.close()

    def close(self) -> None:
        self.state = "closed"
        self.front.sessions.discard(self)
        for transport in (self.transport, self.backend.transport if self.backend else None):
            if transport is not None and not transport.is_closing():
                transport.close()
