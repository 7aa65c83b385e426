"""`credential=None`: azure-identity's real DefaultAzureCredential, created once, on first use."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import azure.identity
import pytest
import requests

from azure_ad_token_auth import AzureADTokenAuth, TokenCache
from azure_ad_token_auth.testing import AzureOpenAIStandIn, ManagedIdentityEndpoint, TokenRegistry


@pytest.fixture
def counted_default(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    created: list[object] = []
    lock = threading.Lock()

    class Counted(azure.identity.DefaultAzureCredential):
        def __init__(self, **kwargs: object) -> None:
            super().__init__(**kwargs)  # type: ignore[arg-type]
            with lock:
                created.append(self)

    monkeypatch.setattr(azure.identity, "DefaultAzureCredential", Counted)
    return created


def test_default_credential_is_created_lazily_once_and_gets_tokens(counted_default) -> None:
    registry = TokenRegistry()
    with ManagedIdentityEndpoint(registry=registry) as identity, identity.patched_env():
        cache = TokenCache()
        assert counted_default == []  # nothing created, nothing asked, until first use
        assert cache.credential is None
        barrier = threading.Barrier(32)

        def worker(_: int) -> str:
            barrier.wait()
            return cache.get_token()

        with ThreadPoolExecutor(32) as pool:
            tokens = set(pool.map(worker, range(32)))
        assert len(counted_default) == 1
        assert cache.credential is counted_default[0]
        assert identity.calls == 1
        (token,) = tokens
        assert registry.check(token) == "valid"


def test_requests_adapter_with_the_default_credential_end_to_end(counted_default) -> None:
    registry = TokenRegistry()
    with ManagedIdentityEndpoint(registry=registry) as identity, identity.patched_env():
        with AzureOpenAIStandIn(registry=registry) as server, server.patched_env():
            session = requests.Session()
            session.auth = AzureADTokenAuth()
            for _ in range(10):
                assert session.post(f"{server.base_url}/echo", data=b"x").status_code == 200
            assert identity.calls == 1
            assert {r.token_status for r in server.requests} == {"valid"}
            assert identity.last_resource == "https://cognitiveservices.azure.com"
