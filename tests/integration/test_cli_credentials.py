"""The `token` command with real azure-identity credentials on the stand-ins (the demo: test_demo.py)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

import pytest

from azure_ad_token_auth._inspect import run_token
from azure_ad_token_auth.testing import EntraIdStandIn, FakeAzureCli, ImdsEndpoint, TokenRegistry, patched_environ

pytest.importorskip("trustme")

COMPLETION = "The food was delicious and the waiter was very attentive and friendly."
SCOPE = "https://cognitiveservices.azure.com/.default"


@contextlib.contextmanager
def token_stand_in(kind: str) -> Iterator[tuple[Any, TokenRegistry]]:
    registry = TokenRegistry()
    if kind in ("workload-identity", "environment-secret", "environment-certificate", "default"):
        with EntraIdStandIn(registry=registry) as entra:
            env = {
                "workload-identity": "workload-identity",
                "default": "workload-identity",
                "environment-secret": "secret",
                "environment-certificate": "certificate",
            }[kind]
            with entra.patched_env(env):  # type: ignore[arg-type]
                yield entra, registry
    elif kind == "managed-identity":
        with ImdsEndpoint(registry=registry) as imds, imds.patched_env():
            yield imds, registry
    else:
        with FakeAzureCli(registry=registry) as az, az.patched_env():
            yield az, registry


@pytest.mark.parametrize(
    ("kind", "choice", "answered_by"),
    [
        ("workload-identity", "workload-identity", "WorkloadIdentityCredential"),
        ("environment-secret", "environment", "EnvironmentCredential"),
        ("environment-certificate", "environment", "EnvironmentCredential"),
        ("default", "default", "WorkloadIdentityCredential"),
        ("managed-identity", "managed-identity", "ManagedIdentityCredential"),
        ("cli", "cli", "AzureCliCredential"),
    ],
)
def test_token_command_against_each_stand_in(
    capsys: pytest.CaptureFixture[str], kind: str, choice: str, answered_by: str
) -> None:
    with token_stand_in(kind) as (stand_in, registry):
        assert run_token(SCOPE, choice, as_json=True) == 0
        assert stand_in.calls == 1 and registry.issued == 1
    report = json.loads(capsys.readouterr().out)
    assert report["credential"] == answered_by
    assert report["claims"]["aud"] == "https://cognitiveservices.azure.com"
    assert report["format"] == "jwt" and "token" not in report
    if kind == "managed-identity":  # a 24 h IMDS token: MSAL says renew at half-life
        assert report["refresh_on"] is not None


@pytest.mark.parametrize(
    ("authority", "options"),
    [
        ("https://127.0.0.1:8443", {"disable_instance_discovery": True}),
        ("https://localhost:8443", {"disable_instance_discovery": True}),
        ("https://login.contoso.example", {}),
        ("https://login.microsoftonline.com", {}),
        (None, {}),
    ],
)
def test_token_command_skips_instance_discovery_only_for_a_loopback_authority(
    monkeypatch: pytest.MonkeyPatch, authority: str | None, options: dict[str, object]
) -> None:
    """Instance discovery asks login.microsoftonline.com about the authority: pointless only on loopback."""
    import azure.identity

    created: list[dict[str, object]] = []

    class Recorded:
        def __init__(self, **kwargs: object) -> None:
            created.append(kwargs)

        def get_token_info(self, *scopes: str, options: object = None) -> object:
            raise azure.identity.CredentialUnavailableError("recorded only")

    monkeypatch.setattr(azure.identity, "EnvironmentCredential", Recorded)
    with patched_environ({"AZURE_AUTHORITY_HOST": authority} if authority else {}):
        assert run_token(SCOPE, "environment") == 1
    assert created == [options]
