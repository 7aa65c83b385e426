"""The Blob Storage stand-in itself: TLS with its own CA, Storage's answers, token checks."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import pytest
import requests

from azure_ad_token_auth.testing import BlobStorageStandIn, FakeCredential, TokenRegistry

pytest.importorskip("trustme")


@pytest.fixture
def storage() -> Iterator[BlobStorageStandIn]:
    with BlobStorageStandIn() as stand_in:
        yield stand_in


class _Session(requests.Session):
    """Trusts the stand-in's CA whatever `REQUESTS_CA_BUNDLE` says (it wins over `session.verify`)."""

    def __init__(self, storage: BlobStorageStandIn, token: str | None) -> None:
        super().__init__()
        self.ca_path = storage.ca_path
        if token is not None:
            self.headers["Authorization"] = f"Bearer {token}"

    def request(self, *args, **kwargs):  # type: ignore[no-untyped-def, override]
        kwargs["verify"] = self.ca_path
        return super().request(*args, **kwargs)


def _session(storage: BlobStorageStandIn, token: str | None) -> requests.Session:
    return _Session(storage, token)


def test_it_serves_only_tls_with_its_own_ca(storage: BlobStorageStandIn) -> None:
    assert storage.account_url.startswith("https://127.0.0.1:") and storage.account_url.endswith("/devstoreaccount1")
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{storage.account_url}/c/b", timeout=5)


def test_blobs_go_up_and_come_down_with_a_valid_token(storage: BlobStorageStandIn) -> None:
    token = FakeCredential(registry=storage.registry).get_token("https://storage.azure.com/.default").token
    session = _session(storage, token)
    url = f"{storage.account_url}/reports/today.txt"
    assert session.put(url, data=b"0123456789", headers={"x-ms-blob-type": "BlockBlob"}).status_code == 201
    assert storage.blob("reports", "today.txt") == b"0123456789"
    whole = session.get(url)
    assert (whole.status_code, whole.content) == (200, b"0123456789")
    part = session.get(url, headers={"x-ms-range": "bytes=2-4"})
    assert (part.status_code, part.content, part.headers["Content-Range"]) == (206, b"234", "bytes 2-4/10")
    assert session.head(url).headers["x-ms-blob-type"] == "BlockBlob"
    assert session.delete(url).status_code == 202
    assert session.get(url).headers["x-ms-error-code"] == "BlobNotFound"
    assert {r.token_status for r in storage.requests} == {"valid"}
    assert token not in repr(storage.requests) and all(
        r.headers["authorization"] == "<redacted>" for r in storage.requests
    )


@pytest.mark.parametrize("kind", ["missing", "unknown", "expired", "wrong-audience"])
def test_a_request_without_a_valid_token_gets_storages_challenge(storage: BlobStorageStandIn, kind: str) -> None:
    token = {
        "missing": None,
        "unknown": "not.issued.here",
        "expired": storage.registry.issue(-1, audience="https://storage.azure.com")[0],
        # Valid, but for Azure OpenAI: real Storage refuses it (audience validation failed).
        "wrong-audience": storage.registry.issue(3600, audience="https://cognitiveservices.azure.com")[0],
    }[kind]
    answer = _session(storage, token).get(f"{storage.account_url}/c/b")
    assert answer.status_code == 401
    code = "NoAuthenticationInformation" if kind == "missing" else "InvalidAuthenticationInfo"
    assert answer.headers["x-ms-error-code"] == code
    assert ("Audience validation failed" in answer.text) is (kind == "wrong-audience")
    assert answer.headers["WWW-Authenticate"] == (
        f"Bearer authorization_uri=https://login.microsoftonline.com/{storage.tenant}/oauth2/authorize "
        "resource_id=https://storage.azure.com"
    )
    assert [r.token_status for r in storage.requests] == [kind]


def test_a_token_for_storage_is_accepted_with_or_without_the_trailing_slash(storage: BlobStorageStandIn) -> None:
    for audience in ("https://storage.azure.com", "https://storage.azure.com/"):
        token = storage.registry.issue(3600, audience=audience)[0]
        assert _session(storage, token).get(f"{storage.account_url}/c/b").headers["x-ms-error-code"] == "BlobNotFound"
    assert [r.token_status for r in storage.requests] == ["valid", "valid"]


def test_a_revoked_token_and_challenge_next_get_a_cae_claims_challenge() -> None:
    registry = TokenRegistry()
    with BlobStorageStandIn(registry=registry) as storage:
        token, _ = registry.issue(3600, audience="https://storage.azure.com")
        session = _session(storage, token)
        storage.challenge_next('{"access_token":{"acrs":{"essential":true}}}')
        challenged = session.get(f"{storage.account_url}/c/b")
        registry.revoke(token)
        revoked = session.get(f"{storage.account_url}/c/b")
    for answer in (challenged, revoked):
        assert answer.status_code == 401 and 'error="insufficient_claims"' in answer.headers["WWW-Authenticate"]
    claims = revoked.headers["WWW-Authenticate"].split('claims="')[1].rstrip('"')
    decoded = json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))
    assert decoded["access_token"]["nbf"]["essential"] is True
    assert [r.token_status for r in storage.requests] == ["valid", "revoked"]
