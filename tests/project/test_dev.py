"""dev.py's closing line, missing-interpreter report and README support table, from nox's report."""

from __future__ import annotations

import ast
import importlib.util
import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def dev() -> Any:
    spec = importlib.util.spec_from_file_location("dev", ROOT / "dev.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["dev"] = module
    spec.loader.exec_module(module)
    return module


def _result(session: str, passed: int, failed: int = 0, skipped: int = 0, finished: float = 0.0) -> dict[str, Any]:
    versions = {"openai": "3.57.0", "httpx": "0.28.1", "httpx2": None, "aiohttp": "3.14.5", "requests": "2.34.2"}
    return {
        "session": session,
        "python": "3.11.7",
        "versions": {**versions, "azure-core": "1.41.0", "azure-identity": "1.27.0", "litellm": None},
        "finished": finished,
        "passed": passed,
        "failed": failed,
        "skipped": skipped,
    }


def test_summary_sums_every_session_and_counts_a_failed_lint_once(dev: Any) -> None:
    sessions = [
        {"name": "lint", "signatures": ["lint"], "result": "aborted", "reason": "ruff failed"},
        {"name": "tests", "signatures": ["tests-3.11"], "result": "success"},
        {"name": "tests", "signatures": ["tests-3.12"], "result": "aborted", "reason": "2 failed"},
        {
            "name": "tests",
            "signatures": ["tests-3.10"],
            "result": "skipped",
            "reason": "Python interpreter 3.10 not found",
        },
    ]
    results = {"tests-3.11": _result("tests-3.11", 280, 0, 7), "tests-3.12": _result("tests-3.12", 278, 2, 7)}
    totals, failed, missing = dev.summarize(sessions, results)
    assert totals == {"passed": 558, "failed": 3, "skipped": 14}
    assert failed == ["lint", "tests-3.12"]
    assert missing == ["tests-3.10"]


def test_a_missing_interpreter_on_ci_is_both_missing_and_failed(dev: Any) -> None:
    sessions = [
        {
            "name": "tests",
            "signatures": ["tests-3.13"],
            "result": "failed",
            "reason": "Python interpreter 3.13 not found",
        }
    ]
    totals, failed, missing = dev.summarize(sessions, {})
    assert (totals["failed"], failed, missing) == (1, ["tests-3.13"], ["tests-3.13"])


def test_table_is_written_between_the_markers_in_run_order(dev: Any, tmp_path: Path) -> None:
    results = tmp_path / "results"
    results.mkdir()
    (results / "a.json").write_text(json.dumps(_result("tests-3.11", 280, 0, 7, finished=2.0)))
    (results / "b.json").write_text(json.dumps(_result("lowest", 270, 1, 3, finished=1.0)))
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{dev.TABLE_BEGIN}\nold row\n{dev.TABLE_END}\noutro\n")

    assert dev.write_table(results, readme) == 0

    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("outro\n")
    assert "old row" not in text
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    assert [row.split("`")[1] for row in rows] == ["lowest", "tests-3.11"]
    assert "❌ 270 passed, 1 failed, 3 skipped" in rows[0]
    assert "| 3.57.0 | 0.28.1 / - / 3.14.5 | 2.34.2 / 1.41.0 / 1.27.0 | - |" in rows[1]


def test_table_refuses_a_readme_without_markers(dev: Any, tmp_path: Path) -> None:
    results = tmp_path / "results"
    results.mkdir()
    (results / "a.json").write_text(json.dumps(_result("tests-3.11", 1)))
    readme = tmp_path / "README.md"
    readme.write_text("no markers\n")
    assert dev.write_table(results, readme) == 1
    assert readme.read_text() == "no markers\n"


def test_readme_has_the_support_table_markers(dev: Any) -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert text.count(dev.TABLE_BEGIN) == 1 and text.count(dev.TABLE_END) == 1


def test_test_runs_the_quick_session_and_passes_arguments_to_pytest(dev: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[list[str], bool]] = []

    def run_sessions(args: list[str], *, table: bool) -> int:
        calls.append((args, table))
        return 0

    monkeypatch.setattr(dev, "run_sessions", run_sessions)
    monkeypatch.setattr(sys, "argv", ["dev.py", "test", "-k", "store"])
    assert dev.main() == 0
    monkeypatch.setattr(sys, "argv", ["dev.py", "matrix"])
    assert dev.main() == 0
    monkeypatch.setattr(sys, "argv", ["dev.py", "matrix", "-s", "lint"])
    assert dev.main() == 0
    # The quick session alone; the whole matrix writes the README table, a partial one does not.
    assert calls == [(["-s", "quick", "--", "-k", "store"], False), ([], True), (["-s", "lint"], False)]


def test_docs_serves_the_site_through_its_nox_session_with_the_pinned_tools(
    dev: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[list[str]] = []

    def nox(args: list[str]) -> int:
        calls.append(args)
        return 0

    monkeypatch.setattr(dev, "nox", nox)
    monkeypatch.setattr(sys, "argv", ["dev.py", "docs", "-a", "127.0.0.1:8001"])
    assert dev.main() == 0
    assert calls == [["-s", "docs-serve", "--", "-a", "127.0.0.1:8001"]]
    noxfile = (ROOT / "noxfile.py").read_text()
    session = noxfile.split('@nox.session(name="docs-serve"')[1].split("\n\n\n")[0]
    assert "session.install(*DOCS)" in session  # the tools `mkdocs build --strict` is checked with
    assert '"mkdocs", "serve", "--no-strict"' in session and "session.posargs" in session


def test_closing_lines_report_coverage_per_session_and_combined(dev: Any, tmp_path: Path) -> None:
    quick = {**_result("quick", 1), "coverage": {"total": 88.74, "branches": 80.06, "threads": True}}
    old = {**_result("tests-3.10", 1), "coverage": {"total": 80.0, "branches": 70.0, "threads": False}}
    results = {"quick": quick, "lint": _result("lint", 0), "tests-3.10": old}
    combined = tmp_path / "combined.json"
    assert dev.coverage_lines(results, combined) == [
        "[dev] coverage quick: 80.1% of branches (88.7% with statements)",
        "[dev] coverage tests-3.10: 70.0% of branches (80.0% with statements); main threads only (Python < 3.12)",
    ]
    combined.write_text(json.dumps({"total": 92.31, "branches": 87.26, "sessions": 9}))
    assert dev.coverage_lines(results, combined)[-1] == (
        "[dev] coverage of every session combined: 87.3% of branches (92.3% with statements)"
    )


def test_ci_runs_the_matrix_and_the_short_benchmark() -> None:
    lines = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line.startswith("python3 dev.py")]
    assert lines == ["python3 dev.py bench --short", "python3 dev.py matrix"]


def test_one_ruff_pin_for_pre_commit_the_lint_session_and_the_dev_group() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    dev_group = pyproject.split("[dependency-groups]")[1].split("\n[")[0]  # tomllib: Python 3.11+
    pins = re.findall(r'"(ruff[^"]*)"', dev_group)
    assert len(pins) == 1 and re.fullmatch(r"ruff==\d+\.\d+\.\d+", (pin := pins[0]))
    assert re.findall(r'"(ruff[^"]*)"', pyproject) == [pin]
    hooks = (ROOT / ".pre-commit-config.yaml").read_text()
    assert re.findall(r"additional_dependencies: \[(ruff==[\d.]+)\]", hooks) == [pin, pin]
    assert re.findall(r"^RUFF = \"(.*)\"$", (ROOT / "noxfile.py").read_text(), re.M) == [pin]
    # Hooks from the package index, over the whole tree (no `files:` narrowing).
    assert "repo: local" in hooks and "language: python" in hooks and "files:" not in hooks


def test_the_noxfile_uses_only_noxs_public_api() -> None:
    """No private attribute (`session._runner`, `venv._reused`): a nox release may rename them."""
    tree = ast.parse((ROOT / "noxfile.py").read_text(encoding="utf-8"))
    private = [
        f"{node.lineno}: .{node.attr}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.endswith("__")
    ]
    private += [
        f"{node.lineno}: getattr(..., {node.args[1].value!r})"
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in {"getattr", "hasattr", "setattr"}
        and len(node.args) > 1
        and isinstance(node.args[1], ast.Constant)
        and str(node.args[1].value).startswith("_")
    ]
    assert private == []


def test_every_integration_module_that_drives_openai_runs_in_the_openai_sessions() -> None:
    # The openai-* sessions run a list of modules, not tests/integration whole (Redis, PostgreSQL,
    # SQL and the store's processes run once per Python in tests-*): a new module that drives
    # openai must be on it, or no openai generation but the newest would ever run it.
    noxfile = (ROOT / "noxfile.py").read_text(encoding="utf-8")
    listing = noxfile.split("OPENAI_PATHS = [")[1].split("\n]\n")[0]
    named = set(re.findall(r'"(\w+)"', listing)) | {
        path.stem.removeprefix("test_") for path in (ROOT / "tests" / "integration").glob("test_openai*.py")
    }
    uses = re.compile(r"^\s*(import openai|from openai\b)|importorskip\(\"openai\"|install_openai_session", re.M)
    drives_openai = {
        path.stem.removeprefix("test_")
        for path in (ROOT / "tests" / "integration").glob("test_*.py")
        if uses.search(path.read_text(encoding="utf-8"))
    } - {"downstream"}  # its own session
    assert drives_openai <= named, sorted(drives_openai - named)
