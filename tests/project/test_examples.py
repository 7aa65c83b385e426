"""Every code example in README.md and docs/*.md runs as written on the loopback stand-ins.

A Python block is marked by the comment on the line before it, `<!-- readme-test: TAG -->`;
the tag names what the example needs (see `NEEDS`). Examples run in a child process with
`AZURE_OPENAI_ENDPOINT` pointing at an `AzureOpenAIStandIn` over https (the child trusts its
certificate through `SSL_CERT_FILE` / `REQUESTS_CA_BUNDLE`, the stand-in's `env()`) and
azure-identity's real `DefaultAzureCredential` getting tokens from a loopback
managed-identity endpoint. The one placeholder a reader fills in,
`https://<resource>.openai.azure.com`, is filled in with the stand-in's https address, so
the examples run as written: no `allow_http`. `plugin` examples are test files and `conftest` examples conftest files,
run by pytest.
"""

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
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"<!-- readme-test: (\w+) -->\n```python\n(.*?)```", re.DOTALL)
PYTHON_BLOCK = re.compile(r"^```python\n", re.MULTILINE)
PLACEHOLDER = "https://<resource>.openai.azure.com"


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _openai_version() -> tuple[int, ...]:
    if not _has("openai"):
        return ()
    import openai

    return tuple(int(part) for part in re.findall(r"\d+", openai.__version__)[:2])


def _openai(least: tuple[int, ...], below: tuple[int, ...] = (99,)) -> bool:
    version = _openai_version()
    return bool(version) and least <= version < below


# What each tag needs, and why the example is skipped without it.
NEEDS: dict[str, tuple[bool, str]] = {
    "core": (True, ""),
    "httpx": (_has("httpx"), "needs httpx"),
    "httpx2": (_has("httpx2"), "needs httpx2"),
    "aiohttp": (_has("aiohttp"), "needs aiohttp"),
    "openai0": (_openai((0,), (1,)) and _has("aiohttp"), "needs openai 0.28"),
    "openai1": (_openai((1,)), "needs openai >= 1"),
    "async": (_openai((1,)) and _has("aiohttp"), "needs openai >= 1 and aiohttp (the [async] extra)"),
    "openai3": (_openai((3,)), "needs openai >= 3"),
    "plugin": (True, ""),
    "conftest": (True, ""),
}
PYTEST_TAGS = {"plugin", "conftest"}


def _examples() -> list[tuple[str, str, str]]:
    """(page, tag, code) for every marked block, in page order."""
    return [
        (page.relative_to(ROOT).as_posix(), tag, code)
        for page in PAGES
        for tag, code in BLOCK.findall(page.read_text(encoding="utf-8"))
    ]


def _params(pytest_files: bool) -> list[object]:
    """The examples run by pytest (`plugin`, `conftest`) or the others, each named by page and line."""
    params: list[object] = []
    for page, tag, code in _examples():
        if (tag in PYTEST_TAGS) == pytest_files:
            first = next(line for line in code.splitlines() if line and not line.startswith(("import", "from", "#")))
            params.append(pytest.param(page, tag, code, id=f"{page}:{tag}:{first[:40]}"))
    return params


def test_examples_of_every_kind_exist() -> None:
    tags = [tag for _page, tag, _code in _examples()]
    assert set(NEEDS) == set(tags)
    assert len(tags) >= 25


# What only the testing kit's stand-ins serve or record: an example a reader copies must work
# against a real Azure endpoint, so these belong on docs/testing.md alone.
STAND_IN_ONLY = ("/echo", "token_status", "azure_ad_token_auth.testing", "azure_openai_stand_in")


def test_user_facing_examples_use_nothing_only_the_stand_ins_serve() -> None:
    found = [
        f"{page}: {name}"
        for page, tag, code in _examples()
        if page != "docs/testing.md" and tag not in PYTEST_TAGS
        for name in STAND_IN_ONLY
        if name in code
    ]
    assert found == []
    assert any(name in code for page, _tag, code in _examples() if page == "docs/testing.md" for name in STAND_IN_ONLY)


def test_every_python_block_in_the_docs_is_marked_and_so_runs() -> None:
    unmarked = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for match in PYTHON_BLOCK.finditer(text):
            before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
            # clouds.md's blocks route real cloud host names to the stand-ins: run by test_clouds_page.py;
            # azure-sdk.md's and sql.md's need a service's stand-in (test_service_pages.py), redis.md's
            # the Azure Redis stand-in (test_redis_page.py), postgres.md's a PostgreSQL server behind Azure's
            # check (tests/postgres/test_postgres_docs.py).
            if not re.fullmatch(r"<!-- (readme|clouds|service|redis|postgres)-test: (\w+) -->", before):
                unmarked.append(f"{page.name}:{text.count(chr(10), 0, match.start()) + 1}")
        # A block whose fence is never closed matches no BLOCK, so it would silently not run.
        marked = len(re.findall(r"<!-- readme-test: \w+ -->\n```python\n", text))
        if len(BLOCK.findall(text)) != marked:
            unmarked.append(f"{page.name}: a readme-test block without its closing fence")
    assert unmarked == []


def _run_pytest(code: str, filename: str, tmp_path: Path) -> None:
    from importlib.metadata import entry_points

    (tmp_path / filename).write_text(code)
    if filename == "conftest.py":  # a test for the conftest to wrap: a request to a loopback stand-in
        (tmp_path / "test_uses_the_conftest.py").write_text(
            "import requests\n\n"
            "def test_loopback(azure_openai_stand_in):\n"
            "    assert requests.get(azure_openai_stand_in.base_url + '/echo').status_code == 401\n"
        )
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
    assert f"{1 if filename == 'conftest.py' else code.count('def test_')} passed" in result.stdout


@pytest.mark.parametrize(("page", "tag", "code"), _params(pytest_files=True))
def test_pytest_example_passes_with_the_plugin(page: str, tag: str, code: str, tmp_path: Path) -> None:
    if "from openai import AzureOpenAI" in code and not NEEDS["openai1"][0]:
        pytest.skip(NEEDS["openai1"][1])
    _run_pytest(code, "conftest.py" if tag == "conftest" else "test_example.py", tmp_path)


@pytest.mark.parametrize(("page", "tag", "code"), _params(pytest_files=False))
def test_example_runs_as_written(page: str, tag: str, code: str) -> None:
    available, reason = NEEDS[tag]
    if not available:
        pytest.skip(reason)
    if re.search(r"api_key=(async_)?token_provider", code) and _openai_version() < (1, 106):
        pytest.skip("callable api_key needs openai >= 1.106")
    registry = TokenRegistry()
    with ManagedIdentityEndpoint(registry=registry) as identity, identity.patched_env():
        with AzureOpenAIStandIn(registry=registry) as service:
            env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "AZURE_OPENAI_"))}
            # The stand-in serves https: `env()` names it (AZURE_OPENAI_ENDPOINT) and makes the
            # example's clients trust it (SSL_CERT_FILE, REQUESTS_CA_BUNDLE).
            env.update(service.env(), PYTHONPATH=child_pythonpath(str(ROOT / "src")))
            code = code.replace(PLACEHOLDER, service.base_url)
            result = subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120, cwd=ROOT
            )
            assert result.returncode == 0, result.stderr[-3000:]
            if "create(" in code or ".post(" in code:
                assert service.completion.strip() in result.stdout
                assert service.count >= 1
            assert {r.token_status for r in service.requests} <= {"valid"}
            # Every token came from azure-identity's real DefaultAzureCredential, via the
            # loopback managed-identity endpoint, once per example (one cache per process).
            assert identity.calls <= 1


def test_readme_is_a_front_door() -> None:
    """The first screen: an openai >= 1 example first, a Quickstart of two commands, ~200 lines."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 210
    first_page, first_tag, first_code = _examples()[0]
    assert (first_page, first_tag) == ("README.md", "openai1")
    assert "from openai import AzureOpenAI" in first_code and "token_provider(endpoint=endpoint)" in first_code
    assert readme.index(first_code) < readme.index("## Install") < readme.index("## Quickstart")
    quickstart = readme.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```\w*\n(.*?)```", quickstart, re.DOTALL)
    assert blocks == ["python3 dev.py demo\npython3 dev.py test\n"]


def test_readmes_first_screen_answers_why_not_get_bearer_token_provider_with_one_runs_figures() -> None:
    """The first 40 lines compare azure-identity's provider, with figures from the run the
    generated blocks show (README's summary, docs/benchmarks.md's tables): rerun the benchmark
    into them and this fails until the first screen quotes the new run too."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    first_screen = "\n".join(readme.splitlines()[:40])
    assert "get_bearer_token_provider" in first_screen and "(docs/migrating.md)" in first_screen
    for point in ("64 credential calls", "no lock", "1 call", "allow_http=True", "401", "CAE", "background"):
        assert point in first_screen, point
    summary = readme.split("<!-- bench-summary:begin", 1)[1].split("<!-- bench-summary:end -->", 1)[0]
    page = (ROOT / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    block = page.split("<!-- bench:begin", 1)[1].split("<!-- bench:end -->", 1)[0]
    figures = re.findall(r"\d[\d,.]*(?:\u00d7| ms\b| s\b)", first_screen)  # ratios (U+00D7), ms, s
    assert len(figures) >= 6
    run = summary + block
    assert [figure for figure in figures if not re.search(r"(?<![\d.,])" + re.escape(figure), run)] == []
