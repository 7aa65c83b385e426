"""`azure-ad-token-auth token`: real azure-identity credentials against the loopback managed identity."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path

import pytest
import time_machine
from azure.core.exceptions import ClientAuthenticationError

from azure_ad_token_auth import TokenCache, fingerprint
from azure_ad_token_auth._advice import explain_failure
from azure_ad_token_auth._cli import main
from azure_ad_token_auth._inspect import Acquired, build_report, decode_claims, render_table
from azure_ad_token_auth.testing import FakeCredential, ManagedIdentityEndpoint, TokenRegistry
from azure_ad_token_auth.testing._token_registry import (
    DEFAULT_APP_ID,
    DEFAULT_AUDIENCE,
    DEFAULT_SUBJECT,
    DEFAULT_TENANT,
)
from conftest import child_pythonpath

SRC = Path(__file__).resolve().parents[2] / "src"
LIFETIME = 1800  # 30 min: the cache plans its renewal 5 min before expiry


class RecordingRegistry(TokenRegistry):
    """A registry that remembers the tokens it issued, so a test can look for leaks."""

    def __init__(self) -> None:
        super().__init__()
        self.tokens: list[str] = []

    def issue(self, lifetime: float, **kwargs: object) -> tuple[str, int]:  # type: ignore[override]
        token, expires_on = super().issue(lifetime, **kwargs)  # type: ignore[arg-type]
        self.tokens.append(token)
        return token, expires_on


def local(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=timezone.utc).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


def line(text: str, label: str) -> str:
    (found,) = [row for row in text.splitlines() if row.startswith(label)]
    return found


@pytest.fixture
def identity() -> Iterator[ManagedIdentityEndpoint]:
    with ManagedIdentityEndpoint(registry=RecordingRegistry(), lifetime=LIFETIME) as endpoint, endpoint.patched_env():
        yield endpoint


@pytest.fixture
def mi(clock: time_machine.Traveller, identity: ManagedIdentityEndpoint) -> ManagedIdentityEndpoint:
    """The endpoint, with the wall clock frozen so expiries are exact."""
    return identity


def issued(mi: ManagedIdentityEndpoint) -> list[str]:
    registry = mi.registry
    assert isinstance(registry, RecordingRegistry)
    return registry.tokens


@pytest.mark.parametrize("credential", ["managed-identity", "default"])
def test_table_names_the_credential_claims_and_expiry(
    mi: ManagedIdentityEndpoint, capsys: pytest.CaptureFixture[str], credential: str
) -> None:
    assert main(["token", "--credential", credential]) == 0
    out, err = capsys.readouterr()
    (token,) = issued(mi)
    expires_on = mi.registry.expires_on(token)
    assert expires_on is not None
    assert line(out, "Credential").split()[1] == "ManagedIdentityCredential"
    if credential == "default":
        assert "DefaultAzureCredential > ManagedIdentityCredential" in line(out, "Credential")
    assert DEFAULT_AUDIENCE in line(out, "Audience")
    assert DEFAULT_TENANT in line(out, "Tenant")
    assert DEFAULT_SUBJECT in line(out, "Object id")
    assert DEFAULT_APP_ID in line(out, "App id")
    assert line(out, "Expires").endswith(f"{local(expires_on)} (in 30 min)")
    assert line(out, "Cache renews").endswith(f"{local(expires_on - 300)} (in 25 min)")
    assert fingerprint(token) in line(out, "Token")
    assert token not in out + err
    assert err == ""
    assert mi.calls == 1


def test_show_token_prints_it(mi: ManagedIdentityEndpoint, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["token", "--credential", "managed-identity", "--show-token"]) == 0
    out, _ = capsys.readouterr()
    (token,) = issued(mi)
    assert line(out, "Access token").split()[-1] == token


def test_json_has_the_claims_and_no_token(mi: ManagedIdentityEndpoint, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["token", "--credential", "default", "--json"]) == 0
    out, err = capsys.readouterr()
    (token,) = issued(mi)
    report = json.loads(out)
    assert report["credential"] == "ManagedIdentityCredential"
    # As azure-identity's own INFO log says it: the chain member, then where the managed identity runs.
    assert report["credential_path"] == [
        "DefaultAzureCredential",
        "ManagedIdentityCredential",
        "App Service managed identity",
    ]
    assert logging.getLogger("azure.identity").level == logging.NOTSET  # its logger as it was
    assert report["format"] == "jwt"
    assert report["fingerprint"] == fingerprint(token)
    assert report["claims"] == {
        "aud": DEFAULT_AUDIENCE,
        "tid": DEFAULT_TENANT,
        "oid": DEFAULT_SUBJECT,
        "appid": DEFAULT_APP_ID,
        "iat": 1_900_000_000,
    }
    assert report["expires_on"]["epoch"] == mi.registry.expires_on(token) == 1_900_000_000 + LIFETIME
    assert report["cache_renews"]["epoch"] == 1_900_000_000 + LIFETIME - 300
    assert report["refresh_on"] is None
    assert "token" not in report
    assert token not in out + err


def test_refresh_on_from_the_credential_sets_the_renewal(
    mi: ManagedIdentityEndpoint, capsys: pytest.CaptureFixture[str]
) -> None:
    mi.set_lifetime(7200)  # azure-identity asks for renewal at half-life of tokens living 2 h or more
    assert main(["token", "--credential", "managed-identity", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["refresh_on"]["epoch"] == 1_900_000_000 + 3600
    assert report["cache_renews"] == report["refresh_on"]
    assert report["expires_on"]["relative"] == "in 120 min"


def test_json_with_show_token(mi: ManagedIdentityEndpoint, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["token", "--credential", "managed-identity", "--json", "--show-token"]) == 0
    (token,) = issued(mi)
    assert json.loads(capsys.readouterr().out)["token"] == token


def test_environment_credential_without_variables(
    mi: ManagedIdentityEndpoint, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["token", "--credential", "environment"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert "EnvironmentCredential" in err
    assert "Likely fix: set AZURE_TENANT_ID and AZURE_CLIENT_ID" in err
    assert "Traceback" not in err
    assert mi.calls == 0


@pytest.mark.parametrize("credential", ["managed-identity", "default"])
def test_identity_endpoint_refusal_points_at_the_scope(
    mi: ManagedIdentityEndpoint, capsys: pytest.CaptureFixture[str], credential: str
) -> None:
    mi.fail_next(status=400)
    assert main(["token", "--credential", credential, "--scope", "https://nope.example/.default"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert "ManagedIdentityCredential" in err
    assert "Likely fix: check --scope: the resource 'https://nope.example' must exist" in err
    assert "Traceback" not in err
    assert issued(mi) == []


@pytest.mark.skipif(
    tuple(int(p) for p in version("azure-identity").split(".")[:2]) < (1, 26),
    reason="azure-identity < 1.26 leaves the endpoint's 400 body out of its error",
)
def test_tenant_mismatch_is_explained(mi: ManagedIdentityEndpoint, capsys: pytest.CaptureFixture[str]) -> None:
    mi.fail_next(status=400, body=json.dumps({"statusCode": 400, "message": "AADSTS90002: Tenant 'x' not found."}))
    assert main(["token", "--credential", "managed-identity"]) == 1
    err = capsys.readouterr().err
    assert "AADSTS90002" in err
    assert "Likely fix: the identity or app does not belong to the tenant" in err


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["token", "--credential", "password"])
    assert exited.value.code == 2
    assert main(["token", "--scope", "  "]) == 2
    assert "--scope must not be empty" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("message", "scope", "fix"),
    [
        ("AADSTS500011: The resource principal named x was not found", "https://x/.default", "check --scope"),
        ("AADSTS70011: The provided value for scope is not valid", "https://x", "has no '/.default' suffix"),
        (
            "AADSTS700016: Application with identifier 'a' was not found in the directory",
            "https://x/.default",
            "does not belong to the tenant",
        ),
        (
            "AADSTS50020: User account from identity provider does not exist in tenant",
            "https://x/.default",
            "az login --tenant",
        ),
        ("AADSTS7000215: Invalid client secret provided.", "https://x/.default", "secret, certificate"),
    ],
)
def test_explain_failure_reads_aadsts_codes(message: str, scope: str, fix: str) -> None:
    what, hint = explain_failure(ClientAuthenticationError(message=message), "environment", scope)
    assert what == f"ClientAuthenticationError: {message}"
    assert fix in hint


def test_opaque_token_is_reported_as_such() -> None:
    cache = TokenCache(FakeCredential(lifetime=600))
    token = cache.get_token()  # fake tokens have no dots: not a JWT
    acquired = Acquired(token, FakeCredential(), None, cache.status())
    report = build_report(acquired, "api://x/.default")
    assert token not in repr(acquired)
    assert decode_claims(token) is None
    assert report["format"] == "opaque"
    assert report["claims"] is None
    table = render_table(report)
    assert "not a JWT" in line(table, "Note")
    assert token not in table + json.dumps(report)


def test_decode_claims_without_padding() -> None:
    registry = TokenRegistry()
    token, _ = registry.issue(60, claims={"scp": "user_impersonation", "upn": "ada@example.com"})
    claims = decode_claims(token)
    assert claims is not None and claims["scp"] == "user_impersonation"
    assert decode_claims("a.%%%.c") is None
    assert decode_claims("a.bnVsbA.c") is None  # "null": JSON, but not an object


def run_module(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(
        os.environ, PYTHONPATH=child_pythonpath(str(SRC))
    )  # patched_env() has pointed os.environ at the endpoint
    return subprocess.run(
        [sys.executable, "-m", "azure_ad_token_auth", "token", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_module_entry_point_in_a_subprocess(identity: ManagedIdentityEndpoint) -> None:
    result = run_module("--json")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    (token,) = issued(identity)
    report = json.loads(result.stdout)
    assert report["credential"] == "ManagedIdentityCredential"
    assert report["claims"]["tid"] == DEFAULT_TENANT
    assert report["fingerprint"] == fingerprint(token)
    assert token not in result.stdout + result.stderr


def test_failure_in_a_subprocess_is_one_message_without_traceback(identity: ManagedIdentityEndpoint) -> None:
    result = run_module("--credential", "environment")
    assert result.returncode == 1
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    # azure-identity also logs the failure; unconfigured logging would print it a second time.
    assert result.stderr.count("Environment variables are not fully configured") == 1
    assert result.stderr.startswith("azure-ad-token-auth token: no token for")


def test_token_command_never_shows_another_identity_s_token_from_the_shared_store(
    identity: ManagedIdentityEndpoint,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With the shared store switched on for the machine, two runs for two identities
    each show their own identity's token: the command asks the credential it names."""
    from azure_ad_token_auth._store import ENV_VAR

    monkeypatch.setenv(ENV_VAR, str(tmp_path / "store"))
    shown = []
    for client_id in ("app-a", "app-b"):
        monkeypatch.setenv("AZURE_CLIENT_ID", client_id)
        assert main(["token", "--credential", "managed-identity", "--json", "--show-token"]) == 0
        shown.append(json.loads(capsys.readouterr().out)["token"])
    assert shown[0] != shown[1] and identity.calls == 2
    assert "shared token cache" not in caplog.text
    assert not (tmp_path / "store").exists()
