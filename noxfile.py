"""The support matrix: every Python and openai generation we claim, lowest deps, downstream clients.

Run through `python3 dev.py test` (which installs nox and uv); `python3 dev.py nox --list` shows the
sessions. Each test session writes `.nox-results/<session>.json` (versions and counts), which
`python3 dev.py table` renders into README.md.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import nox
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / ".nox-results"
PYTHONS = ["3.10", "3.11", "3.12", "3.13"]
LOWEST, NEWEST = PYTHONS[0], PYTHONS[-1]
# The openai generations and the downstream clients run on one Python.
ONE = "3.11"
PYPROJECT = nox.project.load_toml(ROOT / "pyproject.toml")
# Packages whose versions a session's row in the support table names.
REPORTED = [
    "openai",
    "httpx",
    "httpx2",
    "aiohttp",
    "requests",
    "azure-core",
    "azure-identity",
    "langchain-openai",
    "llama-index-llms-azure-openai",
    "litellm",
]
# Local servers, threads and subprocess waits leave the CPU idle: two workers per core
# halve the wall time. Timing-sensitive tests are robust to this (events, generous deadlines).
XDIST = ["-n", "4"]
# The suite every test session runs; the downstream clients have their own session.
SUITE = [*XDIST, "--ignore=tests/integration/test_downstream.py"]

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.reuse_venv = "yes"
nox.options.download_python = "never"  # a missing interpreter is reported, never fetched


def _find_interpreters() -> None:
    """Put pyenv's interpreters on PATH for nox, whatever the shell's PATH holds."""
    pyenv_root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    pyenv = shutil.which("pyenv") or str(pyenv_root / "bin" / "pyenv")
    dirs = []
    for version in PYTHONS:
        prefix = ""
        if Path(pyenv).exists():
            proc = subprocess.run([pyenv, "prefix", version], capture_output=True, text=True, check=False)
            prefix = proc.stdout.strip() if proc.returncode == 0 else ""
        if not prefix:
            candidates = sorted((pyenv_root / "versions").glob(f"{version}.*"))
            prefix = str(candidates[-1]) if candidates else ""
        if prefix and (Path(prefix) / "bin" / f"python{version}").exists():
            dirs.append(str(Path(prefix) / "bin"))
    os.environ["PATH"] = os.pathsep.join([*dirs, os.environ.get("PATH", "")])


_find_interpreters()


def _stamp(session: nox.Session, requirements: list[str]) -> str:
    """What a session's virtualenv was built from: a change rebuilds it."""
    project = json.dumps(PYPROJECT["project"], sort_keys=True)
    return hashlib.sha256(json.dumps([requirements, project, session.python]).encode()).hexdigest()


def install(session: nox.Session, *requirements: str) -> None:
    """Install the requirements into a fresh or unchanged virtualenv, then this checkout.

    The virtualenvs live outside the clone (dev.py passes --envdir), so a fresh clone reuses them;
    the project itself is reinstalled every time because the clone's path may have changed.
    """
    venv = session.virtualenv
    stamp_file = Path(venv.location) / ".requirements-stamp"
    stamp = _stamp(session, list(requirements))
    if not (stamp_file.exists() and stamp_file.read_text() == stamp):
        if stamp_file.exists() or getattr(venv, "_reused", False):
            session.log("requirements changed: rebuilding the virtualenv")
            shutil.rmtree(venv.location, ignore_errors=True)
            venv.reuse_existing = False
            venv.create()
        session.install(*requirements)
        stamp_file.write_text(stamp)
    session.install("--no-deps", "--reinstall-package", "azure-ad-token-auth", "-e", ".")
    if session._runner.global_config.install_only:  # `nox --install-only`: stop before any run
        session.skip("installed only")


def extras(*names: str) -> str:
    return f".[{','.join(names)}]" if names else "."


def _versions(session: nox.Session) -> dict[str, str | None]:
    code = (
        "import json, importlib.metadata as m\n"
        "def v(n):\n"
        "    try: return m.version(n)\n"
        "    except m.PackageNotFoundError: return None\n"
        f"print(json.dumps({{n: v(n) for n in {REPORTED!r}}}))"
    )
    out = session.run("python", "-c", code, silent=True)
    return json.loads(str(out).strip().splitlines()[-1]) if out else {}


def pytest(session: nox.Session, *args: str) -> None:
    """Run pytest, record its counts and the versions under test, fail the session on a failure."""
    RESULTS.mkdir(exist_ok=True)
    junit = RESULTS / f"{session.name}.xml"
    junit.unlink(missing_ok=True)
    status = session.run(
        "python",
        "-m",
        "pytest",
        "-p",
        "no:randomly",
        f"--junitxml={junit}",
        *args,
        *session.posargs,
        success_codes=[0, 1],
    )
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    if junit.exists():
        for suite in ET.parse(junit).getroot().iter("testsuite"):
            tests, skipped = int(suite.get("tests", 0)), int(suite.get("skipped", 0))
            failed = int(suite.get("failures", 0)) + int(suite.get("errors", 0))
            counts["passed"] += tests - skipped - failed
            counts["failed"] += failed
            counts["skipped"] += skipped
        junit.unlink()
    python = session.run("python", "-c", "import platform; print(platform.python_version())", silent=True)
    record = {
        "session": session.name,
        "python": str(python).strip(),
        "versions": _versions(session),
        "finished": time.time(),
        **counts,
    }
    (RESULTS / f"{session.name}.json").write_text(json.dumps(record, indent=1) + "\n")
    if status is not True or counts["failed"]:
        session.error(f"{counts['failed']} failed")


TEST = ["test"]
ALL_EXTRAS = ["openai", "httpx", "httpx2", "aiohttp"]


@nox.session(python=NEWEST)
def lint(session: nox.Session) -> None:
    """ruff: lint and format."""
    install(session, "ruff>=0.6")
    session.run("ruff", "check", "src", "tests", "benchmarks", "noxfile.py", "dev.py")
    session.run("ruff", "format", "--check", "src")


@nox.session(python=[LOWEST, NEWEST])
def mypy(session: nox.Session) -> None:
    """mypy --strict on the oldest and the newest supported Python."""
    install(session, extras(*TEST, *ALL_EXTRAS), "mypy>=1.10", "types-requests")
    session.run("mypy", "--strict", "--python-version", session.python, "src")  # type: ignore[arg-type]


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """The whole suite with every optional package at its newest."""
    install(session, extras(*TEST, *ALL_EXTRAS), "pytest-xdist")
    pytest(session, *SUITE)


# openai generation -> what to install besides the test extra.
GENERATIONS = {
    # The cookbook's openai: requests + aiohttp.
    "0.28": ["httpx", "httpx2", "aiohttp", "openai==0.28.1"],
    # The oldest 1.x we support (1.0-1.6 drop an http_client's auth); 1.7-1.55.2 pass `proxies=`,
    # which httpx 0.28 removed, so they need an older httpx.
    "1-oldest": ["httpx", "httpx2", "aiohttp", "openai~=1.7.2", "httpx<0.28"],
    "1-last": ["httpx", "httpx2", "aiohttp", "openai<2"],
    "2-last": ["httpx", "httpx2", "aiohttp", "openai>=2,<3"],
    "3-newest": ["httpx", "httpx2", "aiohttp", "openai>=3"],
}


@nox.session(python=ONE)
@nox.parametrize("generation", list(GENERATIONS), ids=list(GENERATIONS))
def openai(session: nox.Session, generation: str) -> None:
    """The whole suite against one openai generation."""
    packages = GENERATIONS[generation]
    wanted = [extras(*TEST, *(p for p in packages if p in ALL_EXTRAS)), *(p for p in packages if p not in ALL_EXTRAS)]
    install(session, *wanted, "pytest-xdist")
    pytest(session, *SUITE)


@nox.session(python=ONE)
def no_extras(session: nox.Session) -> None:
    """No openai, httpx, httpx2 or aiohttp: the package imports and the requests adapter works."""
    install(session, extras(*TEST), "pytest-xdist")
    absent = "import importlib.util as u; assert not any(u.find_spec(m) for m in ('openai','httpx','httpx2','aiohttp'))"
    session.run("python", "-c", absent)
    pytest(session, *SUITE)


def lowest_constraints() -> list[str]:
    """`name==minimum` for every runtime dependency and extra (not the test tools)."""
    project = PYPROJECT["project"]
    requirements = list(project["dependencies"])
    for extra, values in project["optional-dependencies"].items():
        if extra != "test":
            requirements += values
    pins = []
    for text in requirements:
        requirement = Requirement(text)
        minimums = [spec.version for spec in requirement.specifier if spec.operator in (">=", "==", "~=")]
        if not minimums:
            raise ValueError(f"{text!r} in pyproject.toml declares no minimum")
        pins.append(f"{requirement.name}=={max(minimums)}")
    return pins


@nox.session(python=LOWEST)
def lowest(session: nox.Session) -> None:
    """Every direct dependency and extra at the minimum pyproject declares, on the oldest Python."""
    pins = lowest_constraints()
    install(session, extras(*TEST, *ALL_EXTRAS), "pytest-xdist", *pins)
    pytest(session, *SUITE)


@nox.session(python=ONE)
def downstream(session: nox.Session) -> None:
    """langchain-openai, llama-index and litellm through our providers, on the loopback stand-in."""
    clients = ["langchain-openai>=1", "llama-index-llms-azure-openai>=0.6", "litellm>=1.70"]
    install(session, extras(*TEST, "openai", "httpx", "aiohttp"), *clients)
    pytest(session, "tests/integration/test_downstream.py")


@nox.session(python=ONE, default=False)
def demo(session: nox.Session) -> None:
    """The README's openai >= 1 recipe (newest openai), end to end on loopback stand-ins."""
    install(session, extras("openai", "httpx", "aiohttp"), "trustme>=1.0")
    session.run("python", "-m", "azure_ad_token_auth", "demo", *session.posargs)


@nox.session(python=ONE, default=False)
def demo_cookbook(session: nox.Session) -> None:
    """The cookbook's completion on openai 0.28.1, end to end on loopback stand-ins."""
    install(session, extras("httpx", "aiohttp"), "openai==0.28.1", "trustme>=1.0")
    session.run("python", "-m", "azure_ad_token_auth", "demo", *session.posargs)


@nox.session(python=ONE, default=False)
def bench(session: nox.Session) -> None:
    """The benchmark (`python -m benchmarks`; docs/benchmarks.md): `-- --short`, `--baseline REV`, `--markdown FILE`."""
    # The test extra brings time-machine (refresh herds, fleets) and trustme (the https row).
    install(session, extras(*TEST, *ALL_EXTRAS), "openai>=1")
    session.run("python", "-m", "benchmarks", *session.posargs)


# The docs site's tools, pinned: a new release must not break `mkdocs build --strict` unseen.
DOCS = ["mkdocs-material==9.8.2", "mkdocstrings[python]==1.0.8", "mkdocstrings-python==2.0.11"]


@nox.session(python=ONE)
def docs(session: nox.Session) -> None:
    """The docs site (mkdocs.yml): mkdocs build --strict, the API reference from the docstrings."""
    session.install(*DOCS)
    site = Path(session.create_tmp()) / "site"
    session.run("mkdocs", "build", "--strict", "--site-dir", str(site), env={"NO_MKDOCS_2_WARNING": "1"})
