"""The CLI with real azure-identity credentials on the stand-ins: `demo --credential`, `token`."""

from __future__ import annotations

import contextlib
import importlib.util
import json
from collections.abc import Iterator
from typing import Any

import pytest

from azure_ad_token_auth._cli import main
from azure_ad_token_auth._inspect import run_token
from azure_ad_token_auth.testing import EntraIdStandIn, FakeAzureCli, ImdsEndpoint, TokenRegistry, patched_environ

pytest.importorskip("trustme")

COMPLETION = "The food was delicious and the waiter was very attentive and friendly."
SCOPE = "https://cognitiveservices.azure.com/.default"


@pytest.fixture
def openai_settings() -> Iterator[None]:
    """The demo configures openai's module globals; put them back after."""
    if importlib.util.find_spec("openai") is None:
        pytest.skip("the demo needs openai")
    import openai

    names = ["api_key", "api_type", "api_base", "api_version", "requestssession", "azure_endpoint"]
    saved = {name: getattr(openai, name) for name in names if hasattr(openai, name)}
    yield
    for name, value in saved.items():
        setattr(openai, name, value)
    reset = getattr(openai, "_reset_client", None)
    if reset is not None:
        reset()
    else:
        openai.api_requestor._thread_context.__dict__.pop("session", None)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("credential", "named", "counted"),
    [
        ("workload-identity", "WorkloadIdentityCredential", "token requests"),
        ("service-principal", "ClientSecretCredential", "token requests"),
        ("imds", "ManagedIdentityCredential -> IMDS", "IMDS requests"),
        ("cli", "AzureCliCredential", "az runs"),
        ("app-service", "DefaultAzureCredential -> App Service", "managed-identity requests"),
    ],
)
def test_demo_runs_the_completion_through_each_real_credential(
    openai_settings: None, capsys: pytest.CaptureFixture[str], credential: str, named: str, counted: str
) -> None:
    args = ["demo", "--credential", credential, "--requests", "3", "--interval", "0", "--token-lifetime", "60"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert named in out.splitlines()[0]
    assert out.count(COMPLETION) == 3
    assert "3 carried a valid token, 0 did not" in out
    # One token for three requests: the tokens live a minute, far beyond the run.
    assert f"1 credential calls, 1 {counted}" in out


def test_demo_credential_is_for_the_stand_ins_only(openai_settings: None, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["demo", "--credential", "cli", "--endpoint", "https://res.openai.azure.com", "--deployment", "d"]
    assert main(args) == 2
    assert "--credential chooses a loopback stand-in" in capsys.readouterr().err


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
