"""HTTP plumbing the loopback stand-ins share: one threaded server on 127.0.0.1, plain or TLS.

A stand-in subclasses `_LoopbackService` and answers `_Request`s with `_Response`s
in `_handle`; the server, its threads, start/stop/restart, hanging up kept-alive
connections and what a client needs to trust a TLS stand-in (`_tls`) live here.
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import ssl
import sys
import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Final, TypeVar, cast
from urllib.parse import parse_qsl, urlsplit

from . import _tls
from ._token_registry import _json_bytes

LOOPBACK: Final = "127.0.0.1"
_JSON: Final = "application/json"


@dataclass(frozen=True)
class _Request:
    method: str
    path: str
    query: dict[str, str]
    headers: Message
    body: bytes


@dataclass(frozen=True)
class _Response:
    status: int
    body: bytes = b""
    content_type: str | None = _JSON
    headers: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of_json(cls, status: int, value: object, headers: Mapping[str, str] | None = None) -> _Response:
        return cls(status, _json_bytes(value), _JSON, dict(headers or {}))


class _FaultQueue:
    """Canned responses to give instead of the real answer, each for its next `count` requests."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: deque[list[Any]] = deque()

    def push(self, count: int, response: _Response) -> None:
        if count < 1:
            raise ValueError("count must be at least 1")
        with self._lock:
            self._queue.append([count, response])

    def take(self) -> _Response | None:
        with self._lock:
            if not self._queue:
                return None
            entry = self._queue[0]
            entry[0] -= 1
            if entry[0] <= 0:
                self._queue.popleft()
            return cast(_Response, entry[1])

    def clear(self) -> None:
        with self._lock:
            self._queue.clear()


class _BadRequestBody(Exception):
    pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "azure-ad-token-auth-loopback/1"

    def log_message(self, format: str, *args: object) -> None:
        """Keep the test output quiet."""

    def setup(self) -> None:
        context = self._server().service._tls
        if context is not None:
            # The handshake runs here, in the connection's thread, not in the accept loop.
            self.request = context.wrap_socket(self.request, server_side=True)
        super().setup()
        self._server().track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self._server().track(self.connection, add=False)
            if isinstance(self.connection, ssl.SSLSocket):
                # The server closes only the plain socket it accepted, which wrapping detached.
                self.connection.close()

    def _server(self) -> _Server:
        return cast(_Server, self.server)

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            while True:
                size_line = self.rfile.readline(65537)
                try:
                    size = int(size_line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    raise _BadRequestBody("bad chunk size") from None
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline(3)
        try:
            length = int(self.headers.get("Content-Length", "0") or "0")
        except ValueError:
            raise _BadRequestBody("bad Content-Length") from None
        if length < 0:
            raise _BadRequestBody("bad Content-Length")
        return self.rfile.read(length) if length else b""

    def _dispatch(self) -> None:
        try:
            body = self._read_body()
        except _BadRequestBody as exc:
            self.close_connection = True
            self._send(_Response.of_json(400, {"error": {"code": "400", "message": str(exc)}}))
            return
        split = urlsplit(self.path)
        request = _Request(
            method=self.command,
            path=split.path or "/",
            query=dict(parse_qsl(split.query, keep_blank_values=True)),
            headers=self.headers,
            body=body,
        )
        try:
            response = self._server().service._handle(request)
        except Exception as exc:  # noqa: BLE001 - answer 500 rather than hang up
            response = _Response.of_json(500, {"error": {"code": "500", "message": f"stand-in failed: {exc!r}"}})
        self._send(response)

    def _send(self, response: _Response) -> None:
        self.send_response(response.status)
        if response.content_type is not None:
            self.send_header("Content-Type", response.content_type)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if self.command != "HEAD" and response.body:
            self.wfile.write(response.body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _dispatch


class _Server(ThreadingHTTPServer):
    request_queue_size = 256
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, service: _LoopbackService, port: int) -> None:
        self.service = service
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__((LOOPBACK, port), _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup; skip it.
        socketserver.TCPServer.server_bind(self)
        self.server_name = LOOPBACK
        self.server_port = self.server_address[1]

    def track(self, connection: socket.socket, *, add: bool) -> None:
        with self._connections_lock:
            if add:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def drop_connections(self) -> None:
        """Hang up kept-alive connections so a stopped server stops answering."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: socket.socket | tuple[bytes, socket.socket], client_address: object) -> None:
        # Clients hanging up (or stop() hanging up on them) is not an error here.
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)


_S = TypeVar("_S", bound="_LoopbackService")


class _LoopbackService:
    """Start/stop plumbing shared by the stand-ins."""

    def __init__(self, *, tls: bool = False) -> None:
        self._lock = threading.Lock()
        self._tls = _tls.server_context() if tls else None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._last_port = 0

    def _handle(self, request: _Request) -> _Response:
        raise NotImplementedError

    def start(self: _S) -> _S:
        """Start serving (no-op if already running); returns ``self``.

        A restarted server tries to get its previous port back so URLs handed
        out earlier keep working; if that port is taken it takes a new one.
        """
        if self._server is not None:
            return self
        server: _Server | None = None
        if self._last_port:
            with contextlib.suppress(OSError):
                server = _Server(self, self._last_port)
        if server is None:
            server = _Server(self, 0)
        self._server = server
        self._last_port = server.server_address[1]
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{type(self).__name__}:{self._last_port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and hang up open connections (no-op if stopped)."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._server = self._thread = None
        server.shutdown()
        server.drop_connections()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    @property
    def running(self) -> bool:
        """Whether the server is currently serving."""
        return self._server is not None

    @property
    def port(self) -> int:
        """The port bound on 127.0.0.1 (raises if not started)."""
        if self._server is None:
            raise RuntimeError(f"{type(self).__name__} is not running; call start() or use 'with'")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT`` (``https`` when serving TLS; raises if not started)."""
        scheme = "http" if self._tls is None else "https"
        return f"{scheme}://{LOOPBACK}:{self.port}"

    @property
    def tls(self) -> bool:
        """Whether this stand-in serves https (its certificate from the kit's CA, `ca_path`)."""
        return self._tls is not None

    @property
    def ca_path(self) -> str:
        """PEM of the CA that signed the certificate of every TLS stand-in in this process:
        what a client must trust (`verify=` for requests, `SSL_CERT_FILE`)."""
        self._require_tls("ca_path")
        return _tls.ca_path()

    def ssl_context(self) -> ssl.SSLContext:
        """A client `ssl.SSLContext` trusting the kit's CA only: aiohttp's `ssl=`, httpx's `verify=`."""
        self._require_tls("ssl_context()")
        return _tls.client_context()

    def _require_tls(self, what: str) -> None:
        if self._tls is None:
            raise RuntimeError(f"{type(self).__name__}.{what}: this stand-in serves plain http (made with tls=False)")

    def __enter__(self: _S) -> _S:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
