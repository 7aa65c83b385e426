"""docs/redis.md: every example runs as written, against the Azure Redis stand-in.

A block is marked by `<!-- redis-test: TAG -->` on the line before it. `sync` and `async`
examples run in a child process with azure-identity's real `DefaultAzureCredential` getting
tokens from a loopback managed-identity endpoint; the one thing a reader fills in, the
cache's host, port and TLS (`host="<cache>.redis.cache.windows.net", port=6380, ssl=True`, or
the URL `rediss://<cache>.redis.cache.windows.net:6380`), is filled in with the stand-in's
loopback address (which speaks plain TCP). `plugin` examples
are test files, run by pytest with the package's plugin.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from azure_ad_token_auth.testing import AzureRedisStandIn, ManagedIdentityEndpoint, TokenRegistry
from conftest import child_pythonpath

pytest.importorskip("redis")

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "redis.md"
BLOCK = re.compile(r"<!-- redis-test: (\w+) -->\n```python\n(.*?)```", re.DOTALL)
PLACEHOLDER = 'host="<cache>.redis.cache.windows.net", port=6380, ssl=True'
URL = "rediss://<cache>.redis.cache.windows.net:6380"


def _examples() -> list[tuple[str, str]]:
    return BLOCK.findall(PAGE.read_text(encoding="utf-8"))


def test_the_page_has_examples_of_every_kind() -> None:
    assert sorted({tag for tag, _ in _examples()}) == ["async", "plugin", "sync"]


@pytest.mark.parametrize(("tag", "code"), [e for e in _examples() if e[0] != "plugin"], ids=lambda v: v[:12])
def test_example_runs_as_written(tag: str, code: str) -> None:
    assert PLACEHOLDER in code or URL in code
    registry = TokenRegistry()
    with ManagedIdentityEndpoint(registry=registry) as identity, identity.patched_env():
        with AzureRedisStandIn(registry=registry) as azure:
            code = code.replace(PLACEHOLDER, f'host="{azure.host}", port={azure.port}, ssl=False')
            code = code.replace(URL, azure.url)
            env = {**os.environ, "PYTHONPATH": child_pythonpath(str(ROOT / "src"))}
            result = subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120, cwd=ROOT
            )
            assert result.returncode == 0, result.stderr[-3000:]
            assert "b'hello'" in result.stdout
            assert [a.outcome for a in azure.auths] == ["accepted"]  # real DefaultAzureCredential, one token
            assert identity.calls == 1


@pytest.mark.parametrize("code", [c for tag, c in _examples() if tag == "plugin"])
def test_pytest_example_passes_with_the_plugin(code: str, tmp_path: Path) -> None:
    from importlib.metadata import entry_points

    (tmp_path / "test_example.py").write_text(code)
    installed = any(ep.name == "azure_ad_token_auth" for ep in entry_points(group="pytest11"))
    plugin = [] if installed else ["-p", "azure_ad_token_auth.testing.plugin"]
    env = {**os.environ, "PYTHONPATH": child_pythonpath(str(ROOT / "src"))}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly", *plugin, str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-3000:]
    assert "1 passed" in result.stdout
