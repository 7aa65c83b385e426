"""A second copy of the library, from another checkout, imported beside this one.

`--baseline` takes a directory (a checkout, or its `src`) or a git revision of this
repository, which is extracted with `git archive` into a temporary directory.
"""

from __future__ import annotations

import importlib
import io
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from types import ModuleType

__all__ = ["PACKAGE", "load", "source"]

PACKAGE = "azure_ad_token_auth"
ROOT = Path(__file__).resolve().parents[1]


def source(spec: str, work: Path) -> tuple[Path, str]:
    """The directory holding the baseline's package, and a name for it in the report."""
    given = Path(spec)
    for candidate in (given, given / "src"):
        if (candidate / PACKAGE / "__init__.py").is_file():
            return candidate.resolve(), str(given)
    try:
        commit = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", f"{spec}^{{commit}}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", "--format=tar", commit, "src"], capture_output=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        raise SystemExit(f"--baseline {spec}: neither a checkout nor a git revision of {ROOT} ({exc})") from None
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        # `filter=` is 3.11.4+ (and 3.10.12+): older patch releases lack it; git's archive is ours anyway.
        if hasattr(tarfile, "data_filter"):
            tar.extractall(work, filter="data")
        else:
            tar.extractall(work)  # git's archive of this repository
    return work / "src", f"`{commit}`"


def load(src: Path) -> ModuleType:
    """Import the package found under `src` without disturbing this checkout's copy.

    This checkout's modules leave `sys.modules` while the baseline imports (so its own
    imports, relative or absolute, find the baseline's modules), then come back. The
    baseline's objects keep their modules' globals, so both copies work side by side.
    """

    def ours(name: str) -> bool:
        return name == PACKAGE or name.startswith(PACKAGE + ".")

    mine = {name: module for name, module in sys.modules.items() if ours(name)}
    for name in mine:
        del sys.modules[name]
    sys.path.insert(0, str(src))
    importlib.invalidate_caches()
    try:
        baseline = importlib.import_module(PACKAGE)
        # A package that imports its public names on first use (`_lazy`): now, while its own
        # modules are the ones `sys.modules` holds.
        for name in getattr(baseline, "__all__", ()):
            getattr(baseline, name)
    finally:
        sys.path.remove(str(src))
        for name in [name for name in sys.modules if ours(name)]:
            del sys.modules[name]
        sys.modules.update(mine)
    if not Path(baseline.__file__ or "").resolve().is_relative_to(src.resolve()):
        raise SystemExit(f"--baseline: imported {baseline.__file__}, not the copy under {src}")
    return baseline


def temporary() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix="bench-baseline-")
