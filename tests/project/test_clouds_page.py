"""docs/clouds.md: its rules table is `RULES`, and its examples run as written."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from azure_ad_token_auth._clouds import RULES
from azure_ad_token_auth.testing import AzureOpenAIStandIn, ManagedIdentityEndpoint, TokenRegistry
from conftest import child_pythonpath

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "clouds.md"
TABLE = re.compile(r"<!-- cloud-rules:[^\n]*-->\n(.*?)<!-- /cloud-rules -->", re.DOTALL)
BLOCK = re.compile(r"<!-- clouds-test: (\w+) -->\n```python\n(.*?)```", re.DOTALL)


def rules_table() -> str:
    """The table the page must hold, generated from the rules."""
    lines = ["| Service | Host ends with | Path starts with | Cloud | Scope |", "| --- | --- | --- | --- | --- |"]
    lines += [
        f"| {rule.service} | `{rule.suffix}` | {f'`{rule.path}`' if rule.path else 'any'} | {rule.cloud} | `{rule.scope}` |"
        for rule in RULES
    ]
    return "\n".join(lines) + "\n"


def test_the_rules_table_is_generated_from_cloud_rules() -> None:
    (table,) = TABLE.findall(PAGE.read_text())
    assert table == rules_table(), "docs/clouds.md is out of date; paste rules_table() between the markers"


def _examples() -> list[tuple[str, str]]:
    return BLOCK.findall(PAGE.read_text())


def test_the_page_has_examples_of_every_kind() -> None:
    assert {tag for tag, _ in _examples()} == {"core", "openai1"}
    assert len(_examples()) >= 4


@pytest.mark.parametrize(("tag", "code"), _examples(), ids=lambda v: v if len(v) < 12 else None)
def test_example_runs_as_written(tag: str, code: str) -> None:
    if tag == "openai1":
        if importlib.util.find_spec("openai") is None:
            pytest.skip("needs openai >= 1")
        import openai

        if int(openai.__version__.split(".")[0]) < 1:
            pytest.skip("needs openai >= 1")
    if "azure.identity.aio" in code and importlib.util.find_spec("aiohttp") is None:
        pytest.skip("azure.identity.aio needs aiohttp")
    registry = TokenRegistry()
    with ManagedIdentityEndpoint(registry=registry) as identity, identity.patched_env():
        with AzureOpenAIStandIn(registry=registry) as service:
            env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "AZURE_OPENAI_"))}
            # The stand-in serves https: `env()` names it (AZURE_OPENAI_ENDPOINT) and makes the
            # example's clients trust it (SSL_CERT_FILE, REQUESTS_CA_BUNDLE).
            env.update(service.env(), PYTHONPATH=child_pythonpath(str(ROOT / "src")))
            result = subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120, cwd=ROOT
            )
            assert result.returncode == 0, result.stderr[-3000:]
            if "create(" in code:
                assert service.completion.strip() in result.stdout
                assert [r.token_status for r in service.requests] == ["valid"]
                assert identity.calls == 1  # the real azure.identity.aio credential, once
            else:
                assert service.count == 0 and identity.calls == 0  # nothing sent, no credential call
