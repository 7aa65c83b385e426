"""The pytest plugin: its fixtures work in another project's tests, and loading it is cheap."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from conftest import child_pythonpath

pytest_plugins = ["pytester"]

SRC = Path(__file__).resolve().parents[2] / "src"
PLUGIN = "azure_ad_token_auth.testing.plugin"


def _installed_entry_point() -> bool:
    """Installed (as in `dev.py test`), pytest loads the plugin through `pytest11` itself."""
    from importlib.metadata import entry_points

    return any(ep.value == PLUGIN for ep in entry_points(group="pytest11"))


# The inner tests need no event loop; without pytest-asyncio's options it would warn.
INNER_ARGS = (() if _installed_entry_point() else ("-p", PLUGIN)) + ("-p", "no:asyncio", "-p", "no:cacheprovider")


def _openai_major() -> int:
    try:
        import openai
    except ImportError:
        return -1
    return int(openai.__version__.split(".")[0])


def test_entry_point_registers_the_plugin_when_installed(pytestconfig: pytest.Config) -> None:
    if not _installed_entry_point():
        pytest.skip("the package is not installed here (PYTHONPATH run)")
    assert pytestconfig.pluginmanager.has_plugin("azure_ad_token_auth")  # the entry point's name


INNER_TESTS = """
import json
import os

import pytest
import requests
from azure.identity import DefaultAzureCredential

SCOPE = "https://cognitiveservices.azure.com/.default"


def test_fake_credential(azure_fake_credential):
    assert azure_fake_credential.calls == 0
    token = azure_fake_credential.get_token(SCOPE).token
    assert azure_fake_credential.calls == 1
    assert token in azure_fake_credential.tokens


def test_fake_credential_is_fresh_per_test(azure_fake_credential):
    assert azure_fake_credential.calls == 0


def test_identity_and_service_share_the_registry(
    azure_managed_identity, azure_openai_stand_in, azure_token_registry, tmp_path_factory
):
    assert os.environ["IDENTITY_ENDPOINT"] == azure_managed_identity.url
    token = DefaultAzureCredential().get_token(SCOPE).token
    assert azure_token_registry.check(token) == "valid"
    assert azure_managed_identity.calls == 1
    response = requests.post(
        azure_openai_stand_in.base_url + "/openai/deployments/gpt35/completions?api-version=2024-02-01",
        json={"prompt": "hi"},
        headers={"Authorization": "Bearer " + token},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    assert azure_openai_stand_in.requests[-1].token_status == "valid"
    # Where the endpoints listened, for the outer test to check they were stopped.
    with open(os.environ["ENDPOINTS_FILE"], "w") as f:
        json.dump([azure_managed_identity.url, azure_openai_stand_in.base_url + "/echo"], f)


def test_the_readme_recipe_runs_unchanged_against_the_stand_in(azure_managed_identity, azure_openai_stand_in):
    openai = pytest.importorskip("openai")
    if int(openai.__version__.split(".")[0]) < 1:
        pytest.skip("the README's recipe is for openai >= 1")
    from azure_ad_token_auth import token_provider
    from openai import AzureOpenAI

    endpoint = azure_openai_stand_in.base_url
    assert endpoint.startswith("https://")
    # README.md's first example, as written:
    client = AzureOpenAI(
        azure_endpoint=endpoint, api_version="2024-10-21", azure_ad_token_provider=token_provider(endpoint=endpoint)
    )
    response = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "Hello"}])
    assert response.choices[0].message.content == azure_openai_stand_in.completion
    assert [r.token_status for r in azure_openai_stand_in.requests] == ["valid"]
    assert azure_managed_identity.calls == 1
"""


def test_fixtures_work_in_a_project_test_suite(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    endpoints_file = tmp_path / "endpoints.json"
    monkeypatch.setenv("ENDPOINTS_FILE", str(endpoints_file))
    monkeypatch.delenv("IDENTITY_ENDPOINT", raising=False)
    before = {name: os.environ.get(name) for name in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "AZURE_OPENAI_ENDPOINT")}
    pytester.makepyfile(test_inner=INNER_TESTS)
    result = pytester.runpytest(*INNER_ARGS)
    openai_1 = _openai_major() >= 1
    result.assert_outcomes(passed=3 + openai_1, skipped=1 - openai_1)
    # The fixtures restored the environment and both servers stopped.
    assert "IDENTITY_ENDPOINT" not in os.environ
    assert {name: os.environ.get(name) for name in before} == before
    for url in json.loads(endpoints_file.read_text()):
        with pytest.raises(requests.ConnectionError):
            requests.get(url, timeout=5)


IDENTITY_TESTS = """
from azure.identity import AzureCliCredential, ManagedIdentityCredential, WorkloadIdentityCredential

SCOPE = "https://cognitiveservices.azure.com/.default"


def test_entra(azure_entra_id, azure_token_registry):
    with azure_entra_id.patched_env("workload-identity"):
        token = WorkloadIdentityCredential().get_token(SCOPE).token
    assert azure_token_registry.check(token) == "valid" and azure_entra_id.calls == 1


def test_imds(azure_imds, azure_token_registry):
    assert azure_token_registry.check(ManagedIdentityCredential().get_token(SCOPE).token) == "valid"
    assert azure_imds.calls == 1


def test_cli(azure_cli, azure_token_registry):
    assert azure_token_registry.check(AzureCliCredential().get_token(SCOPE).token) == "valid"
    assert azure_cli.runs == 1
"""


def test_identity_fixtures_give_real_credentials_their_tokens(pytester: pytest.Pytester) -> None:
    pytest.importorskip("trustme")
    pytester.makepyfile(test_identity=IDENTITY_TESTS)
    result = pytester.runpytest(*INNER_ARGS)
    result.assert_outcomes(passed=3)
    assert "AZURE_POD_IDENTITY_AUTHORITY_HOST" not in os.environ


SHARED_STORE_TESTS = """
from azure_ad_token_auth import TokenCache


def test_first(azure_fake_credential):
    TokenCache(azure_fake_credential).get_token()
    assert azure_fake_credential.calls == 1


def test_second_gets_no_token_of_the_first(azure_fake_credential, azure_token_registry):
    TokenCache(azure_fake_credential).get_token()
    assert azure_fake_credential.calls == 1
"""


def test_fixtures_keep_a_shared_store_set_on_the_machine_out_of_the_tests(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """With `AZURE_AD_TOKEN_AUTH_SHARED_CACHE` set, every `FakeCredential` would share
    one store entry: the second test would get the first one's token without a call."""
    store = tmp_path / "store"
    store.mkdir(mode=0o700)
    monkeypatch.setenv("AZURE_AD_TOKEN_AUTH_SHARED_CACHE", str(store))
    pytester.makepyfile(test_inner_shared_store=SHARED_STORE_TESTS)
    result = pytester.runpytest(*INNER_ARGS)
    result.assert_outcomes(passed=2)
    assert os.environ["AZURE_AD_TOKEN_AUTH_SHARED_CACHE"] == str(store)  # restored after each test


def test_fixtures_are_listed_with_their_docs(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_empty="def test_nothing():\n    pass\n")
    result = pytester.runpytest(*INNER_ARGS, "--fixtures")
    # pytest orders them by "path:line" as text (line 101 before line 85): one fixture at a time.
    result.stdout.fnmatch_lines(["azure_fake_credential*", "*A new `FakeCredential`*"])
    result.stdout.fnmatch_lines(["azure_managed_identity*", "*managed-identity endpoint on loopback*"])


def test_loading_the_plugin_imports_no_client_or_identity_library() -> None:
    """pytest loads the plugin in every run of a project that has the package installed: it
    imports pytest alone until a fixture is used (docs/testing.md has the measured cost)."""
    code = (
        "import sys, threading, json\n"
        "before = threading.active_count()\n"
        f"import {PLUGIN}\n"
        "heavy = ('azure.identity', 'azure.core', 'requests', 'openai', 'httpx', 'httpx2', 'aiohttp', 'trustme',\n"
        "         'cryptography', 'azure_ad_token_auth._cache', 'azure_ad_token_auth.testing._fake')\n"
        "heavy = sorted(m for m in heavy if m in sys.modules)\n"
        "print(json.dumps({'heavy': heavy, 'threads': threading.active_count() - before}))\n"
    )
    env = dict(os.environ, PYTHONPATH=child_pythonpath(str(SRC)))
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"heavy": [], "threads": 0}
