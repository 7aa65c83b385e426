"""docs/testing.md's user project (an app built at import time, its tests on the kit's fixtures
and on a fixture of its own), run as a user runs it: pytest in a child process, on a project
directory of its own, whole, in reverse order, and on two xdist workers.

Before `testing.reset()`, the first test passed and every later one failed with a 401.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import child_pythonpath

ROOT = Path(__file__).resolve().parents[2]
BLOCK = re.compile(r"<!-- testing-test: ([\w.]+) -->\n```python\n(.*?)```", re.DOTALL)
FILES = ("app.py", "test_app.py", "conftest.py")

openai = pytest.importorskip("openai")
if int(openai.__version__.split(".")[0]) < 1:
    pytest.skip("the app uses openai >= 1", allow_module_level=True)


def _project(tmp_path: Path) -> Path:
    files = dict(BLOCK.findall((ROOT / "docs" / "testing.md").read_text(encoding="utf-8")))
    assert sorted(files) == sorted(FILES)
    for name, code in files.items():
        (tmp_path / name).write_text(code, encoding="utf-8")
    return tmp_path


def _pytest(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    from importlib.metadata import entry_points

    installed = any(ep.name == "azure_ad_token_auth" for ep in entry_points(group="pytest11"))
    plugin = [] if installed else ["-p", "azure_ad_token_auth.testing.plugin"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "IDENTITY_", "OPENAI_"))}
    env["PYTHONPATH"] = child_pythonpath(str(ROOT / "src"))
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly", *plugin, *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300, cwd=project)


def _passed(result: subprocess.CompletedProcess[str], count: int) -> None:
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert re.search(rf"\b{count} passed\b", result.stdout), result.stdout[-2000:]


def _tests(project: Path) -> list[str]:
    listed = _pytest(project, "--collect-only")
    assert listed.returncode == 0, listed.stdout[-2000:]
    return [line for line in listed.stdout.splitlines() if "::" in line]


def test_the_users_suite_passes_whole(tmp_path: Path) -> None:
    project = _project(tmp_path)
    _passed(_pytest(project), len(_tests(project)))


def test_the_users_suite_passes_in_reverse_order(tmp_path: Path) -> None:
    project = _project(tmp_path)
    tests = _tests(project)
    assert len(tests) >= 4
    _passed(_pytest(project, *reversed(tests)), len(tests))


def test_the_users_suite_passes_on_two_xdist_workers(tmp_path: Path) -> None:
    pytest.importorskip("xdist")
    project = _project(tmp_path)
    _passed(_pytest(project, "-p", "xdist", "-n", "2"), len(_tests(project)))
