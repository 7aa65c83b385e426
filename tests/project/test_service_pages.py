"""docs/azure-sdk.md and docs/sql.md: their examples run as written, on loopback stand-ins.

A block marked `<!-- service-test: TAG -->` runs in a child process with azure-identity's real
`DefaultAzureCredential` getting tokens from a loopback managed-identity endpoint, and:

- `blob`, `blob_async`: a `BlobStorageStandIn` (TLS) in place of the account the reader fills
  in, its CA trusted through `REQUESTS_CA_BUNDLE` / `SSL_CERT_FILE`; real azure-storage-blob.
- `sql`: stand-ins for `pyodbc` and `mssql_python` that record what each connection is handed
  (tests/integration/fake_dbapi); the server and database names are filled in, nothing is
  contacted. Every token a connection got must be one the identity endpoint issued, valid.
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

from azure_ad_token_auth.testing import BlobStorageStandIn, ManagedIdentityEndpoint, TokenRegistry
from conftest import child_pythonpath

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "docs" / "azure-sdk.md", ROOT / "docs" / "sql.md"]
BLOCK = re.compile(r"<!-- service-test: (\w+) -->\n```python\n(.*?)```", re.DOTALL)
FAKES = ROOT / "tests" / "integration" / "fake_dbapi"
ACCOUNT = "https://<account>.blob.core.windows.net"
# Appended to a `sql` example: what the stand-in drivers were handed, as JSON.
RECORDED = """
import json as _json, sys as _sys
_tokens = []
for _name in ("pyodbc", "mssql_python"):
    _module = _sys.modules.get(_name)
    for _when, _args, _kwargs in getattr(_module, "connects", []):
        _packed = bytes(_kwargs["attrs_before"][1256])
        assert int.from_bytes(_packed[:4], "little") == len(_packed) - 4
        _tokens.append(_packed[4:].decode("utf-16-le"))
print("RECORDED", _json.dumps(_tokens))
"""


def _examples() -> list[tuple[str, str, str]]:
    return [(page.name, tag, code) for page in PAGES for tag, code in BLOCK.findall(page.read_text(encoding="utf-8"))]


def test_the_pages_have_examples_of_every_kind() -> None:
    tags = [tag for _, tag, _ in _examples()]
    assert set(tags) == {"blob", "blob_async", "sql"} and len(tags) >= 7


@pytest.mark.parametrize(("page", "tag", "code"), _examples(), ids=lambda v: v if len(v) < 16 else None)
def test_example_runs_as_written(page: str, tag: str, code: str) -> None:
    if tag.startswith("blob") and importlib.util.find_spec("azure.storage.blob") is None:
        pytest.skip("needs azure-storage-blob")
    if tag == "blob_async" and importlib.util.find_spec("aiohttp") is None:
        pytest.skip("needs aiohttp")
    registry = TokenRegistry()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "AZURE_OPENAI_"))}
    with ManagedIdentityEndpoint(registry=registry) as identity, identity.patched_env():
        env.update({k: os.environ[k] for k in identity.env()})
        if tag == "sql":
            env["PYTHONPATH"] = child_pythonpath(str(FAKES), str(ROOT / "src"))
            code = code.replace("<server>", "myserver").replace("<database>", "app") + RECORDED
            result = _run(code, env)
            (line,) = [line for line in result.stdout.splitlines() if line.startswith("RECORDED ")]
            tokens = json.loads(line.split(" ", 1)[1])
            assert tokens or "[1256]" in result.stdout
            assert {registry.check(token) for token in tokens} <= {"valid"}
        else:
            with BlobStorageStandIn(registry=registry) as storage:
                env.update(PYTHONPATH=child_pythonpath(str(ROOT / "src")), REQUESTS_CA_BUNDLE=storage.ca_path)
                env["SSL_CERT_FILE"] = storage.ca_path
                result = _run(code.replace(ACCOUNT, storage.account_url), env)
            assert storage.requests and {r.token_status for r in storage.requests} == {"valid"}
        assert identity.calls == 1  # one token for the whole example, from the real credential


def _run(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result
