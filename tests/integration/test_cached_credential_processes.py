"""`CachedCredential(shared_cache=...)` across worker processes (#13387, #17787: 48 and 60
processes, each asking the identity endpoint, which answers 429)."""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path
from typing import Any

import azure.identity  # noqa: F401 - imported before forking, as a preloading server does
import pytest

from azure_ad_token_auth import CachedCredential
from azure_ad_token_auth.testing import ManagedIdentityEndpoint, TokenRegistry

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="fork and POSIX modes")

SCOPE = "https://vault.azure.net/.default"


def _fleet(workers: int, shared_cache: Any, results: Path) -> list[int]:
    """`workers` forked processes, each with its own CachedCredential (and so its own
    DefaultAzureCredential), asking for a token; their exit statuses."""
    children = []
    for number in range(workers):
        pid = os.fork()
        if pid == 0:
            status = 1
            try:
                credential = CachedCredential(shared_cache=shared_cache)
                tokens = {credential.get_token(SCOPE).token for _ in range(20)}
                (results / f"{number}").write_text("\n".join(tokens))
                status = 0
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(status)
        children.append(pid)
    return [os.waitpid(pid, 0)[1] for pid in children]


@pytest.mark.parametrize(("shared", "identity_calls"), [(True, 1), (False, 12)], ids=["shared", "unshared"])
def test_a_fleet_of_workers_asks_the_identity_endpoint_once_with_shared_cache(
    tmp_path: Path, shared: bool, identity_calls: int
) -> None:
    results = tmp_path / "results"
    results.mkdir()
    registry = TokenRegistry()
    with ManagedIdentityEndpoint(registry=registry) as identity, identity.patched_env():
        statuses = _fleet(12, tmp_path / "store" if shared else False, results)
        assert statuses == [0] * 12
        assert identity.calls == identity_calls
    tokens = {path.read_text() for path in results.iterdir()}
    assert len(tokens) == identity_calls and all(registry.check(t) == "valid" for t in tokens)
