"""Every README example marked `<!-- readme-test: ... -->` runs as written on the loopback stand-ins."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from azure_ad_token_auth.testing import AzureOpenAIStandIn, ManagedIdentityEndpoint, TokenRegistry
from conftest import child_pythonpath

ROOT = Path(__file__).resolve().parents[2]
BLOCK = re.compile(r"<!-- readme-test: (\w+) -->\n```python\n(.*?)```", re.DOTALL)


def _examples() -> list[tuple[str, str]]:
    return BLOCK.findall((ROOT / "README.md").read_text())


def _openai_major() -> int | None:
    if importlib.util.find_spec("openai") is None:
        return None
    import openai

    return int(openai.__version__.split(".")[0])


def _openai_version() -> tuple[int, ...]:
    import openai

    return tuple(int(part) for part in re.findall(r"\d+", openai.__version__)[:2])


def _missing(tag: str) -> str | None:
    major = _openai_major()
    needs = {
        "core": None,
        "httpx": None if importlib.util.find_spec("httpx") else "needs httpx",
        "openai0": None if major == 0 and importlib.util.find_spec("aiohttp") else "needs openai 0.28",
        "openai1": None if major is not None and major >= 1 else "needs openai >= 1",
        "openai3": None if major is not None and major >= 3 else "needs openai >= 3",
        "plugin": None,
    }
    return needs[tag]


def test_readme_has_examples_of_every_kind() -> None:
    tags = [tag for tag, _ in _examples()]
    assert {"core", "httpx", "openai0", "openai1", "openai3", "plugin"} <= set(tags)
    assert len(tags) >= 10


def test_readme_pytest_example_passes_with_the_plugin(tmp_path: Path) -> None:
    from importlib.metadata import entry_points

    (code,) = [code for tag, code in _examples() if tag == "plugin"]
    (tmp_path / "test_example.py").write_text(code)
    installed = any(ep.name == "azure_ad_token_auth" for ep in entry_points(group="pytest11"))
    plugin = [] if installed else ["-p", "azure_ad_token_auth.testing.plugin"]
    env = {**os.environ, "PYTHONPATH": child_pythonpath(str(ROOT / "src"))}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *plugin, str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-3000:]
    assert "1 passed" in result.stdout


@pytest.mark.parametrize(
    ("tag", "code"), [e for e in _examples() if e[0] != "plugin"], ids=lambda v: v if len(v) < 12 else None
)
def test_readme_example_runs_as_written(tag: str, code: str) -> None:
    reason = _missing(tag)
    if reason:
        pytest.skip(reason)
    if re.search(r"api_key=(async_)?token_provider", code) and _openai_version() < (1, 106):
        pytest.skip("callable api_key needs openai >= 1.106")
    registry = TokenRegistry()
    with ManagedIdentityEndpoint(registry=registry) as identity, identity.patched_env():
        with AzureOpenAIStandIn(registry=registry) as service:
            env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "AZURE_OPENAI_"))}
            env.update(PYTHONPATH=child_pythonpath(str(ROOT / "src")), AZURE_OPENAI_ENDPOINT=service.base_url)
            result = subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120, cwd=ROOT
            )
            assert result.returncode == 0, result.stderr[-3000:]
            if "create" in code or ".post(" in code:
                assert service.completion.strip() in result.stdout
                assert service.count >= 1
            assert {r.token_status for r in service.requests} <= {"valid"}
            # Every token came from azure-identity's real DefaultAzureCredential, via the
            # loopback managed-identity endpoint, once per example (one cache per process).
            assert identity.calls <= 1
