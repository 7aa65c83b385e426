"""The requests adapter against a real loopback server: headers, 401s, bodies, redirects, hosts.

`server` is the https stand-in here, trusted through `REQUESTS_CA_BUNDLE` (its `patched_env`).
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator

import pytest
import requests

from azure_ad_token_auth import AzureADTokenAuth, InsecureTransportError, TokenRefresh
from azure_ad_token_auth.testing import AzureOpenAIStandIn, FakeCredential, TokenRegistry, fingerprint
from conftest import echo

SCOPE = "https://cognitiveservices.azure.com/.default"


@pytest.fixture
def server(https_server: AzureOpenAIStandIn) -> Iterator[AzureOpenAIStandIn]:
    with https_server.patched_env():
        yield https_server


def test_cookbook_usage_unchanged(server, cred) -> None:
    # The cookbook's lines, with only the import changed.
    session = requests.Session()
    session.auth = TokenRefresh(cred, ["https://cognitiveservices.azure.com/.default"])
    for _ in range(20):
        assert session.post(echo(server), data=b"x").status_code == 200
    assert cred.calls == 1
    assert {r.token_fingerprint for r in server.requests} == {fingerprint(cred.tokens[0])}
    assert issubclass(TokenRefresh, AzureADTokenAuth)


def test_credential_error_sends_nothing(server) -> None:
    from azure.core.exceptions import ClientAuthenticationError

    fake = FakeCredential(fail=ClientAuthenticationError("DefaultAzureCredential failed"))
    with pytest.raises(ClientAuthenticationError):
        requests.post(echo(server), auth=AzureADTokenAuth(fake), timeout=5)
    assert server.count == 0


def test_garbage_token_sends_nothing(server) -> None:
    from azure_ad_token_auth import InvalidTokenError

    with pytest.raises(InvalidTokenError, match="FakeCredential"):
        requests.post(echo(server), auth=AzureADTokenAuth(FakeCredential(result=lambda: None)), timeout=5)
    assert server.count == 0


def test_401_resends_a_seekable_file_from_where_it_started(server, cred) -> None:
    stream = io.BytesIO(b"HEADER-not-sent|" + b"file body " * 500)
    stream.seek(len(b"HEADER-not-sent|"))
    server.fail_next(1, status=401)
    response = requests.post(echo(server), data=stream, auth=AzureADTokenAuth(cred), timeout=5)
    assert response.status_code == 200
    assert response.json()["body_sha256"] == hashlib.sha256(b"file body " * 500).hexdigest()
    assert [r.body for r in server.requests][1] == b"file body " * 500


@pytest.mark.parametrize("host", ["127.1.2.3", "[::1]", "localhost"])
def test_plain_http_to_loopback_gets_the_token_only_with_allow_http(cred, host: str) -> None:
    # localhost and 127.0.0.1, sent for real: tests/adapters/test_adapters.py. Prepared only here.
    request = requests.Request("GET", f"http://{host}:8080/").prepare()
    with pytest.raises(InsecureTransportError, match="allow_http=True"):
        AzureADTokenAuth(cred)(request)
    assert "Authorization" not in request.headers and cred.calls == 0
    prepared = AzureADTokenAuth(cred, allow_http=True)(request)
    assert prepared.headers["Authorization"] == "Bearer " + cred.tokens[0]


def test_a_request_with_no_url_is_refused_saying_so(cred) -> None:
    with pytest.raises(InsecureTransportError, match="the request has no URL"):
        AzureADTokenAuth(cred)(requests.PreparedRequest())
    assert cred.calls == 0


@pytest.fixture
def sets_a_cookie_on_401() -> Iterator[tuple[str, list[tuple[str | None, str | None]]]]:
    """A plain-http loopback server answering its first request 401 with a `Set-Cookie` (a
    load balancer's affinity), the rest 200; records each request's (Cookie, Authorization)."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    seen: list[tuple[str | None, str | None]] = []

    class Handler(BaseHTTPRequestHandler):
        disable_nagle_algorithm = True

        def do_POST(self) -> None:
            seen.append((self.headers.get("Cookie"), self.headers.get("Authorization")))
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.send_response(401 if len(seen) == 1 else 200)
            if len(seen) == 1:
                self.send_header("Set-Cookie", "affinity=node-2; Path=/")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/openai", seen
    finally:
        server.shutdown()
        server.server_close()


def test_a_cookie_the_401_sets_goes_on_the_resend(sets_a_cookie_on_401, cred) -> None:
    url, seen = sets_a_cookie_on_401
    response = requests.post(url, data=b"x", auth=AzureADTokenAuth(cred, allow_http=True), timeout=5)
    assert (response.status_code, [r.status_code for r in response.history]) == (200, [401])
    first, renewed = ("Bearer " + token for token in cred.tokens)
    assert seen == [(None, first), ("affinity=node-2", renewed)]


def test_cookies_the_request_carried_go_on_the_resend_unchanged(sets_a_cookie_on_401, cred) -> None:
    # As requests' own digest auth: cookielib leaves a Cookie header that is there already.
    url, seen = sets_a_cookie_on_401
    with requests.Session() as session:
        session.cookies.set("user", "u-1")
        response = session.post(url, data=b"x", auth=AzureADTokenAuth(cred, allow_http=True), timeout=5)
    assert response.status_code == 200
    assert [cookie for cookie, _ in seen] == ["user=u-1", "user=u-1"]


@pytest.fixture
def https_redirector(tmp_path):
    """A TLS server on loopback (self-signed) that answers every request with a 307 to `target`."""
    import datetime
    import ssl
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from ipaddress import ip_address

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ip_address("127.0.0.1"))]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    seen: list[str | None] = []

    class Redirect(BaseHTTPRequestHandler):
        target = ""

        def do_POST(self) -> None:
            seen.append(self.headers.get("Authorization"))
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.send_response(307)
            self.send_header("Location", self.target)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server, Redirect, str(cert_file), seen
    finally:
        server.shutdown()
        server.server_close()


def test_https_to_http_redirect_strips_the_token(https_redirector, registry: TokenRegistry, cred) -> None:
    tls, handler, ca_file, seen = https_redirector
    with AzureOpenAIStandIn(registry=registry, tls=False) as plain:
        handler.target = echo(plain)  # same host (127.0.0.1), but plain http
        url = f"https://127.0.0.1:{tls.server_address[1]}/openai"
        response = requests.post(url, data=b"x", auth=AzureADTokenAuth(cred), verify=ca_file, timeout=5)
    # The http hop answers 401 (no token): the 401 hook must not add one back and resend.
    assert response.status_code == 401
    assert seen == ["Bearer " + cred.tokens[0]]  # the https hop carried it
    assert [r.token_status for r in plain.requests] == ["missing"]  # the http hop did not
    assert cred.calls == 1
    assert [r.status_code for r in response.history] == [307]


def test_host_decisions_are_remembered_but_refusals_are_not(cred) -> None:
    auth = AzureADTokenAuth(cred, allowed_hosts=["127.0.0.1"])
    for _ in range(3):  # a refusal is never cached as an allowance
        with pytest.raises(InsecureTransportError):
            auth(requests.Request("GET", "http://127.0.0.1:9/x").prepare())
    for path in ("/a", "/b?q=1"):
        prepared = auth(requests.Request("GET", f"https://127.0.0.1:9{path}").prepare())
        assert prepared.headers["Authorization"] == "Bearer " + cred.tokens[0]
    # A query right after the authority is not mistaken for part of the host.
    prepared = auth(requests.Request("GET", "https://evil.example?127.0.0.1").prepare())
    assert "Authorization" not in prepared.headers


def test_adapters_built_apart_share_one_cache_per_credential_and_settings(server, cred) -> None:
    from azure_ad_token_auth import token_provider

    # Built per request (a common slip) or for different clients: still one cache.
    for _ in range(5):
        assert requests.post(echo(server), data=b"x", auth=AzureADTokenAuth(cred), timeout=5).ok
    assert token_provider(cred)() == cred.tokens[0]
    assert AzureADTokenAuth(cred).cache is AzureADTokenAuth(cred, [SCOPE]).cache
    assert cred.calls == 1
    # Different settings or a different credential: a cache of their own.
    assert AzureADTokenAuth(cred, refresh_margin=60).cache is not AzureADTokenAuth(cred).cache
    assert AzureADTokenAuth(cred, "https://other/.default").cache is not AzureADTokenAuth(cred).cache
    assert AzureADTokenAuth(FakeCredential()).cache is not AzureADTokenAuth(cred).cache


def test_a_shared_cache_goes_when_no_adapter_uses_it() -> None:
    import gc
    import weakref

    credential = FakeCredential()
    auth = AzureADTokenAuth(credential)
    cache = weakref.ref(auth.cache)
    del auth, credential
    gc.collect()
    assert cache() is None
