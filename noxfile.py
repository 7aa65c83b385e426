"""The checks and the support matrix: every Python and openai generation we claim, lowest deps,
downstream clients, the built package.

Run through dev.py (which installs nox and uv): `python3 dev.py test` runs the `quick` session (lint,
types, the suite with coverage on the running Python); `python3 dev.py matrix` runs every default
session; `python3 dev.py nox --list` shows them. Each test session writes `.nox-results/<session>.json`
(versions and counts), which `python3 dev.py table` renders into README.md, and its coverage data,
which the last session (`coverage`) combines.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import nox
import nox.command
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / ".nox-results"
PYTHONS = ["3.10", "3.11", "3.12", "3.13"]
LOWEST, NEWEST = PYTHONS[0], PYTHONS[-1]
# The openai generations and the downstream clients run on one Python.
ONE = "3.11"
# The interpreter running nox: dev.py builds nox's virtualenv from the Python it runs on.
HERE = f"{sys.version_info.major}.{sys.version_info.minor}"
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
    "redis",
]
# Local servers, threads and subprocess waits leave the CPU idle: two workers per core
# halve the wall time. Timing-sensitive tests are robust to this (events, generous deadlines).
XDIST = ["-n", "4"]
# The suite every test session runs; the downstream clients have their own session.
SUITE = [*XDIST, "--ignore=tests/integration/test_downstream.py"]
# The same ruff as .pre-commit-config.yaml and pyproject's `dev` extra (tests/project/test_dev.py checks).
RUFF = "ruff==0.17.6"
MYPY = ["mypy>=1.10", "types-requests"]
# `[run] patch = subprocess` (7.10): coverage follows child processes through its own .pth file.
COVERAGE = "coverage>=7.10"
COVERAGE_DATA = RESULTS / "coverage"
# Branches alone, over the matrix's combined data (coverage.py's own fail_under, in pyproject, counts
# statements and branches together). Raise it as tests reach the branches listed as missing.
BRANCHES_FAIL_UNDER = 90  # the matrix combined measured 91.1% of branches (95.2% with statements)

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


def install(session: nox.Session, *requirements: str, project: bool = True) -> None:
    """Install the requirements into a fresh or unchanged virtualenv, then this checkout.

    The virtualenvs live outside the clone (dev.py passes --envdir), so a fresh clone reuses them;
    the project itself is reinstalled every time because the clone's path may have changed.
    """
    venv = session.virtualenv
    stamp_file = Path(venv.location) / ".requirements-stamp"
    stamp = _stamp(session, list(requirements))
    if not (stamp_file.exists() and stamp_file.read_text() == stamp):
        # No stamp: nox has just made the virtualenv (or it predates stamps): install over it.
        if stamp_file.exists():
            session.log("requirements changed: rebuilding the virtualenv")
            shutil.rmtree(venv.location, ignore_errors=True)
            venv.reuse_existing = False
            venv.create()
        session.log(f"installing {len(requirements)} requirement(s) (uv prints what it resolved and installed)")
        session.install(*requirements, silent=False)
        stamp_file.write_text(stamp)
    if project:
        session.install("--no-deps", "--reinstall-package", "azure-ad-token-auth", "-e", ".")
    # `nox --install-only`: session.run runs nothing and returns None (a run returns its output):
    # stop before the session's own steps.
    if session.run("python", "-c", "", silent=True) is None:
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


def _threads_traced(session: nox.Session) -> bool:
    """Whether coverage traces threads in this session: Python 3.12+ only (see pyproject's concurrency)."""
    return tuple(int(part) for part in str(session.python).split(".")[:2]) >= (3, 12)


def _coverage_env(session: nox.Session) -> dict[str, str]:
    """Where this session's coverage data goes (one directory per session, combined later), and how."""
    data = COVERAGE_DATA / session.name
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    env = {"COVERAGE_FILE": str(data / ".coverage")}
    if not _threads_traced(session):
        env["AZURE_AD_TOKEN_AUTH_COVERAGE_CONCURRENCY"] = "multiprocessing"  # main threads only
    return env


def _coverage_totals(session: nox.Session, env: dict[str, str]) -> dict[str, float]:
    """Combine the data files (one per process), print the per-module table, return the totals.

    `total` is coverage.py's figure (statements and branches together, what `fail_under` checks);
    `branches` counts branches alone.
    """
    session.run("python", "-m", "coverage", "combine", "--quiet", env=env, success_codes=[0, 1])
    session.run("python", "-m", "coverage", "report", "--fail-under=0", env=env)
    path = Path(env["COVERAGE_FILE"]).with_name("coverage.json")
    session.run("python", "-m", "coverage", "json", "--quiet", "--fail-under=0", "-o", str(path), env=env)
    totals = json.loads(path.read_text())["totals"]
    branches = 100.0 * totals["covered_branches"] / max(totals["num_branches"], 1)
    return {"total": round(totals["percent_covered"], 1), "branches": round(branches, 1)}


def pytest(session: nox.Session, *args: str, coverage: bool = True, checks_failed: int = 0) -> None:
    """Run pytest (under coverage), record its counts and the versions under test, fail on a failure.

    `checks_failed`: lint or type checks that failed before the suite ran; each counts as one failure.
    """
    RESULTS.mkdir(exist_ok=True)
    junit = RESULTS / f"{session.name}.xml"
    junit.unlink(missing_ok=True)
    runner = ["python", "-m", "coverage", "run", "-m", "pytest"] if coverage else ["python", "-m", "pytest"]
    env = _coverage_env(session) if coverage else {}
    status = session.run(
        *runner,
        "-p",
        "no:randomly",
        f"--junitxml={junit}",
        *args,
        *session.posargs,
        env=env,
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
    record["failed"] += checks_failed
    if coverage:
        # Printed per session; the thresholds hold for the matrix's combined data (`coverage` session).
        record["coverage"] = {**_coverage_totals(session, env), "threads": _threads_traced(session)}
    (RESULTS / f"{session.name}.json").write_text(json.dumps(record, indent=1) + "\n")
    if status is not True or record["failed"]:
        session.error(f"{record['failed']} failed")


TEST = ["test"]
ALL_EXTRAS = ["openai", "httpx", "httpx2", "aiohttp", "sql", "redis", "postgres"]


LINT = [["ruff", "check", "."], ["ruff", "format", "--check", "."]]


def typecheck(python: str) -> list[list[str]]:
    """mypy --strict over src, then pyproject's [tool.mypy] (src and tests, tests less strictly)."""
    return [["mypy", "--strict", "--python-version", python, "src"], ["mypy", "--python-version", python]]


@nox.session(python=HERE, default=False)
def quick(session: nox.Session) -> None:
    """Lint, types and the suite with branch coverage on the running Python (`python3 dev.py test`)."""
    install(session, extras(*TEST, *ALL_EXTRAS), "pytest-xdist", COVERAGE, RUFF, *MYPY)
    checks_failed = 0
    for command in [*LINT, *typecheck(HERE)]:
        # Each check runs even after one failed, and each failure counts in the closing line.
        try:
            session.run(*command)
        except nox.command.CommandFailed:
            session.warn(f"FAILED: {' '.join(command)}")
            checks_failed += 1
    pytest(session, *SUITE, checks_failed=checks_failed)


@nox.session(python=NEWEST)
def lint(session: nox.Session) -> None:
    """ruff: lint and format, over the whole tree (the pinned ruff, as pre-commit runs it)."""
    install(session, RUFF, project=False)
    for command in LINT:
        session.run(*command)


@nox.session(python=[LOWEST, NEWEST])
def mypy(session: nox.Session) -> None:
    """mypy --strict on src, and over tests, on the oldest and the newest supported Python."""
    install(session, extras(*TEST, *ALL_EXTRAS), *MYPY)
    for command in typecheck(str(session.python)):
        session.run(*command)


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """The whole suite with every optional package at its newest."""
    install(session, extras(*TEST, *ALL_EXTRAS), "pytest-xdist", COVERAGE)
    pytest(session, *SUITE)


# What the openai sessions run (see `openai`): the test modules that drive openai, its install
# helpers or the clients it builds on. Redis, PostgreSQL, SQL, the store's processes and the Azure
# SDK clients never import openai: the tests-* sessions run them, once per Python.
OPENAI_PATHS = [
    *(f"tests/integration/test_{name}.py" for name in ("aiohttp", "demo", "http_client_auth", "httpx", "requests")),
    *(f"tests/integration/test_{name}.py" for name in ("real_credentials", "token_refresh")),
    *sorted(str(path.relative_to(ROOT)) for path in (ROOT / "tests" / "integration").glob("test_openai*.py")),
    "tests/adapters",
    "tests/project/test_examples.py",
    "tests/project/test_public_api.py",
    "tests/unit/test_demo_arguments.py",
]

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
    """What openai touches, against one openai generation: the integration layer (real openai
    clients, the install helpers, the demo), the adapter suite and the docs' examples. The unit
    layer and the testing kit do not depend on openai: the tests-* sessions run them."""
    packages = GENERATIONS[generation]
    wanted = [extras(*TEST, *(p for p in packages if p in ALL_EXTRAS)), *(p for p in packages if p not in ALL_EXTRAS)]
    install(session, *wanted, "pytest-xdist", COVERAGE)
    pytest(session, *SUITE, *OPENAI_PATHS)


@nox.session(python=ONE)
def no_extras(session: nox.Session) -> None:
    """No openai, httpx, httpx2 or aiohttp: the package imports and the requests adapter works."""
    install(session, extras(*TEST), "pytest-xdist", COVERAGE)
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
    install(session, extras(*TEST, *ALL_EXTRAS), "pytest-xdist", COVERAGE, *pins)
    pytest(session, *SUITE)


@nox.session(python=ONE)
def downstream(session: nox.Session) -> None:
    """langchain-openai, llama-index and litellm through our providers, on the loopback stand-in."""
    clients = ["langchain-openai>=1", "llama-index-llms-azure-openai>=0.6", "litellm>=1.70"]
    install(session, extras(*TEST, "openai", "httpx", "aiohttp"), *clients)
    pytest(session, "tests/integration/test_downstream.py", coverage=False)


@nox.session(python=ONE, default=False)
def demo(session: nox.Session) -> None:
    """The README's openai >= 1 recipe (newest openai), end to end on loopback stand-ins."""
    install(session, extras("openai", "httpx", "aiohttp", "testing"))
    session.run("python", "-m", "azure_ad_token_auth", "demo", *session.posargs)


@nox.session(python=ONE, default=False)
def demo_cookbook(session: nox.Session) -> None:
    """The cookbook's completion on openai 0.28.1, end to end on loopback stand-ins."""
    install(session, extras("httpx", "aiohttp", "testing"), "openai==0.28.1")
    session.run("python", "-m", "azure_ad_token_auth", "demo", *session.posargs)


# The openai the providers' cost target was first set on, measured beside the newest.
BENCH_OPENAI = "3.60.0"


@nox.session(python=ONE, default=False)
def bench(session: nox.Session) -> None:
    """The benchmark (`python -m benchmarks`; docs/benchmarks.md): `-- --short`, `--baseline REV`, `--markdown FILE`."""
    # The test extra brings time-machine (refresh herds, fleets), trustme (the https row) and the
    # Redis and PostgreSQL servers and drivers; redis-entraid and Microsoft's azure-postgresql-auth are
    # measured beside our Redis and PostgreSQL providers (this session only).
    install(session, extras(*TEST, *ALL_EXTRAS), "openai>=1", "redis-entraid>=1.0", "azure-postgresql-auth>=1.1")
    # The providers' row measures them on BENCH_OPENAI beside the newest (installed above), each
    # in a child process: that openai goes alone into a directory the child puts first on its
    # path (its dependencies are the newest's).
    other = Path(session.create_tmp()) / f"openai-{BENCH_OPENAI}"
    if not (other / "openai").is_dir():
        target = ["--no-deps", "--python", str(session.python), "--target", str(other), f"openai=={BENCH_OPENAI}"]
        session.run("uv", "pip", "install", "--quiet", *target, external=True)
    session.run("python", "-m", "benchmarks", "--openai-at", str(other), *session.posargs)


# The docs site's tools, pinned: a new release must not break `mkdocs build --strict` unseen.
DOCS = ["mkdocs-material==9.8.2", "mkdocstrings[python]==1.0.8", "mkdocstrings-python==2.0.11"]


@nox.session(python=ONE)
def docs(session: nox.Session) -> None:
    """The docs site (mkdocs.yml): mkdocs build --strict, the API reference from the docstrings."""
    session.install(*DOCS)
    site = Path(session.create_tmp()) / "site"
    session.run("mkdocs", "build", "--strict", "--site-dir", str(site), env={"NO_MKDOCS_2_WARNING": "1"})


@nox.session(name="docs-serve", python=ONE, default=False)
def docs_serve(session: nox.Session) -> None:
    """The docs site on http://127.0.0.1:8000, rebuilt and reloaded in the browser on every save
    (`python3 dev.py docs`); `-- -a 127.0.0.1:8001` for another port. The same pinned tools as `docs`."""
    session.install(*DOCS)
    # The API reference comes from the docstrings: a change under src/ reloads it too. Not strict:
    # a page being written still shows, its warnings printed; the `docs` session is the check.
    command = ["mkdocs", "serve", "--no-strict", "--watch", "src", *session.posargs]
    session.run(*command, env={"NO_MKDOCS_2_WARNING": "1"})


def _version() -> str:
    text = (ROOT / "src" / "azure_ad_token_auth" / "_version.py").read_text()
    match = re.search(r'^__version__ = "([^"]+)"', text, re.M)
    if not match:
        raise ValueError("_version.py has no __version__")
    return match.group(1)


def check_wheel(names: list[str], entry_points: str, version: str) -> list[str]:
    """What is wrong with a wheel's file list and entry points (tests/project/test_dev.py runs this)."""
    problems = []
    package = "azure_ad_token_auth/"
    modules = sorted(str(p.relative_to(ROOT / "src")) for p in (ROOT / "src" / "azure_ad_token_auth").rglob("*.py"))
    wanted = [*modules, f"{package}py.typed"]
    problems += [f"missing from the wheel: {name}" for name in wanted if name not in names]
    dist_info = f"azure_ad_token_auth-{version}.dist-info/"
    allowed = (package, dist_info)
    problems += [f"not ours in the wheel: {name}" for name in names if not name.startswith(allowed)]
    problems += [f"a test or dev file in the wheel: {n}" for n in names if re.search(r"(^|/)(tests?|conftest)[/_.]", n)]
    for needed in (f"{dist_info}METADATA", f"{dist_info}licenses/LICENSE"):
        if needed not in names:
            problems.append(f"missing from the wheel: {needed}")
    for line in (
        "azure-ad-token-auth = azure_ad_token_auth._cli:main",
        "azure_ad_token_auth = azure_ad_token_auth.testing.plugin",
    ):
        if line not in entry_points:
            problems.append(f"entry point missing: {line}")
    return problems


def check_sdist(names: list[str]) -> list[str]:
    """What is wrong with an sdist's file list (paths below its top directory)."""
    wanted = ["pyproject.toml", "README.md", "LICENSE", "src/azure_ad_token_auth/__init__.py"]
    wanted.append("src/azure_ad_token_auth/py.typed")
    problems = [f"missing from the sdist: {name}" for name in wanted if name not in names]
    stray = (".venv/", ".nox-results/", ".git/", "site/", "dist/", ".mypy_cache/", ".ruff_cache/")
    problems += [f"not for the sdist: {name}" for name in names if name.startswith(stray) or "__pycache__" in name]
    return problems


@nox.session(python=ONE)
def package(session: nox.Session) -> None:
    """Build the sdist and wheel as a release would, check them, install the wheel and import it."""
    install(session, "twine>=6", project=False)
    dist = Path(session.create_tmp()) / "dist"
    shutil.rmtree(dist, ignore_errors=True)
    # uv builds the sdist, then the wheel from the sdist (as `python -m build` does).
    session.run("uv", "build", "--quiet", "--out-dir", str(dist), str(ROOT), external=True)
    version = _version()
    wheels, sdists = sorted(dist.glob("*.whl")), sorted(dist.glob("*.tar.gz"))
    if [w.name for w in wheels] != [f"azure_ad_token_auth-{version}-py3-none-any.whl"]:
        session.error(f"expected one wheel for version {version}, got {[w.name for w in wheels]}")
    if [s.name for s in sdists] != [f"azure_ad_token_auth-{version}.tar.gz"]:
        session.error(f"expected one sdist for version {version}, got {[s.name for s in sdists]}")
    session.run("twine", "check", "--strict", *map(str, [*wheels, *sdists]))
    with zipfile.ZipFile(wheels[0]) as wheel:
        names = names_in_wheel = wheel.namelist()
        dist_info = f"azure_ad_token_auth-{version}.dist-info/"
        metadata = wheel.read(f"{dist_info}METADATA").decode()
        entry_points = wheel.read(f"{dist_info}entry_points.txt").decode()
    problems = check_wheel(names, entry_points, version)
    if f"\nVersion: {version}\n" not in metadata:
        problems.append(f"METADATA does not say Version: {version}")
    if problems:
        session.error("; ".join(problems))
    session.log(f"wheel: {len(names)} files, version {version}, entry points present, no tests or dev files")

    with tarfile.open(sdists[0]) as sdist:
        problems = check_sdist([name.split("/", 1)[-1] for name in sdist.getnames()])
    if problems:
        session.error("; ".join(problems))

    # A clean virtualenv per extra, outside the checkout (-I: no cwd on sys.path): install, import.
    wheel = str(wheels[0])
    optional = {k: v for k, v in PYPROJECT["project"]["optional-dependencies"].items() if k != "test"}
    base = f"import azure_ad_token_auth as a, azure_ad_token_auth.testing; assert a.__version__ == {version!r}"
    absent = f"import importlib.util as u; assert not any(u.find_spec(m) for m in {sorted(optional)!r})"
    here = Path(session.create_tmp())
    for extra in ["", *optional]:
        venv = here / f"venv-{extra or 'plain'}"
        session.log(f"clean virtualenv: the wheel{f'[{extra}]' if extra else ''}")
        session.run("uv", "venv", "--quiet", "--clear", "--python", str(session.python), str(venv), external=True)
        python = str(venv / "bin" / "python")
        target = f"azure-ad-token-auth[{extra}] @ file://{wheel}" if extra else wheel
        session.run("uv", "pip", "install", "--quiet", "--python", python, target, external=True)
        checks = [base]
        if not extra:
            checks.append(absent)
        else:
            names = [Requirement(r).name for r in optional[extra]]
            checks.append(f"import importlib.metadata as m; [m.version(n) for n in {names!r}]")
            module = f"azure_ad_token_auth.{extra}"
            if f"{module.replace('.', '/')}.py" in names_in_wheel:  # the extra's adapter module
                checks.append(f"import {module}")
            if extra == "openai":
                checks.append("import openai, azure_ad_token_auth as a; a.install_openai_session")
        for code in checks:
            session.run(python, "-I", "-c", code, external=True)
        if not extra:
            session.run(str(venv / "bin" / "azure-ad-token-auth"), "--help", external=True, silent=True)


@nox.session(python=ONE)
def coverage(session: nox.Session) -> None:
    """Coverage over every test session of this run, combined; fails under the thresholds.

    coverage.py's total (statements and branches) must reach pyproject's `fail_under`; branches
    alone must reach BRANCHES_FAIL_UNDER.
    """
    install(session, COVERAGE, project=False)
    files = sorted(str(p) for p in COVERAGE_DATA.glob("*/.coverage"))
    if not files:
        session.skip("no coverage data: run the test sessions first")
    env = {"COVERAGE_FILE": str(COVERAGE_DATA / ".coverage")}
    Path(env["COVERAGE_FILE"]).unlink(missing_ok=True)
    session.run("python", "-m", "coverage", "combine", "--keep", "--quiet", *files, env=env)
    totals = _coverage_totals(session, env)
    (COVERAGE_DATA / "combined.json").write_text(json.dumps({**totals, "sessions": len(files)}) + "\n")
    session.run("python", "-m", "coverage", "report", "--format=total", env=env, silent=True)  # fail_under
    if totals["branches"] < BRANCHES_FAIL_UNDER:
        session.error(f"branch coverage {totals['branches']}% is under {BRANCHES_FAIL_UNDER}%")
