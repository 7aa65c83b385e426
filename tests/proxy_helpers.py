"""A recording proxy on 127.0.0.2 (plain http forward or SOCKS5), to loopback targets only.

Shared by the proxy tests (tests/integration/test_proxies.py) and the openai tests that
mount a proxy in an application's own client.
"""

from __future__ import annotations

import http.client
import http.server
import ipaddress
import select
import socket
import socketserver
import struct
import threading
import urllib.parse
from typing import Any

PROXY_HOST = "127.0.0.2"


def _loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _ForwardHandler(http.server.BaseHTTPRequestHandler):
    """A forward proxy for absolute-form plain-http requests, to loopback targets only."""

    disable_nagle_algorithm = True
    protocol_version = "HTTP/1.1"

    def _forward(self) -> None:
        self.server.seen.append((self.command, self.path, self.headers.get("Authorization")))  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        target = urllib.parse.urlsplit(self.path)
        host = target.hostname or ""
        if self.command == "CONNECT" or target.scheme != "http" or not _loopback(host):
            self.send_response(502)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("proxy-connection", "connection")}
        upstream = http.client.HTTPConnection(host, target.port or 80, timeout=5)
        try:
            upstream.request(self.command, target.path + (f"?{target.query}" if target.query else ""), body, headers)
            answer = upstream.getresponse()
            data = answer.read()
        finally:
            upstream.close()
        self.send_response(answer.status)
        for name, value in answer.getheaders():
            if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_CONNECT = _forward

    def log_message(self, *args: object) -> None:
        pass


class _SocksHandler(socketserver.BaseRequestHandler):
    """A SOCKS5 proxy (no authentication, CONNECT only), to loopback targets only."""

    def handle(self) -> None:
        client = self.request
        _version, count = client.recv(2)
        client.recv(count)
        client.sendall(b"\x05\x00")
        _v, _cmd, _rsv, kind = client.recv(4)
        if kind == 1:
            host = socket.inet_ntoa(client.recv(4))
        elif kind == 3:
            host = client.recv(client.recv(1)[0]).decode()
        else:
            host = socket.inet_ntop(socket.AF_INET6, client.recv(16))
        (port,) = struct.unpack("!H", client.recv(2))
        if not _loopback(host):
            client.sendall(b"\x05\x02\x00\x01\x00\x00\x00\x00\x00\x00")
            return
        upstream = socket.create_connection((host, port), timeout=5)
        client.sendall(b"\x05\x00\x00\x01" + socket.inet_aton("127.0.0.1") + struct.pack("!H", 0))
        seen = self.server.seen  # type: ignore[attr-defined]
        seen.append(b"")
        try:
            while True:
                readable, _, _ = select.select([client, upstream], [], [], 5)
                if not readable:
                    return
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    if sock is client:
                        seen[-1] += data
                        upstream.sendall(data)
                    else:
                        client.sendall(data)
        finally:
            upstream.close()


class _HTTPProxyServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    seen: list[Any]


class _SocksServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    seen: list[Any]


class Proxy:
    """A proxy on 127.0.0.2: `url`, and what passed through it."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        if kind == "http":
            server: _HTTPProxyServer | _SocksServer = _HTTPProxyServer((PROXY_HOST, 0), _ForwardHandler)
        else:
            server = _SocksServer((PROXY_HOST, 0), _SocksHandler)
        server.seen = []
        self._server = server
        self.url = f"{'http' if kind == 'http' else 'socks5'}://{PROXY_HOST}:{server.server_address[1]}"
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def used(self) -> bool:
        return bool(self._server.seen)

    @property
    def saw_token(self) -> bool:
        for entry in self._server.seen:
            if entry[2] if self.kind == "http" else b"authorization:" in entry.lower():
                return True
        return False

    def forget(self) -> None:
        self._server.seen.clear()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
