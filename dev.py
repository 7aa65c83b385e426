#!/usr/bin/env python3
"""Developer entry point; needs only Python 3 and pip.

    python3 dev.py demo     # the cookbook completion, end to end, on loopback stand-ins
    python3 dev.py test     # lint + the whole suite, once per openai generation
    python3 dev.py bench    # the benchmark table (see README)

Each environment is a virtualenv under `.venvs/`, created on first use and reused while
its requirements are unchanged.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENVS = ROOT / ".venvs"

TEST = ["pytest>=8", "pytest-asyncio>=0.24", "time-machine>=2.13"]
# name -> what is installed besides the package itself
ENVS: dict[str, list[str]] = {
    # No openai, httpx, httpx2 or aiohttp: proves the package and the requests adapter
    # need none of them.
    "core": [".[test]"],
    # The cookbook's openai (0.28.1, requests + aiohttp), with httpx and httpx2 too.
    "openai028": [".[test,httpx,httpx2,aiohttp]", "openai==0.28.1"],
    # The newest openai (on httpx2 since 3.0), plus the linters.
    "latest": [".[test,openai,httpx,httpx2,aiohttp]", "openai>=1", "ruff>=0.6", "mypy>=1.10", "types-requests"],
}


def _python(env: str) -> Path:
    return VENVS / env / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def ensure(env: str) -> Path:
    """Create (or reuse) the virtualenv `env` with its requirements installed."""
    requirements = ENVS[env]
    pyproject = (ROOT / "pyproject.toml").read_bytes()
    stamp = hashlib.sha256(repr(requirements).encode() + pyproject).hexdigest()
    python = _python(env)
    stamp_file = VENVS / env / ".requirements-stamp"
    if python.exists() and stamp_file.exists() and stamp_file.read_text() == stamp:
        return python
    print(f"[dev] preparing environment {env!r} in .venvs/{env} ...", flush=True)
    venv.EnvBuilder(with_pip=True, clear=True).create(VENVS / env)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True, cwd=ROOT)
    subprocess.run([*pip, "-e", *requirements], check=True, cwd=ROOT)
    stamp_file.write_text(stamp)
    return python


def demo(args: list[str]) -> int:
    python = ensure("openai028")
    return subprocess.call([str(python), "-m", "azure_ad_token_auth", "demo", *args], cwd=ROOT)


def lint() -> int:
    python = ensure("latest")
    status = subprocess.call([str(python), "-m", "ruff", "check", "src", "tests", "benchmarks"], cwd=ROOT)
    status |= subprocess.call([str(python), "-m", "ruff", "format", "--check", "src"], cwd=ROOT)
    status |= subprocess.call([str(python), "-m", "mypy", "--strict", "src"], cwd=ROOT)
    print(f"[dev] lint: {'ok' if status == 0 else 'FAILED'}", flush=True)
    return status


def test(args: list[str]) -> int:
    totals = {"passed": 0, "failed": 0, "skipped": 0, "errors": 0}
    failed_envs = []
    status = lint()
    if status:
        failed_envs.append("lint")
    for env in ENVS:
        python = ensure(env)
        print(f"\n[dev] ===== tests in environment {env!r} =====", flush=True)
        proc = subprocess.run(
            [str(python), "-m", "pytest", "-q", "-p", "no:randomly", *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        sys.stdout.write(proc.stdout)
        summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
        for count, word in re.findall(r"(\d+) (passed|failed|skipped|errors?)", summary):
            totals["errors" if word.startswith("error") else word] += int(count)
        if proc.returncode not in (0,):
            failed_envs.append(env)
    print(f"\n[dev] environments: {', '.join(ENVS)}; failed: {', '.join(failed_envs) or 'none'}")
    failed = totals["failed"] + totals["errors"]
    print(f"{totals['passed']} passed, {failed} failed, {totals['skipped']} skipped")
    return 1 if failed_envs else 0


def bench(args: list[str]) -> int:
    python = ensure("latest")
    return subprocess.call([str(python), str(ROOT / "benchmarks" / "bench.py"), *args], cwd=ROOT)


def main() -> int:
    command, *args = sys.argv[1:] or ["help"]
    if command == "demo":
        return demo(args)
    if command == "test":
        return test(args)
    if command == "lint":
        return lint()
    if command == "bench":
        return bench(args)
    print(__doc__)
    return 0 if command in ("help", "-h", "--help") else 2


if __name__ == "__main__":
    sys.exit(main())
