"""docs/postgres.md: every example runs as written, against Azure's check on loopback.

A block is marked `<!-- postgres-test: TAG -->`, the tag naming the driver it needs. The
examples run one after the other in one child process (importing the drivers and
azure-identity once, not once per example), each on fresh shared caches, with
azure-identity's real `DefaultAzureCredential` getting tokens from a loopback
managed-identity endpoint; the child marks when each starts and ends, so what the endpoint
and the server saw is told apart per example. The server the examples name,
`myserver.postgres.database.azure.com`, served by an `AzurePostgresStandIn` whose certificate
carries that name. libpq reaches it through `PGHOSTADDR` (it then never looks the name up);
asyncpg, which has no such variable, through a line the runner puts before the example, which
resolves that one name to 127.0.0.1. `PGPORT` and `PGSSLROOTCERT` do the rest, as on a machine
configured for Azure.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from azure_ad_token_auth.testing import AzurePostgresStandIn, ManagedIdentityEndpoint, PostgresServer, TokenRegistry
from conftest import child_pythonpath

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "postgres.md"
BLOCK = re.compile(r"<!-- postgres-test: (\w+) -->\n```python\n(.*?)```", re.DOTALL)
HOST, USER = "myserver.postgres.database.azure.com", "my-app"
NEEDS = {"psycopg": ["psycopg"], "pool": ["psycopg", "psycopg_pool"], "asyncpg": ["asyncpg"]}
NEEDS["sqlalchemy"] = ["sqlalchemy", "psycopg", "asyncpg", "greenlet"]
RESOLVE = f"""\
import socket as _socket
_getaddrinfo = _socket.getaddrinfo
_socket.getaddrinfo = lambda host, *a, **k: _getaddrinfo("127.0.0.1" if host == {HOST!r} else host, *a, **k)
"""


def _examples() -> list[tuple[str, str]]:
    return BLOCK.findall(PAGE.read_text(encoding="utf-8"))


def test_the_page_has_an_example_for_every_driver() -> None:
    assert {tag for tag, _ in _examples()} == set(NEEDS)
    assert len(_examples()) >= 6


# Runs each example from a clean world (as a process of its own would: `testing.reset()`), between markers.
RUNNER = """\
import json, sys, time
from azure_ad_token_auth.testing import reset
for number, code in enumerate(json.loads(sys.stdin.read())):
    reset()
    print("@@", number, time.time(), flush=True)
    exec(compile(code, f"<docs/postgres.md example {number}>", "exec"), {"__name__": "__main__"})
    print("@@", number, time.time(), flush=True)
"""


def test_every_example_runs_as_written(azure_postgres_server: PostgresServer) -> None:
    examples = [code for tag, code in _examples() if all(importlib.util.find_spec(m) for m in NEEDS[tag])]
    if not examples:
        pytest.skip("no PostgreSQL driver installed")
    registry = TokenRegistry()
    with ManagedIdentityEndpoint(registry=registry) as identity, identity.patched_env():
        with AzurePostgresStandIn(azure_postgres_server, registry=registry, host_name=HOST) as stand_in:
            stand_in.add_principal(USER)  # the registry's tokens' identity
            env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
            env.update(stand_in.environ(), PYTHONPATH=child_pythonpath(str(ROOT / "src")))
            result = subprocess.run(
                [sys.executable, "-c", RESOLVE + RUNNER],
                input=json.dumps(examples),
                capture_output=True,
                text=True,
                env=env,
                timeout=300,
                cwd=ROOT,
            )
            records, requests = stand_in.records, identity.requests
    assert result.returncode == 0, result.stderr[-3000:]
    marks = [line.split() for line in result.stdout.splitlines() if line.startswith("@@ ")]
    assert len(marks) == 2 * len(examples)
    printed = result.stdout.split("@@ ")
    for number in range(len(examples)):
        start, end = float(marks[2 * number][2]), float(marks[2 * number + 1][2])
        seen = [r for r in records if start <= r.time <= end]
        assert seen and all(r.outcome == "accepted" and r.user == USER for r in seen), f"example {number}"
        # DefaultAzureCredential, once: one cache per process however many connections.
        assert len([r for r in requests if start <= r["time"] <= end]) == 1, f"example {number}"
        assert printed[2 * number + 1].split("\n", 1)[1].strip(), f"example {number} printed nothing"
    assert len(records) == sum(r.outcome == "accepted" for r in records)
