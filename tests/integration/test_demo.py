"""`azure-ad-token-auth demo`: the README's recipe end to end on the stand-ins, a summary that adds
up, and user errors as one or two lines (a traceback only with --verbose)."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from azure_ad_token_auth._cli import main
from azure_ad_token_auth.testing import ManagedIdentityEndpoint, TokenRegistry, patched_environ
from conftest import child_pythonpath, fresh_openai_state

COMPLETION = "The food was delicious and the waiter was very attentive and friendly."
SRC = Path(__file__).resolve().parents[2] / "src"

pytestmark = pytest.mark.skipif(importlib.util.find_spec("openai") is None, reason="the demo needs openai")


@pytest.fixture(autouse=True)
def openai_settings() -> Iterator[None]:
    """The demo configures openai's module globals on 0.28; put them back after."""
    if importlib.util.find_spec("openai") is None:
        yield
        return
    import openai

    names = ["api_key", "api_type", "api_base", "api_version", "requestssession", "azure_endpoint"]
    saved = {name: getattr(openai, name) for name in names if hasattr(openai, name)}
    yield
    for name, value in saved.items():
        setattr(openai, name, value)
    fresh_openai_state(openai)


def summary(out: str) -> dict[str, str]:
    """The summary's rows, by label."""
    rows = out.split("\nSummary\n", 1)[1].splitlines()
    return {label.strip(): text.strip() for label, _, text in (row.partition(":") for row in rows if ":" in row)}


def leading(text: str) -> int:
    return int(text.split()[0].rstrip(";,"))


def test_demo_summary_adds_up_and_names_the_scope_and_identity(capsys: pytest.CaptureFixture[str]) -> None:
    # 4 s tokens renewed at half-life keep >= 2 s of life when sent: a busy machine (xdist,
    # other sessions) must not let one expire between the cache handing it out and the check.
    assert main(["demo", "--requests", "4", "--interval", "1.0", "--token-lifetime", "4"]) == 0
    out = capsys.readouterr().out
    assert out.count(COMPLETION) == 4
    assert "Scope: https://cognitiveservices.azure.com/.default (127.0.0.1 is no known Azure host" in out
    assert "Identity: DefaultAzureCredential -> App Service managed identity" in out
    assert "renewed token" in out
    rows = summary(out)
    assert rows["requests"].startswith("4; the stand-in checked each: 4 carried a valid token, 0 did not")
    shown = re.findall(r"request +\d+: token (\w+)", out)
    used = rows["tokens used"]
    assert leading(used) == len(set(shown)) >= 2
    assert sorted(set(shown)) == sorted(used.split("(")[1].rstrip(")").split(", "))
    fetched = leading(rows["tokens fetched"])
    assert fetched >= leading(used)
    assert f"= 1 first + {fetched - 1} renewed ahead of expiry" in rows["tokens fetched"]
    calls = rows["credential calls"]
    terms = [int(n) for n in re.findall(r"(\d+) (?:brought|answered|failed)", calls)]
    assert leading(calls) == sum(terms) and terms[0] == fetched
    # azure-identity answers from its own cache without asking the endpoint: one endpoint
    # request per new token.
    assert leading(rows["managed-identity requests"]) == fetched


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
    capsys: pytest.CaptureFixture[str], credential: str, named: str, counted: str
) -> None:
    pytest.importorskip("trustme")
    args = ["demo", "--credential", credential, "--requests", "3", "--interval", "0", "--token-lifetime", "60"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert f"Identity: {named}" in out
    assert out.count(COMPLETION) == 3
    rows = summary(out)
    assert "3 carried a valid token, 0 did not" in rows["requests"]
    # One token for three requests: the tokens live a minute, far beyond the run.
    assert rows["credential calls"] == "1 = 1 brought a new token"
    assert rows[counted].startswith("1,")


def test_demo_credential_is_for_the_stand_ins_only(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["demo", "--credential", "cli", "--endpoint", "https://res.openai.azure.com", "--deployment", "d"]
    assert main(args) == 2
    assert "--credential chooses a loopback stand-in" in capsys.readouterr().err


def _demo(*args: str, path: str | None = None) -> subprocess.CompletedProcess[str]:
    """The demo in a child process (the environment as it is now, `path` first on PYTHONPATH)."""
    pythonpath = child_pythonpath(*(p for p in (path, str(SRC)) if p))
    return subprocess.run(
        [sys.executable, "-m", "azure_ad_token_auth", "demo", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": pythonpath},
        check=False,
    )


def _one_or_two_lines(stderr: str) -> list[str]:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert 1 <= len(lines) <= 2, stderr
    assert "Traceback" not in stderr
    return lines


def test_an_http_endpoint_is_two_lines_and_nothing_is_loaded_or_sent() -> None:
    result = _demo("--endpoint", "http://res.openai.azure.com", "--deployment", "d")
    assert result.returncode == 1
    lines = _one_or_two_lines(result.stderr)
    assert "over plain http: use https" in lines[0]
    assert "Likely fix: use the https endpoint" in lines[1]
    assert "loading openai" not in result.stdout  # refused before anything else
    verbose = _demo("--endpoint", "http://res.openai.azure.com", "--deployment", "d", "--verbose")
    assert verbose.returncode == 1 and "Traceback" in verbose.stderr and "InsecureTransportError" in verbose.stderr


def test_a_missing_optional_package_is_named_with_its_install_command(tmp_path: Path) -> None:
    # trustme hidden: the Entra ID stand-in cannot make its TLS certificate.
    (tmp_path / "trustme.py").write_text("raise ModuleNotFoundError(\"No module named 'trustme'\", name='trustme')\n")
    result = _demo("--credential", "workload-identity", "--requests", "1", path=str(tmp_path))
    assert result.returncode == 1
    lines = _one_or_two_lines(result.stderr)
    assert "needs the package 'trustme'" in lines[0]
    assert re.match(r"\s*Likely fix: pip install trustme\s", lines[1]), lines[1]


def test_no_credential_is_explained_in_two_lines(tmp_path: Path) -> None:
    # No identity anywhere: IMDS pointed at a closed loopback port, no az / azd on PATH.
    env = {"PATH": str(tmp_path), "AZURE_POD_IDENTITY_AUTHORITY_HOST": "http://127.0.0.1:9", "HOME": str(tmp_path)}
    with patched_environ(env):
        result = _demo("--endpoint", "https://127.0.0.1:9", "--deployment", "d", "--requests", "1")
    assert result.returncode == 1
    lines = _one_or_two_lines(result.stderr)
    assert "no token for https://cognitiveservices.azure.com/.default" in lines[0]
    assert "Likely fix: sign in with `az login`" in lines[1]
    assert "each attempt above" not in result.stderr  # the attempts are not shown here


def test_an_unreachable_endpoint_is_two_lines() -> None:
    with ManagedIdentityEndpoint(registry=TokenRegistry()) as identity, patched_environ(identity.env()):
        result = _demo("--endpoint", "https://127.0.0.1:9", "--deployment", "d", "--requests", "1")
    assert result.returncode == 1
    lines = _one_or_two_lines(result.stderr)
    assert "cannot reach https://127.0.0.1:9" in lines[0]
    assert identity.calls == 1  # the token was had; the endpoint was not there


def test_demo_with_eight_workers_shows_one_identity_request_per_renewal(capsys: pytest.CaptureFixture[str]) -> None:
    # 5 s tokens renewed at half-life keep >= 2.5 s of life when sent: eight processes on a
    # loaded machine (xdist, coverage) must not let one expire between the store and the check.
    # The first renewal lands 2 to 3.2 s in (azure-identity's credential hands back its cached
    # token once before fetching another), so requests run for 5 s to span it.
    assert main(["demo", "--workers", "8", "--requests", "6", "--interval", "1.0", "--token-lifetime", "5"]) == 0
    out = capsys.readouterr().out
    rows = summary(out)
    assert rows["workers"] == "8, 6 requests each"
    assert "48 carried a valid token, 0 did not" in rows["requests checked"]
    used = leading(rows["tokens used"])
    identity_requests = leading(rows["identity requests"])
    assert used >= 2  # the run spans a renewal
    # One request per token; a renewal landing after the last request may go unused, and
    # the summary says so, so that its counts add up.
    assert used <= identity_requests <= used + 1
    assert ("renewed after the last request, not used" in rows["identity requests"]) == (identity_requests > used)
    assert "Scope: https://cognitiveservices.azure.com/.default; identity: each worker's own" in out
    # The workers' own count: credential calls, not the tokens they took from the store
    # (counted apart); one worker per renewal calls, not eight.
    calls, hits = leading(rows["credential calls"]), leading(rows["taken from store"])
    assert identity_requests <= calls <= identity_requests + 2, out
    assert calls + hits >= 8, out  # each worker's first token came one way or the other
