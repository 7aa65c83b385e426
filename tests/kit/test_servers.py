"""Tests for the loopback Azure stand-ins in ``azure_ad_token_auth.testing``."""

from __future__ import annotations

import base64
import hashlib
import importlib
import importlib.util
import json
import os
import re
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import time_machine

from azure_ad_token_auth.testing import AzureOpenAIStandIn, ManagedIdentityEndpoint, TokenRegistry, fingerprint
from azure_ad_token_auth.testing._token_registry import DEFAULT_AUDIENCE, DEFAULT_TENANT

SCOPE = "https://cognitiveservices.azure.com/.default"
RESOURCE = "https://cognitiveservices.azure.com"


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def jwt_part(token: str, index: int) -> dict[str, object]:
    value = json.loads(b64url_decode(token.split(".")[index]))
    assert isinstance(value, dict)
    return value


@pytest.fixture
def registry() -> TokenRegistry:
    return TokenRegistry()


@pytest.fixture
def mi(registry: TokenRegistry) -> Iterator[ManagedIdentityEndpoint]:
    with ManagedIdentityEndpoint(registry=registry, lifetime=1800) as endpoint:
        yield endpoint


@pytest.fixture
def aoai(registry: TokenRegistry) -> Iterator[AzureOpenAIStandIn]:
    """Over https; requests trusts it through REQUESTS_CA_BUNDLE (`patched_env`)."""
    with AzureOpenAIStandIn(registry=registry) as stand_in, stand_in.patched_env():
        yield stand_in


def completions_url(aoai: AzureOpenAIStandIn, deployment: str = "gpt35", *, chat: bool = False) -> str:
    kind = "chat/completions" if chat else "completions"
    return f"{aoai.base_url}/openai/deployments/{deployment}/{kind}?api-version=2024-06-01"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --------------------------------------------------------------------------- TokenRegistry


def test_issued_token_is_jwt_shaped_with_expected_claims(registry: TokenRegistry) -> None:
    before = time.time()
    token, expires_on = registry.issue(600, claims={"xms_cc": ["CP1"]})
    assert re.fullmatch(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+", token)
    assert jwt_part(token, 0) == {"alg": "RS256", "typ": "JWT", "kid": "loopback"}
    claims = jwt_part(token, 1)
    assert claims["aud"] == DEFAULT_AUDIENCE
    assert claims["tid"] == DEFAULT_TENANT
    assert claims["iss"] == f"https://sts.windows.net/{DEFAULT_TENANT}/"
    assert claims["exp"] == expires_on
    assert claims["xms_cc"] == ["CP1"]
    assert claims["sub"] == claims["oid"]
    for name in ("iat", "nbf", "appid", "uti"):
        assert name in claims
    assert int(before + 600) <= expires_on <= int(time.time() + 600)
    assert len(b64url_decode(token.split(".")[2])) == 32
    assert registry.expires_on(token) == expires_on
    assert registry.claims(token) == claims


def test_tokens_are_unique_and_counted(registry: TokenRegistry) -> None:
    tokens = {registry.issue(60, subject="someone", audience="api://x", tenant="t1")[0] for _ in range(20)}
    assert len(tokens) == 20
    assert registry.issued == 20
    claims = jwt_part(next(iter(tokens)), 1)
    assert (claims["sub"], claims["aud"], claims["tid"]) == ("someone", "api://x", "t1")


def test_check_reports_valid_expired_unknown_revoked(registry: TokenRegistry) -> None:
    token, expires_on = registry.issue(100)
    other, _ = registry.issue(100)
    assert registry.check(token) == "valid"
    assert registry.check("not-a-token") == "unknown"
    assert registry.expires_on("not-a-token") is None
    with time_machine.travel(expires_on + 1, tick=False):
        assert registry.check(token) == "expired"
    assert registry.check(token) == "valid"  # the clock is read at every check
    registry.revoke(other)
    assert registry.check(other) == "revoked"
    with pytest.raises(KeyError):
        registry.revoke("never-issued")


def test_fingerprint_is_short_sha256() -> None:
    assert fingerprint("abc") == hashlib.sha256(b"abc").hexdigest()[:8]
    assert re.fullmatch(r"[0-9a-f]{8}", fingerprint("x.y.z"))


# --------------------------------------------------------------------------- ManagedIdentityEndpoint


def test_managed_identity_credential_gets_token_from_endpoint(mi: ManagedIdentityEndpoint) -> None:
    from azure.identity import ManagedIdentityCredential

    with mi.patched_env():
        credential = ManagedIdentityCredential()
        access = credential.get_token(SCOPE)
    assert mi.registry.check(access.token) == "valid"
    assert mi.calls == 1
    assert mi.last_resource == RESOURCE
    assert abs(access.expires_on - (time.time() + 1800)) <= 2
    assert mi.registry.expires_on(access.token) == pytest.approx(access.expires_on, abs=2)
    assert jwt_part(access.token, 1)["aud"] == RESOURCE
    (record,) = mi.requests
    assert record["method"] == "GET"
    assert record["path"] == "/msi/token"
    assert record["query"] == {"api-version": "2019-08-01", "resource": RESOURCE}
    assert record["status"] == 200


def test_default_azure_credential_uses_endpoint(mi: ManagedIdentityEndpoint, monkeypatch: pytest.MonkeyPatch) -> None:
    from azure.identity import DefaultAzureCredential

    # These would otherwise send DefaultAzureCredential elsewhere first.
    monkeypatch.setenv("AZURE_CLIENT_ID", "11111111-1111-1111-1111-111111111111")
    monkeypatch.setenv("AZURE_TENANT_ID", "22222222-2222-2222-2222-222222222222")
    monkeypatch.setenv("AZURE_CLIENT_SECRET", "not-a-secret")
    mi.set_lifetime(900)
    with mi.patched_env():
        credential = DefaultAzureCredential()
        access = credential.get_token(SCOPE)
    assert mi.registry.check(access.token) == "valid"
    assert mi.calls == 1
    assert abs(access.expires_on - (time.time() + 900)) <= 2
    assert "client_id" not in mi.requests[0]["query"]


def test_endpoint_answers_wire_format(mi: ManagedIdentityEndpoint) -> None:
    response = requests.get(
        mi.url,
        params={"api-version": "2019-08-01", "resource": RESOURCE},
        headers={"X-IDENTITY-HEADER": mi.secret},
        timeout=5,
    )
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    payload = response.json()
    assert set(payload) == {"access_token", "expires_on", "resource", "token_type"}
    assert isinstance(payload["expires_on"], str)
    assert int(payload["expires_on"]) == mi.registry.expires_on(payload["access_token"])
    assert payload["resource"] == RESOURCE
    assert payload["token_type"] == "Bearer"


def test_endpoint_refresh_in_is_included_when_set(registry: TokenRegistry) -> None:
    with ManagedIdentityEndpoint(registry=registry, refresh_in=120.7, secret="s3") as endpoint:
        assert endpoint.env() == {"IDENTITY_ENDPOINT": endpoint.url, "IDENTITY_HEADER": "s3"}
        response = requests.get(
            endpoint.url, params={"resource": RESOURCE}, headers={"X-IDENTITY-HEADER": "s3"}, timeout=5
        )
    assert response.json()["refresh_in"] == 120


@pytest.mark.parametrize("headers", [{}, {"X-IDENTITY-HEADER": "wrong"}])
def test_endpoint_rejects_missing_or_wrong_secret(mi: ManagedIdentityEndpoint, headers: dict[str, str]) -> None:
    response = requests.get(mi.url, params={"resource": RESOURCE}, headers=headers, timeout=5)
    assert response.status_code == 401
    assert "access_token" not in response.json()
    assert mi.calls == 0
    assert mi.registry.issued == 0
    assert mi.requests[0]["status"] == 401


def test_endpoint_requires_resource(mi: ManagedIdentityEndpoint) -> None:
    response = requests.get(mi.url, headers={"X-IDENTITY-HEADER": mi.secret}, timeout=5)
    assert response.status_code == 400
    assert mi.calls == 0


def test_endpoint_fail_next_counts_down(mi: ManagedIdentityEndpoint) -> None:
    mi.fail_next(2, status=503)
    statuses = [
        requests.get(
            mi.url, params={"resource": RESOURCE}, headers={"X-IDENTITY-HEADER": mi.secret}, timeout=5
        ).status_code
        for _ in range(3)
    ]
    assert statuses == [503, 503, 200]
    assert mi.calls == 1
    assert [r["status"] for r in mi.requests] == [503, 503, 200]


def test_endpoint_delay(mi: ManagedIdentityEndpoint) -> None:
    mi.set_delay(0.2)
    started = time.perf_counter()
    requests.get(mi.url, params={"resource": RESOURCE}, headers={"X-IDENTITY-HEADER": mi.secret}, timeout=5)
    assert time.perf_counter() - started >= 0.2


def test_patched_env_sets_removes_and_restores(mi: ManagedIdentityEndpoint, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_CLIENT_ID", "client")
    monkeypatch.setenv("MSI_ENDPOINT", "http://example.invalid/msi")
    monkeypatch.setenv("IDENTITY_HEADER", "previous")
    monkeypatch.delenv("IDENTITY_ENDPOINT", raising=False)
    monkeypatch.delenv("AZURE_FEDERATED_TOKEN_FILE", raising=False)
    before = dict(os.environ)
    with mi.patched_env() as env:
        assert env == mi.env()
        assert os.environ["IDENTITY_ENDPOINT"] == mi.url
        assert os.environ["IDENTITY_HEADER"] == mi.secret
        assert "AZURE_CLIENT_ID" not in os.environ
        assert "MSI_ENDPOINT" not in os.environ
    assert dict(os.environ) == before
    with pytest.raises(RuntimeError), mi.patched_env():
        raise RuntimeError("boom")
    assert dict(os.environ) == before


def test_stop_hangs_up_and_start_serves_again(mi: ManagedIdentityEndpoint) -> None:
    url = mi.url
    with requests.Session() as session:
        params = {"resource": RESOURCE}
        headers = {"X-IDENTITY-HEADER": mi.secret}
        assert session.get(url, params=params, headers=headers, timeout=5).status_code == 200
        mi.stop()
        assert not mi.running
        with pytest.raises(RuntimeError):
            _ = mi.url
        with pytest.raises(requests.ConnectionError):
            session.get(url, params=params, headers=headers, timeout=5)
        mi.start()
        assert session.get(mi.url, params=params, headers=headers, timeout=5).status_code == 200
    assert mi.calls == 2


# --------------------------------------------------------------------------- AzureOpenAIStandIn


def test_completion_with_valid_token(aoai: AzureOpenAIStandIn, registry: TokenRegistry) -> None:
    token, _ = registry.issue(600)
    response = requests.post(completions_url(aoai), json={"prompt": "The waiter"}, headers=bearer(token), timeout=5)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    payload = response.json()
    assert payload["object"] == "text_completion"
    assert payload["id"].startswith("cmpl-loopback-")
    assert payload["model"] == "gpt-35-turbo-instruct"
    assert payload["choices"] == [
        {"text": " was very attentive and friendly.", "index": 0, "finish_reason": "stop", "logprobs": None}
    ]
    assert payload["usage"] == {"prompt_tokens": 8, "completion_tokens": 7, "total_tokens": 15}
    (record,) = aoai.requests
    assert record.token_status == "valid"
    assert record.status == 200
    assert record.path == "/openai/deployments/gpt35/completions"
    assert record.query == {"api-version": "2024-06-01"}
    assert json.loads(record.body) == {"prompt": "The waiter"}


def test_chat_and_v1_routes(registry: TokenRegistry) -> None:
    token, _ = registry.issue(600)
    with AzureOpenAIStandIn(registry=registry, completion="hi") as aoai, aoai.patched_env():
        chat = requests.post(
            completions_url(aoai, chat=True), json={"messages": []}, headers=bearer(token), timeout=5
        ).json()
        v1 = requests.post(
            f"{aoai.base_url}/openai/v1/chat/completions",
            json={"model": "gpt-4o", "messages": []},
            headers=bearer(token),
            timeout=5,
        )
        v1_text = requests.post(
            f"{aoai.base_url}/openai/v1/completions",
            json={"model": "x", "prompt": "p"},
            headers=bearer(token),
            timeout=5,
        )
        no_model = requests.post(
            f"{aoai.base_url}/openai/v1/completions", json={"prompt": "p"}, headers=bearer(token), timeout=5
        )
    assert chat["object"] == "chat.completion"
    assert chat["id"].startswith("chatcmpl-loopback-")
    assert chat["choices"][0]["message"] == {"role": "assistant", "content": "hi"}
    assert v1.status_code == 200
    assert v1.json()["object"] == "chat.completion"
    assert v1_text.json()["choices"][0]["text"] == "hi"
    assert no_model.status_code == 400


def test_missing_api_version_or_unknown_route_is_404(aoai: AzureOpenAIStandIn, registry: TokenRegistry) -> None:
    token, _ = registry.issue(600)
    for url in (f"{aoai.base_url}/openai/deployments/d/completions", f"{aoai.base_url}/nope?api-version=1"):
        response = requests.post(url, json={}, headers=bearer(token), timeout=5)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "404"


def test_missing_token_is_401(aoai: AzureOpenAIStandIn) -> None:
    response = requests.post(completions_url(aoai), json={}, timeout=5)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith('Bearer error="invalid_token", error_description="')
    assert response.json()["error"]["message"].startswith("Access denied due to invalid subscription key")
    assert aoai.requests[0].token_status == "missing"
    assert aoai.requests[0].token_fingerprint is None


def test_unknown_revoked_and_expired_tokens_are_401(aoai: AzureOpenAIStandIn, registry: TokenRegistry) -> None:
    revoked, _ = registry.issue(600)
    registry.revoke(revoked)
    expiring, expires_on = registry.issue(60)
    unknown = TokenRegistry().issue(600)[0]
    for token in (unknown, revoked):
        response = requests.post(completions_url(aoai), json={}, headers=bearer(token), timeout=5)
        assert response.status_code == 401
        assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
        assert response.json()["error"]["message"].startswith("Unauthorized. Access token is missing")
    assert requests.post(completions_url(aoai), json={}, headers=bearer(expiring), timeout=5).status_code == 200
    with time_machine.travel(expires_on + 5, tick=True):
        response = requests.post(completions_url(aoai), json={}, headers=bearer(expiring), timeout=5)
    assert response.status_code == 401
    assert [r.token_status for r in aoai.requests] == ["unknown", "revoked", "valid", "expired"]
    assert [r.status for r in aoai.requests] == [401, 401, 200, 401]


def test_require_token_false_accepts_anything(registry: TokenRegistry) -> None:
    with AzureOpenAIStandIn(registry=registry, require_token=False) as aoai, aoai.patched_env():
        response = requests.post(completions_url(aoai), json={}, timeout=5)
    assert response.status_code == 200
    assert aoai.requests[0].token_status == "missing"


def test_records_never_hold_the_token(aoai: AzureOpenAIStandIn, registry: TokenRegistry) -> None:
    token, _ = registry.issue(600)
    requests.post(
        completions_url(aoai), json={}, headers={"authorization": f"Bearer {token}", "api-key": "k"}, timeout=5
    )
    requests.post(completions_url(aoai), json={}, headers={"AUTHORIZATION": f"bearer {token}"}, timeout=5)
    assert aoai.count == 2
    for record in aoai.requests:
        assert record.headers["authorization"] == "<redacted>"
        assert all(name == name.lower() for name in record.headers)
        assert token not in repr(record)
        assert record.token_fingerprint == fingerprint(token)
        assert record.token_status == "valid"
        assert record.status == 200
    assert aoai.requests[0].headers["api-key"] == "<redacted>"


def test_challenge_next_sends_decodable_claims(aoai: AzureOpenAIStandIn, registry: TokenRegistry) -> None:
    token, _ = registry.issue(600)
    claims = '{"access_token":{"nbf":{"essential":true,"value":"1726077595"}}}'
    aoai.challenge_next(claims)
    first = requests.post(completions_url(aoai), json={}, headers=bearer(token), timeout=5)
    second = requests.post(completions_url(aoai), json={}, headers=bearer(token), timeout=5)
    assert first.status_code == 401
    header = first.headers["WWW-Authenticate"]
    assert header.startswith("Bearer ")
    assert 'error="insufficient_claims"' in header
    assert 'authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize"' in header
    match = re.search(r'claims="([^"]*)"', header)
    assert match is not None
    encoded = match.group(1)
    assert "=" not in encoded
    assert b64url_decode(encoded).decode() == claims
    assert second.status_code == 200
    assert aoai.requests[0].token_status == "valid"
    assert aoai.requests[0].status == 401


def test_fail_next_counts_down_and_queues_in_order(aoai: AzureOpenAIStandIn, registry: TokenRegistry) -> None:
    token, _ = registry.issue(600)
    aoai.fail_next(count=2, status=429, headers={"Retry-After": "0"}, body={"error": {"code": "429"}})
    aoai.fail_next()
    responses = [requests.post(completions_url(aoai), json={}, headers=bearer(token), timeout=5) for _ in range(4)]
    assert [r.status_code for r in responses] == [429, 429, 401, 200]
    assert responses[0].headers["Retry-After"] == "0"
    assert responses[0].json() == {"error": {"code": "429"}}
    assert 'error="invalid_token"' in responses[2].headers["WWW-Authenticate"]
    assert [r.status for r in aoai.requests] == [429, 429, 401, 200]
    aoai.fail_next(5, status=500)
    aoai.reset()
    assert aoai.count == 0
    assert requests.post(completions_url(aoai), json={}, headers=bearer(token), timeout=5).status_code == 200


def test_redirect_next(aoai: AzureOpenAIStandIn, registry: TokenRegistry) -> None:
    token, _ = registry.issue(600)
    aoai.redirect_next("/echo", status=308)
    response = requests.post(
        completions_url(aoai), data=b"abc", headers=bearer(token), timeout=5, allow_redirects=False
    )
    assert response.status_code == 308
    assert response.headers["Location"] == "/echo"
    assert requests.post(completions_url(aoai), json={}, headers=bearer(token), timeout=5).status_code == 200


def test_echo_reports_body_intact_including_chunked(aoai: AzureOpenAIStandIn, registry: TokenRegistry) -> None:
    token, _ = registry.issue(600)
    body = os.urandom(70_000)
    plain = requests.put(f"{aoai.base_url}/echo?x=1", data=body, headers=bearer(token), timeout=5).json()
    assert plain == {
        "method": "PUT",
        "path": "/echo",
        "query": {"x": "1"},
        "body_length": len(body),
        "body_sha256": hashlib.sha256(body).hexdigest(),
        "token_status": "valid",
    }
    chunked = requests.post(
        f"{aoai.base_url}/echo", data=iter([body[:1000], body[1000:]]), headers=bearer(token), timeout=5
    )
    assert aoai.requests[-1].headers.get("transfer-encoding") == "chunked"
    assert chunked.json()["body_sha256"] == hashlib.sha256(body).hexdigest()
    assert requests.get(f"{aoai.base_url}/echo", timeout=5).status_code == 401


def test_burst_of_concurrent_requests(aoai: AzureOpenAIStandIn, registry: TokenRegistry) -> None:
    token, _ = registry.issue(600)
    statuses: list[int] = []
    lock = threading.Lock()
    barrier = threading.Barrier(64)

    durations: list[float] = []

    def call() -> None:
        barrier.wait()
        started = time.perf_counter()
        status = requests.post(completions_url(aoai), json={}, headers=bearer(token), timeout=10).status_code
        with lock:
            statuses.append(status)
            durations.append(time.perf_counter() - started)

    threads = [threading.Thread(target=call) for _ in range(64)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [200] * 64
    # A listen backlog of 5 would overflow here (a dropped SYN, retried after 1 s); the
    # time it costs belongs in the benchmark, the setting that prevents it is checked here.
    assert aoai._server is not None and aoai._server.request_queue_size >= 64
    assert aoai.count == 64
    assert {r.token_status for r in aoai.requests} == {"valid"}


def test_keep_alive_connections_are_reused_without_nagle(aoai: AzureOpenAIStandIn, registry: TokenRegistry) -> None:
    # With Nagle's algorithm on, each keep-alive response arrives ~20-40 ms late; the
    # delay is measured by the benchmark, the handler setting that avoids it is checked here.
    token, _ = registry.issue(600)
    with requests.Session() as session:
        ports = set()
        for _ in range(5):
            response = session.post(completions_url(aoai), json={"p": 1}, headers=bearer(token), timeout=5, stream=True)
            ports.add(response.raw._connection.sock.getsockname()[1])  # type: ignore[union-attr]
            response.content
    assert len(ports) == 1  # one connection, kept alive
    handler: Any = aoai._server and aoai._server.RequestHandlerClass
    assert handler is not None and handler.disable_nagle_algorithm is True


def _raw(service: Any, request: bytes) -> bytes:
    """Send `request` as is on a new connection and return all the server answered until it hung up."""
    import socket

    with socket.create_connection(("127.0.0.1", service.port), timeout=5) as plain:
        sock = service.ssl_context().wrap_socket(plain, server_hostname="127.0.0.1") if service.tls else plain
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_stand_ins_read_chunked_bodies(aoai: AzureOpenAIStandIn) -> None:
    def body() -> Iterator[bytes]:
        yield b"hello "
        yield b"world"

    assert requests.post(f"{aoai.base_url}/echo", data=body(), timeout=5).status_code == 401  # no token: read anyway
    assert aoai.requests[-1].body == b"hello world"


@pytest.mark.parametrize(
    "framing",
    [
        b"Transfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"Content-Length: nope\r\n\r\n",
        b"Content-Length: -5\r\n\r\n",
    ],
    ids=["bad-chunk-size", "bad-length", "negative-length"],
)
def test_stand_ins_answer_a_malformed_body_with_400_and_hang_up(aoai: AzureOpenAIStandIn, framing: bytes) -> None:
    before = len(aoai.requests)
    answer = _raw(aoai, b"POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n" + framing)
    assert answer.startswith(b"HTTP/1.1 400 ") or answer.startswith(b"HTTP/1.0 400 ")
    assert len(aoai.requests) == before  # never reached the stand-in


# --------------------------------------------------------------------------- TLS


def test_the_openai_stand_in_serves_https_that_clients_trust_through_its_env(registry: TokenRegistry) -> None:
    """requests (REQUESTS_CA_BUNDLE), httpx and httpx2 (SSL_CERT_FILE): made inside the block."""
    token, _ = registry.issue(600)
    with AzureOpenAIStandIn(registry=registry) as aoai:
        assert aoai.tls and aoai.base_url == f"https://127.0.0.1:{aoai.port}"
        url = f"{aoai.base_url}/echo"
        with pytest.raises(requests.exceptions.SSLError):  # a real certificate check: untrusted outside
            requests.get(url, headers=bearer(token), timeout=5)
        before = {name: os.environ.get(name) for name in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE")}
        with aoai.patched_env():
            assert os.environ["SSL_CERT_FILE"] == os.environ["REQUESTS_CA_BUNDLE"] == aoai.ca_path
            assert os.environ["AZURE_OPENAI_ENDPOINT"] == aoai.base_url
            statuses = [requests.get(url, headers=bearer(token), timeout=5).status_code]
            for name in ("httpx", "httpx2"):
                if importlib.util.find_spec(name) is not None:
                    with importlib.import_module(name).Client() as client:
                        statuses.append(client.get(url, headers=bearer(token)).status_code)
        assert {name: os.environ.get(name) for name in before} == before
    clients = 1 + sum(importlib.util.find_spec(name) is not None for name in ("httpx", "httpx2"))
    assert set(statuses) == {200} and len(statuses) == clients
    assert {r.token_status for r in aoai.requests} == {"valid"}


async def test_aiohttp_trusts_the_stand_in_through_its_ssl_context(registry: TokenRegistry) -> None:
    """aiohttp reads the environment's CA paths when it is imported: `ssl=` names the CA."""
    aiohttp = pytest.importorskip("aiohttp")
    token, _ = registry.issue(600)
    with AzureOpenAIStandIn(registry=registry) as aoai:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{aoai.base_url}/echo", headers=bearer(token), ssl=aoai.ssl_context()) as response:
                assert response.status == 200
            # A context of the default trust store, made now: aiohttp's own was made at its import,
            # which another test may have run while SSL_CERT_FILE named the kit's CA.
            with pytest.raises(aiohttp.ClientConnectorCertificateError):
                await session.get(f"{aoai.base_url}/echo", ssl=ssl.create_default_context())
    assert [r.token_status for r in aoai.requests] == ["valid"]


def test_patched_env_touches_only_its_own_variables(registry: TokenRegistry, monkeypatch: pytest.MonkeyPatch) -> None:
    """A managed-identity stand-in's variables, set before, stay: the two fixtures combine."""
    monkeypatch.setenv("IDENTITY_ENDPOINT", "http://127.0.0.1:9/msi/token")
    monkeypatch.setenv("SSL_CERT_FILE", "/the/machine/bundle.pem")
    with AzureOpenAIStandIn(registry=registry) as aoai:
        with aoai.patched_env():
            assert os.environ["IDENTITY_ENDPOINT"] == "http://127.0.0.1:9/msi/token"
            assert os.environ["SSL_CERT_FILE"] == aoai.ca_path
        assert os.environ["SSL_CERT_FILE"] == "/the/machine/bundle.pem"


def test_every_tls_stand_in_of_a_process_has_one_ca(registry: TokenRegistry) -> None:
    pytest.importorskip("trustme")
    from azure_ad_token_auth.testing import EntraIdStandIn

    with AzureOpenAIStandIn(registry=registry) as first, AzureOpenAIStandIn(registry=registry) as second:
        entra = EntraIdStandIn(registry=registry)
        assert first.ca_path == second.ca_path == entra.ca_path
        with open(first.ca_path, encoding="ascii") as pem:
            assert pem.read().startswith("-----BEGIN CERTIFICATE-----")


def test_a_plain_http_stand_in_is_asked_for_and_has_no_ca(registry: TokenRegistry) -> None:
    with AzureOpenAIStandIn(registry=registry, tls=False) as aoai:
        assert not aoai.tls and aoai.base_url == f"http://127.0.0.1:{aoai.port}"
        assert aoai.env() == {"AZURE_OPENAI_ENDPOINT": aoai.base_url}
        assert requests.get(f"{aoai.base_url}/echo", timeout=5).status_code == 401
        with pytest.raises(RuntimeError, match="plain http"):
            aoai.ca_path
        with pytest.raises(RuntimeError, match="tls=False"):
            aoai.ssl_context()


def test_without_trustme_a_tls_stand_in_names_the_extra_and_tls_false(tmp_path: Path) -> None:
    from conftest import child_pythonpath

    (tmp_path / "trustme.py").write_text("raise ModuleNotFoundError(\"No module named 'trustme'\", name='trustme')\n")
    code = (
        "from azure_ad_token_auth.testing import AzureOpenAIStandIn\n"
        "try:\n"
        "    AzureOpenAIStandIn()\n"
        "except ImportError as error:\n"
        "    print(error.name, '|', error)\n"
    )
    src = str(Path(__file__).resolve().parents[2] / "src")
    env = {**os.environ, "PYTHONPATH": child_pythonpath(str(tmp_path), src)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    name, _, message = result.stdout.partition(" | ")
    assert name == "trustme"
    assert 'pip install "azure-ad-token-auth[testing]"' in message and "tls=False" in message


def test_a_stand_in_that_raises_answers_500_and_keeps_serving() -> None:
    from azure_ad_token_auth.testing._http import _LoopbackService, _Request, _Response

    class Flaky(_LoopbackService):
        calls = 0

        def _handle(self, request: _Request) -> _Response:
            Flaky.calls += 1
            if Flaky.calls == 1:
                raise RuntimeError("boom")
            return _Response.of_json(200, {"ok": True})

    with Flaky() as service:
        assert service.start() is service  # already running: a no-op
        first = requests.get(f"{service.base_url}/x", timeout=5)
        assert first.status_code == 500 and "boom" in first.json()["error"]["message"]
        assert requests.get(f"{service.base_url}/x", timeout=5).json() == {"ok": True}
    service.stop()  # already stopped: a no-op
    with pytest.raises(RuntimeError):
        service.base_url


def test_fail_next_needs_a_positive_count(aoai: AzureOpenAIStandIn) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        aoai.fail_next(0)


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("DELETE", "/echo", b"", 405),
        ("POST", "/openai/deployments/gpt35/completions", b"{}", 404),  # no api-version
        ("POST", "/openai/deployments/gpt35/embeddings?api-version=1", b"{}", 404),
        ("POST", "/openai/elsewhere", b"{}", 404),
        ("GET", "/openai/deployments/gpt35/completions?api-version=1", b"", 405),
        ("POST", "/openai/deployments/gpt35/completions?api-version=1", b"{not json", 400),
    ],
)
def test_openai_stand_in_answers_wrong_routes_methods_and_bodies_as_azure_does(
    aoai: AzureOpenAIStandIn, registry: TokenRegistry, method: str, path: str, body: bytes, status: int
) -> None:
    token, _ = registry.issue(600)
    response = requests.request(method, f"{aoai.base_url}{path}", data=body, headers=bearer(token), timeout=5)
    assert response.status_code == status
    assert response.json()["error"]["code"] == str(status)


def test_identity_endpoint_answers_wrong_paths_methods_and_plain_text_faults(mi: ManagedIdentityEndpoint) -> None:
    headers = {"X-IDENTITY-HEADER": mi.secret}
    assert requests.get(f"{mi.base_url}/elsewhere", headers=headers, timeout=5).status_code == 404
    assert requests.post(mi.url, headers=headers, timeout=5).status_code == 405
    mi.fail_next(1, status=503, body="upstream down")
    fault = requests.get(mi.url, params={"resource": "https://x"}, headers=headers, timeout=5)
    assert (fault.status_code, fault.text) == (503, "upstream down")
    assert fault.headers["Content-Type"].startswith("text/plain")


def test_fake_az_refuses_what_az_would(registry: TokenRegistry) -> None:
    from azure_ad_token_auth.testing import FakeAzureCli

    with FakeAzureCli(registry=registry) as az:
        url = f"{az.base_url}/az"
        assert requests.get(url, timeout=5).status_code == 404
        assert requests.post(url, json={"not": "a list"}, timeout=5).status_code == 400
        unknown = requests.post(url, json=["group", "list"], timeout=5).json()
        assert unknown["exit"] == 2 and "knows only" in unknown["stderr"]
        no_resource = requests.post(url, json=["account", "get-access-token"], timeout=5).json()
        assert no_resource["exit"] == 2 and "--resource or --scope" in no_resource["stderr"]
        assert az.calls == 0


def test_patched_environ_keeps_loopback_off_an_inherited_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    from azure_ad_token_auth.testing import patched_environ

    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    monkeypatch.setenv("NO_PROXY", "example.com")
    monkeypatch.delenv("no_proxy", raising=False)
    with patched_environ({"IDENTITY_HEADER": "h"}):
        assert os.environ["NO_PROXY"] == "example.com,127.0.0.1"
        assert os.environ["no_proxy"] == "127.0.0.1"
    assert os.environ["NO_PROXY"] == "example.com" and "no_proxy" not in os.environ
