"""Loopback HTTP stand-ins for Azure services, for demos and tests.

Everything here binds to ``127.0.0.1`` on an OS-chosen port, serves from a
daemon thread and uses only the standard library:

* :class:`TokenRegistry` issues JWT-shaped tokens and says whether a token is
  valid, expired, revoked or unknown.
* :class:`ManagedIdentityEndpoint` imitates the App Service managed-identity
  endpoint that ``azure-identity`` calls when ``IDENTITY_ENDPOINT`` and
  ``IDENTITY_HEADER`` are set.
* :class:`AzureOpenAIStandIn` imitates the Azure OpenAI completion routes and
  checks bearer tokens against a registry.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import secrets
import socket
import socketserver
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Final, Literal, TypedDict, TypeVar, cast
from urllib.parse import parse_qsl, unquote, urlsplit

from .._cache import fingerprint

__all__ = [
    "DEFAULT_APP_ID",
    "DEFAULT_AUDIENCE",
    "DEFAULT_SUBJECT",
    "DEFAULT_TENANT",
    "AzureOpenAIStandIn",
    "ManagedIdentityEndpoint",
    "RecordedRequest",
    "TokenRegistry",
    "TokenRequestRecord",
    "TokenStatus",
    "fingerprint",
]

TokenStatus = Literal["valid", "expired", "unknown", "revoked"]

DEFAULT_TENANT: Final = "00000000-0000-0000-0000-0000000000aa"
DEFAULT_SUBJECT: Final = "00000000-0000-0000-0000-0000000000b0"
DEFAULT_APP_ID: Final = "00000000-0000-0000-0000-0000000000c0"
DEFAULT_AUDIENCE: Final = "https://cognitiveservices.azure.com"

_LOOPBACK: Final = "127.0.0.1"
_JSON: Final = "application/json"
_MSG_MISSING: Final = (
    "Access denied due to invalid subscription key or wrong API endpoint. Make sure to "
    "provide a valid key for an active subscription and use a correct regional API "
    "endpoint for your resource."
)
_MSG_INVALID: Final = "Unauthorized. Access token is missing, invalid, audience is incorrect, or have expired."
_MSG_CAE: Final = (
    "Continuous access evaluation resulted in challenge with result: InteractionRequired "
    "and code: TokenIssuedBeforeRevocationTimestamp"
)
_TOKEN_DESCRIPTIONS: Final[Mapping[str, str]] = {
    "missing": "No access token was presented",
    "expired": "The access token has expired",
    "unknown": "The access token was not issued by this authority",
    "revoked": "The access token has been revoked",
}
# Headers whose values are credentials; a record never keeps them.
_REDACTED_HEADERS: Final = frozenset({"authorization", "api-key", "ocp-apim-subscription-key", "x-identity-header"})
# Variables that would make DefaultAzureCredential pick another credential
# before managed identity, or send managed identity somewhere else.
_CONFLICTING_ENV: Final = (
    "AZURE_CLIENT_ID",
    "AZURE_TENANT_ID",
    "AZURE_CLIENT_SECRET",
    "AZURE_CLIENT_CERTIFICATE_PATH",
    "AZURE_FEDERATED_TOKEN_FILE",
    "AZURE_USERNAME",
    "AZURE_PASSWORD",
    "AZURE_TOKEN_CREDENTIALS",
    "MSI_ENDPOINT",
    "MSI_SECRET",
    "IMDS_ENDPOINT",
    "IDENTITY_SERVER_THUMBPRINT",
    "AZURE_POD_IDENTITY_AUTHORITY_HOST",
)
_PROXY_ENV: Final = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _json_bytes(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode("utf-8")


# --------------------------------------------------------------------------- tokens


@dataclass(frozen=True)
class _Issued:
    expires_on: int
    claims: dict[str, object]


class TokenRegistry:
    """Thread-safe record of the tokens a loopback authority has issued."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[str, _Issued] = {}
        self._revoked: set[str] = set()

    def issue(
        self,
        lifetime: float,
        *,
        claims: Mapping[str, object] | None = None,
        subject: str = DEFAULT_SUBJECT,
        audience: str = DEFAULT_AUDIENCE,
        tenant: str = DEFAULT_TENANT,
    ) -> tuple[str, int]:
        """Issue a unique JWT-shaped token; return ``(token, expires_on)``."""
        now = time.time()
        expires_on = int(now + lifetime)
        payload: dict[str, object] = {
            "aud": audience,
            "iss": f"https://sts.windows.net/{tenant}/",
            "iat": int(now),
            "nbf": int(now),
            "exp": expires_on,
            "tid": tenant,
            "oid": subject,
            "sub": subject,
            "appid": DEFAULT_APP_ID,
            "idtyp": "app",
            "uti": secrets.token_urlsafe(16),
            "ver": "1.0",
        }
        if claims:
            payload.update(claims)
        header = {"alg": "RS256", "typ": "JWT", "kid": "loopback"}
        token = ".".join(
            (_b64url(_json_bytes(header)), _b64url(_json_bytes(payload)), _b64url(secrets.token_bytes(32)))
        )
        with self._lock:
            self._tokens[token] = _Issued(expires_on, payload)
        return token, expires_on

    def check(self, token: str) -> TokenStatus:
        """Classify ``token`` against the clock as it reads right now."""
        with self._lock:
            issued = self._tokens.get(token)
            revoked = token in self._revoked
        if issued is None:
            return "unknown"
        if revoked:
            return "revoked"
        if time.time() >= issued.expires_on:
            return "expired"
        return "valid"

    def revoke(self, token: str) -> None:
        """Revoke an issued token; raise ``KeyError`` for a token never issued."""
        with self._lock:
            if token not in self._tokens:
                raise KeyError(f"token {fingerprint(token)} was not issued here")
            self._revoked.add(token)

    @property
    def issued(self) -> int:
        """How many tokens have been issued."""
        with self._lock:
            return len(self._tokens)

    def expires_on(self, token: str) -> int | None:
        """Expiry (epoch seconds) of an issued token, or ``None`` if unknown."""
        with self._lock:
            issued = self._tokens.get(token)
        return None if issued is None else issued.expires_on

    def claims(self, token: str) -> dict[str, object] | None:
        """A copy of an issued token's payload claims, or ``None`` if unknown."""
        with self._lock:
            issued = self._tokens.get(token)
        return None if issued is None else dict(issued.claims)


# --------------------------------------------------------------------------- HTTP plumbing


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


class _BadRequestBody(Exception):
    pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "azure-ad-token-auth-loopback/1"

    def log_message(self, format: str, *args: object) -> None:
        """Keep the test output quiet."""

    def setup(self) -> None:
        super().setup()
        self._server().track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self._server().track(self.connection, add=False)

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
        super().__init__((_LOOPBACK, port), _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup; skip it.
        socketserver.TCPServer.server_bind(self)
        self.server_name = _LOOPBACK
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

    def __init__(self) -> None:
        self._lock = threading.Lock()
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
        """``http://127.0.0.1:PORT`` (raises if not started)."""
        return f"http://{_LOOPBACK}:{self.port}"

    def __enter__(self: _S) -> _S:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# --------------------------------------------------------------------------- managed identity


class TokenRequestRecord(TypedDict):
    """One request seen by :class:`ManagedIdentityEndpoint`."""

    method: str
    path: str
    query: dict[str, str]
    time: float
    status: int


@dataclass
class _MIFault:
    remaining: int
    status: int
    body: str


class ManagedIdentityEndpoint(_LoopbackService):
    """Stand-in for the App Service managed-identity endpoint (``/msi/token``)."""

    PATH: Final = "/msi/token"

    def __init__(
        self,
        *,
        registry: TokenRegistry | None = None,
        lifetime: float = 3600.0,
        refresh_in: float | None = None,
        secret: str = "loopback-identity-header",  # noqa: S107 - a fixture value
        delay: float = 0.0,
    ) -> None:
        super().__init__()
        self.registry = registry if registry is not None else TokenRegistry()
        self.secret = secret
        self._lifetime = lifetime
        self._refresh_in = refresh_in
        self._delay = delay
        self._calls = 0
        self._requests: list[TokenRequestRecord] = []
        self._faults: deque[_MIFault] = deque()
        self._last_resource: str | None = None

    @property
    def url(self) -> str:
        """The endpoint URL, ``http://127.0.0.1:PORT/msi/token``."""
        return self.base_url + self.PATH

    def env(self) -> dict[str, str]:
        """The environment variables that point azure-identity here."""
        return {"IDENTITY_ENDPOINT": self.url, "IDENTITY_HEADER": self.secret}

    @contextlib.contextmanager
    def patched_env(self) -> Iterator[dict[str, str]]:
        """Point ``os.environ`` at this endpoint; restore it on exit.

        Also removes variables that would make ``DefaultAzureCredential`` use
        another credential first, and, if a proxy is configured, adds
        127.0.0.1 to ``NO_PROXY``/``no_proxy``.
        """
        updates: dict[str, str | None] = dict.fromkeys(_CONFLICTING_ENV)
        updates.update(self.env())
        if any(os.environ.get(name) for name in _PROXY_ENV):
            for name in ("NO_PROXY", "no_proxy"):
                current = os.environ.get(name, "")
                if _LOOPBACK not in current.split(","):
                    updates[name] = f"{current},{_LOOPBACK}" if current else _LOOPBACK
        saved = {name: os.environ.get(name) for name in updates}
        try:
            for name, value in updates.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
            yield self.env()
        finally:
            for name, old in saved.items():
                if old is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = old

    @property
    def calls(self) -> int:
        """How many requests were answered with a token."""
        with self._lock:
            return self._calls

    @property
    def requests(self) -> list[TokenRequestRecord]:
        """A snapshot of every request seen, oldest first."""
        with self._lock:
            return list(self._requests)

    @property
    def last_resource(self) -> str | None:
        """The ``resource`` of the last token handed out."""
        with self._lock:
            return self._last_resource

    def fail_next(self, count: int = 1, status: int = 500, body: str | None = None) -> None:
        """Answer the next ``count`` token requests with ``status`` and ``body``.

        ``body`` defaults to an App Service-style JSON error.
        """
        if count < 1:
            raise ValueError("count must be at least 1")
        if body is None:
            body = json.dumps({"statusCode": status, "message": "Injected failure (loopback)"})
        with self._lock:
            self._faults.append(_MIFault(count, status, body))

    def set_delay(self, seconds: float) -> None:
        """Sleep this long before answering each request."""
        with self._lock:
            self._delay = seconds

    def set_lifetime(self, seconds: float) -> None:
        """Lifetime of tokens issued from now on."""
        with self._lock:
            self._lifetime = seconds

    def _handle(self, request: _Request) -> _Response:
        with self._lock:
            delay = self._delay
        if delay > 0:
            time.sleep(delay)
        response = self._answer(request)
        with self._lock:
            self._requests.append(
                TokenRequestRecord(
                    method=request.method,
                    path=request.path,
                    query=dict(request.query),
                    time=time.time(),
                    status=response.status,
                )
            )
        return response

    def _answer(self, request: _Request) -> _Response:
        if request.path != self.PATH:
            return _Response.of_json(404, {"statusCode": 404, "message": "Not found"})
        with self._lock:
            fault = self._faults[0] if self._faults else None
            if fault is not None:
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._faults.popleft()
            lifetime, refresh_in = self._lifetime, self._refresh_in
        if fault is not None:
            content_type = _JSON
            try:
                json.loads(fault.body)
            except ValueError:
                content_type = "text/plain; charset=utf-8"
            return _Response(fault.status, fault.body.encode("utf-8"), content_type)
        if request.method != "GET":
            return _Response.of_json(405, {"statusCode": 405, "message": "Method not allowed"})
        if request.headers.get("X-IDENTITY-HEADER") != self.secret:
            return _Response.of_json(
                401,
                {"statusCode": 401, "message": "Missing or invalid X-IDENTITY-HEADER"},
            )
        resource = request.query.get("resource")
        if not resource:
            return _Response.of_json(400, {"statusCode": 400, "message": "The 'resource' parameter is required"})
        token, expires_on = self.registry.issue(lifetime, audience=resource)
        payload: dict[str, object] = {
            "access_token": token,
            "expires_on": str(expires_on),
            "resource": resource,
            "token_type": "Bearer",
        }
        if refresh_in is not None:
            payload["refresh_in"] = int(refresh_in)
        with self._lock:
            self._calls += 1
            self._last_resource = resource
        return _Response.of_json(200, payload)


# --------------------------------------------------------------------------- Azure OpenAI


@dataclass(frozen=True)
class RecordedRequest:
    """One request seen by :class:`AzureOpenAIStandIn`; never holds a token."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    token_status: str
    token_fingerprint: str | None
    body: bytes
    status: int
    time: float


@dataclass
class _Fault:
    remaining: int
    response: _Response


def _azure_error(status: int, message: str) -> dict[str, object]:
    return {"error": {"code": str(status), "message": message}}


def _invalid_token_header(description: str) -> dict[str, str]:
    return {"WWW-Authenticate": f'Bearer error="invalid_token", error_description="{description}"'}


class AzureOpenAIStandIn(_LoopbackService):
    """Stand-in for an Azure OpenAI resource that checks bearer tokens.

    Routes (POST): ``/openai/deployments/{name}/completions`` and
    ``.../chat/completions`` (need ``api-version``), ``/openai/v1/completions``
    and ``/openai/v1/chat/completions`` (deployment from the body's ``model``),
    plus ``/echo`` (GET, POST, PUT) which describes the request it got.
    """

    def __init__(
        self,
        *,
        registry: TokenRegistry | None = None,
        completion: str = " was very attentive and friendly.",
        require_token: bool = True,
    ) -> None:
        super().__init__()
        self.registry = registry if registry is not None else TokenRegistry()
        self.completion = completion
        self.require_token = require_token
        self._requests: list[RecordedRequest] = []
        self._faults: deque[_Fault] = deque()
        self._ids = 0

    # -- inspection ------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of every request seen, oldest first."""
        with self._lock:
            return list(self._requests)

    @property
    def count(self) -> int:
        """How many requests have been seen."""
        with self._lock:
            return len(self._requests)

    def reset(self) -> None:
        """Forget recorded requests and drop pending injected faults."""
        with self._lock:
            self._requests.clear()
            self._faults.clear()

    # -- fault injection (queued in call order) --------------------------------

    def _queue(self, count: int, response: _Response) -> None:
        if count < 1:
            raise ValueError("count must be at least 1")
        with self._lock:
            self._faults.append(_Fault(count, response))

    def fail_next(
        self,
        count: int = 1,
        status: int = 401,
        headers: Mapping[str, str] | None = None,
        body: Mapping[str, object] | None = None,
    ) -> None:
        """Answer the next ``count`` requests with ``status``, whatever the token.

        ``body`` defaults to an Azure-style error; ``headers`` default to an
        ``invalid_token`` challenge for 401 and nothing otherwise.
        """
        if headers is None:
            headers = _invalid_token_header("Injected failure") if status == 401 else {}
        if body is None:
            message = _MSG_INVALID if status == 401 else "Injected failure (loopback)"
            body = _azure_error(status, message)
        self._queue(count, _Response.of_json(status, dict(body), headers))

    def challenge_next(self, claims: str, count: int = 1) -> None:
        """Answer the next ``count`` requests with a CAE ``insufficient_claims`` 401.

        ``claims`` is the decoded JSON text; it is sent base64url-encoded
        without padding, as Azure does.
        """
        header = (
            'Bearer realm="", '
            'authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize", '
            f'error="insufficient_claims", claims="{_b64url(claims.encode("utf-8"))}"'
        )
        self._queue(
            count,
            _Response.of_json(401, _azure_error(401, _MSG_CAE), {"WWW-Authenticate": header}),
        )

    def redirect_next(self, location: str, status: int = 307, count: int = 1) -> None:
        """Answer the next ``count`` requests with a redirect to ``location``."""
        self._queue(count, _Response(status, b"", None, {"Location": location}))

    # -- request handling ------------------------------------------------------

    def _handle(self, request: _Request) -> _Response:
        token = self._bearer(request.headers)
        token_status: str = "missing" if token is None else self.registry.check(token)
        with self._lock:
            fault = self._faults[0] if self._faults else None
            if fault is not None:
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._faults.popleft()
        response = fault.response if fault is not None else self._route(request, token_status)
        headers: dict[str, str] = {}
        for name, value in request.headers.items():
            name = name.lower()
            if name in _REDACTED_HEADERS:
                value = "<redacted>"
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        record = RecordedRequest(
            method=request.method,
            path=request.path,
            query=dict(request.query),
            headers=headers,
            token_status=token_status,
            token_fingerprint=None if token is None else fingerprint(token),
            body=request.body,
            status=response.status,
            time=time.time(),
        )
        with self._lock:
            self._requests.append(record)
        return response

    @staticmethod
    def _bearer(headers: Message) -> str | None:
        value = headers.get("Authorization")
        if not value:
            return None
        scheme, _, token = value.strip().partition(" ")
        token = token.strip()
        return token if scheme.lower() == "bearer" and token else None

    def _unauthorized(self, status: str) -> _Response | None:
        if not self.require_token or status == "valid":
            return None
        message = _MSG_MISSING if status == "missing" else _MSG_INVALID
        return _Response.of_json(401, _azure_error(401, message), _invalid_token_header(_TOKEN_DESCRIPTIONS[status]))

    def _route(self, request: _Request, status: str) -> _Response:
        not_found = _Response.of_json(404, _azure_error(404, "Resource not found"))
        parts = request.path.strip("/").split("/")
        if parts == ["echo"]:
            if request.method not in ("GET", "POST", "PUT"):
                return _Response.of_json(405, _azure_error(405, "Method not allowed"))
            return self._unauthorized(status) or _Response.of_json(
                200,
                {
                    "method": request.method,
                    "path": request.path,
                    "query": request.query,
                    "body_length": len(request.body),
                    "body_sha256": hashlib.sha256(request.body).hexdigest(),
                    "token_status": status,
                },
            )
        if len(parts) >= 4 and parts[:2] == ["openai", "deployments"] and parts[2]:
            if "api-version" not in request.query:
                return not_found
            deployment: str | None = unquote(parts[2])
            kind = "/".join(parts[3:])
        elif len(parts) >= 3 and parts[:2] == ["openai", "v1"]:
            deployment, kind = None, "/".join(parts[2:])
        else:
            return not_found
        if kind not in ("completions", "chat/completions"):
            return not_found
        if request.method != "POST":
            return _Response.of_json(405, _azure_error(405, "Method not allowed"))
        refused = self._unauthorized(status)
        if refused is not None:
            return refused
        try:
            body = json.loads(request.body or b"{}")
        except ValueError:
            return _Response.of_json(400, _azure_error(400, "Request body is not valid JSON"))
        if deployment is None and not (isinstance(body, dict) and body.get("model")):
            return _Response.of_json(400, _azure_error(400, "'model' is required"))
        return _Response.of_json(200, self._completion(chat=kind == "chat/completions"))

    def _completion(self, *, chat: bool) -> dict[str, object]:
        with self._lock:
            self._ids += 1
            number = self._ids
        usage = {"prompt_tokens": 8, "completion_tokens": 7, "total_tokens": 15}
        if chat:
            return {
                "id": f"chatcmpl-loopback-{number}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": "gpt-4o",
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "stop",
                        "message": {"role": "assistant", "content": self.completion},
                    }
                ],
                "usage": usage,
            }
        return {
            "id": f"cmpl-loopback-{number}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": "gpt-35-turbo-instruct",
            "choices": [{"text": self.completion, "index": 0, "finish_reason": "stop", "logprobs": None}],
            "usage": usage,
        }
