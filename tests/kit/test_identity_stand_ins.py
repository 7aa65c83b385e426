"""The identity stand-ins themselves: Entra ID over TLS, IMDS, the fake `az`, and what they refuse."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator

import azure.identity
import pytest
import requests
from azure.core.exceptions import ClientAuthenticationError

from azure_ad_token_auth.testing import (
    EntraIdStandIn,
    FakeAzureCli,
    ImdsEndpoint,
    ManagedIdentityEndpoint,
    TokenRegistry,
    patched_environ,
)

pytest.importorskip("trustme")

SCOPE = "https://cognitiveservices.azure.com/.default"
RESOURCE = "https://cognitiveservices.azure.com"


@pytest.fixture(scope="module")
def entra() -> Iterator[EntraIdStandIn]:
    with EntraIdStandIn() as stand_in:
        yield stand_in


def test_entra_serves_only_tls_with_its_own_ca(entra: EntraIdStandIn) -> None:
    assert entra.authority.startswith("https://127.0.0.1:")
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{entra.authority}/{entra.tenant}/v2.0/.well-known/openid-configuration", timeout=5)
    document = requests.get(
        f"{entra.authority}/{entra.tenant}/v2.0/.well-known/openid-configuration", verify=entra.ca_path, timeout=5
    ).json()
    assert document["token_endpoint"] == entra.token_url


@pytest.mark.parametrize(
    ("make", "code"),
    [
        (lambda e, kw: azure.identity.ClientSecretCredential(e.tenant, e.client_id, "wrong", **kw), "AADSTS7000215"),
        (
            lambda e, kw: azure.identity.ClientSecretCredential(e.tenant, "not-our-app", e.client_secret, **kw),
            "AADSTS700016",
        ),
        (
            lambda e, kw: azure.identity.ClientSecretCredential("other-tenant", e.client_id, e.client_secret, **kw),
            "Unable to get authority configuration",
        ),
    ],
    ids=["wrong-secret", "unknown-app", "unknown-tenant"],
)
def test_entra_refuses_what_entra_refuses(entra: EntraIdStandIn, make, code: str) -> None:
    before = entra.calls
    with pytest.raises((ClientAuthenticationError, ValueError), match=code):
        make(entra, entra.credential_kwargs()).get_token(SCOPE)
    assert entra.calls == before


def test_entra_checks_the_certificate_assertion_signature(entra: EntraIdStandIn, tmp_path) -> None:
    import trustme

    other = trustme.CA().issue_cert("intruder.invalid", key_type=trustme.KeyType.RSA)
    path = tmp_path / "other.pem"
    other.private_key_and_cert_chain_pem.write_to_path(str(path))
    before = entra.calls
    with pytest.raises(ClientAuthenticationError, match="AADSTS700027"):
        azure.identity.CertificateCredential(
            entra.tenant, entra.client_id, str(path), **entra.credential_kwargs()
        ).get_token(SCOPE)
    assert entra.calls == before
    assert entra.requests[-1].client_auth == "certificate" and entra.requests[-1].status == 401


def test_entra_records_claims_and_never_secrets(entra: EntraIdStandIn) -> None:
    credential = azure.identity.ClientSecretCredential(
        entra.tenant, entra.client_id, entra.client_secret, **entra.credential_kwargs()
    )
    claims = '{"access_token":{"nbf":{"essential":true,"value":"1700000000"}}}'
    credential.get_token(SCOPE, claims=claims, enable_cae=True)
    record = entra.requests[-1]
    sent = json.loads(record.claims or "null")
    assert sent["access_token"]["nbf"] == {"essential": True, "value": "1700000000"}
    assert sent["access_token"]["xms_cc"] == {"values": ["CP1"]}  # MSAL adds the CAE capability
    assert entra.client_secret not in repr(entra.requests)


def test_imds_requires_the_metadata_header_and_can_have_no_identity() -> None:
    with ImdsEndpoint() as imds:
        assert requests.get(f"{imds.url}?resource={RESOURCE}", timeout=5).status_code == 400
        answer = requests.get(f"{imds.url}?resource={RESOURCE}", headers={"Metadata": "true"}, timeout=5).json()
        assert int(answer["expires_in"]) > 2 * 3600
        assert imds.calls == 1
        imds.assigned = False
        refused = requests.get(f"{imds.url}?resource={RESOURCE}", headers={"Metadata": "true"}, timeout=5)
        assert refused.status_code == 400 and imds.calls == 1


def test_patched_environ_clears_other_identities_and_restores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_CLIENT_SECRET", "outer")
    monkeypatch.setenv("IDENTITY_ENDPOINT", "http://elsewhere.invalid/")
    monkeypatch.delenv("AZURE_POD_IDENTITY_AUTHORITY_HOST", raising=False)
    with ImdsEndpoint() as imds, ManagedIdentityEndpoint() as app_service:
        with patched_environ(imds.env(), {"EXTRA": "1"}) as settings:
            assert os.environ["AZURE_POD_IDENTITY_AUTHORITY_HOST"] == imds.base_url
            assert "AZURE_CLIENT_SECRET" not in os.environ and "IDENTITY_ENDPOINT" not in os.environ
            assert settings == {"AZURE_POD_IDENTITY_AUTHORITY_HOST": imds.base_url, "EXTRA": "1"}
        with app_service.patched_env():
            assert os.environ["IDENTITY_ENDPOINT"] == app_service.url
    assert os.environ["AZURE_CLIENT_SECRET"] == "outer"
    assert os.environ["IDENTITY_ENDPOINT"] == "http://elsewhere.invalid/"
    assert "AZURE_POD_IDENTITY_AUTHORITY_HOST" not in os.environ and "EXTRA" not in os.environ


def test_patched_environ_clears_the_shared_cache_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """Left set, the store would hand one test's `FakeCredential` token to the next."""
    monkeypatch.setenv("AZURE_AD_TOKEN_AUTH_SHARED_CACHE", "1")
    with patched_environ():
        assert "AZURE_AD_TOKEN_AUTH_SHARED_CACHE" not in os.environ
    with patched_environ({"AZURE_AD_TOKEN_AUTH_SHARED_CACHE": "/x"}):
        assert os.environ["AZURE_AD_TOKEN_AUTH_SHARED_CACHE"] == "/x"
    assert os.environ["AZURE_AD_TOKEN_AUTH_SHARED_CACHE"] == "1"


def test_fake_az_answers_counts_and_fails_like_az() -> None:
    registry = TokenRegistry()
    with FakeAzureCli(registry=registry, lifetime=600) as az, az.patched_env():
        run = subprocess.run(
            ["az", "account", "get-access-token", "--output", "json", "--resource", RESOURCE],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert run.returncode == 0, run.stderr
        output = json.loads(run.stdout)
        assert registry.check(output["accessToken"]) == "valid"
        assert (registry.claims(output["accessToken"]) or {})["aud"] == RESOURCE
        assert az.runs == 1 and az.calls == 1
        az.fail_next(stderr="ERROR: AADSTS50076: MFA required\n")
        with pytest.raises(ClientAuthenticationError, match="AADSTS50076"):
            azure.identity.AzureCliCredential().get_token(SCOPE)
        az.logged_in = False
        with pytest.raises(azure.identity.CredentialUnavailableError, match="az login"):
            azure.identity.AzureCliCredential().get_token(SCOPE)
        assert az.runs == 3 and az.calls == 1
        assert az.invocations[0][:2] == ["account", "get-access-token"]


def _post_token(entra: EntraIdStandIn, url: str | None = None, **form: str) -> requests.Response:
    return requests.post(url or entra.token_url, data=form, verify=entra.ca_path, timeout=5)


@pytest.mark.parametrize(
    ("form", "status", "code"),
    [
        ({"grant_type": "password"}, 400, "AADSTS70003"),
        ({"grant_type": "client_credentials"}, 400, "AADSTS700016"),  # no client_id
        ({"client_id": "ours"}, 401, "AADSTS7000218"),  # no client credential
        ({"client_id": "ours", "client_assertion_type": "other", "client_assertion": "x"}, 401, "AADSTS7000218"),
        ({"client_id": "ours", "client_secret": "ours", "scope": "https://x"}, 400, "AADSTS1002012"),
        ({"client_id": "ours", "client_secret": "ours", "scope": f"{SCOPE} https://y/.default"}, 400, "AADSTS1002012"),
    ],
    ids=["grant-type", "no-client-id", "no-credential", "other-assertion-type", "scope-no-default", "two-resources"],
)
def test_entra_token_endpoint_refuses_malformed_requests(
    entra: EntraIdStandIn, form: dict[str, str], status: int, code: str
) -> None:
    form = {"grant_type": "client_credentials", **form}
    form = {k: {"ours": getattr(entra, k, v)}.get(v, v) for k, v in form.items()}  # our app id and secret
    before = entra.calls
    response = _post_token(entra, **form)
    assert response.status_code == status
    assert code in response.json()["error_description"]
    assert entra.calls == before and entra.requests[-1].status == status


def test_entra_answers_other_paths_and_methods_as_entra_does(entra: EntraIdStandIn) -> None:
    other_tenant = entra.token_url.replace(f"/{entra.tenant}/", "/other-tenant/")
    response = _post_token(entra, other_tenant, grant_type="client_credentials")
    assert (response.status_code, response.json()["error"]) == (400, "invalid_tenant")
    assert "AADSTS90002" in response.json()["error_description"]
    assert requests.get(f"{entra.authority}/nowhere", verify=entra.ca_path, timeout=5).status_code == 404
    assert requests.get(entra.token_url, verify=entra.ca_path, timeout=5).status_code == 405


def test_entra_injected_failures_and_refresh_in() -> None:
    with EntraIdStandIn(refresh_in=1800) as entra:
        form = {"grant_type": "client_credentials", "client_id": entra.client_id, "client_secret": entra.client_secret}
        form["scope"] = SCOPE
        entra.fail_next(1, status=400)
        failed = _post_token(entra, **form)
        assert failed.status_code == 400 and "AADSTS50196" in failed.json()["error_description"]
        answer = _post_token(entra, **form).json()
        assert answer["refresh_in"] == 1800 and answer["token_type"] == "Bearer"
        assert entra.calls == 1


def test_entra_env_names_the_kinds_it_knows(entra: EntraIdStandIn) -> None:
    with pytest.raises(ValueError, match="kind must be"):
        entra.env("password")  # type: ignore[arg-type]
