"""`CachedCredential` under azure-core's bearer token policies (real pipelines, real transports)
and real Azure SDK clients (azure-storage-blob), against `BlobStorageStandIn` over TLS.

Credentials are azure-identity's own (`DefaultAzureCredential` through the loopback managed
identity endpoint, `ClientSecretCredential` through the Entra ID stand-in) or counted fakes.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import azure.identity
import pytest
import requests
from azure.core.pipeline import AsyncPipeline, Pipeline
from azure.core.pipeline.policies import AsyncBearerTokenCredentialPolicy, BearerTokenCredentialPolicy
from azure.core.pipeline.transport import RequestsTransport
from azure.core.rest import HttpRequest

from azure_ad_token_auth import AsyncCachedCredential, AzureADTokenAuth, CachedCredential
from azure_ad_token_auth.testing import (
    AsyncFakeCredential,
    BlobStorageStandIn,
    EntraIdStandIn,
    FakeCredential,
    ManagedIdentityEndpoint,
    TokenRegistry,
)

pytest.importorskip("trustme")

SCOPE = "https://storage.azure.com/.default"
CLAIMS = '{"access_token":{"nbf":{"essential":true,"value":"1900000000"}}}'


@pytest.fixture
def registry() -> TokenRegistry:
    return TokenRegistry()


@pytest.fixture
def storage(registry: TokenRegistry) -> Iterator[BlobStorageStandIn]:
    with BlobStorageStandIn(registry=registry) as stand_in:
        yield stand_in


def _pipeline(credential: Any, storage: BlobStorageStandIn) -> Pipeline[Any, Any]:
    """What every Azure SDK client builds: the bearer token policy over a real transport."""
    transport = RequestsTransport(connection_verify=storage.ca_path)
    return Pipeline(transport=transport, policies=[BearerTokenCredentialPolicy(credential, SCOPE)])


def _async_pipeline(credential: Any, storage: BlobStorageStandIn) -> AsyncPipeline[Any, Any]:
    """The async form (aiohttp: the `no_extras` session has none)."""
    pytest.importorskip("aiohttp")
    from azure.core.pipeline.transport import AioHttpTransport

    transport = AioHttpTransport(connection_verify=storage.ca_path)
    return AsyncPipeline(transport=transport, policies=[AsyncBearerTokenCredentialPolicy(credential, SCOPE)])


def _get(pipeline: Pipeline[Any, Any], storage: BlobStorageStandIn) -> int:
    response = pipeline.run(HttpRequest("GET", f"{storage.account_url}/c/missing.txt"))
    return int(response.http_response.status_code)


def _herd(threads: int, work: Any) -> list[Any]:
    barrier = threading.Barrier(threads)

    def one(i: int) -> Any:
        barrier.wait()
        return work(i)

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(one, range(threads)))


def test_64_threads_through_one_sync_bearer_policy_make_one_credential_call(storage: BlobStorageStandIn) -> None:
    # The sync policy has no lock: on a cold client every thread asks its credential.
    raw = FakeCredential(registry=storage.registry, delay=0.2)
    pipeline = _pipeline(raw, storage)
    assert set(_herd(64, lambda _: _get(pipeline, storage))) == {404}
    assert raw.calls > 1  # what CachedCredential is for

    fake = FakeCredential(registry=storage.registry, delay=0.2)
    pipeline = _pipeline(CachedCredential(fake), storage)
    assert set(_herd(64, lambda _: _get(pipeline, storage))) == {404}
    assert fake.calls == 1
    assert {r.token_status for r in storage.requests} == {"valid"} and len(storage.requests) == 128


def test_a_client_per_thread_shares_one_token_too(storage: BlobStorageStandIn) -> None:
    fake = FakeCredential(registry=storage.registry, delay=0.2)
    credential = CachedCredential(fake)
    assert set(_herd(32, lambda _: _get(_pipeline(credential, storage), storage))) == {404}
    assert fake.calls == 1 and {r.token_status for r in storage.requests} == {"valid"}


async def test_coroutines_across_async_bearer_policies_make_one_credential_call(storage: BlobStorageStandIn) -> None:
    fake = AsyncFakeCredential(registry=storage.registry, delay=0.2)
    credential = AsyncCachedCredential(fake)
    pipelines = [_async_pipeline(credential, storage) for _ in range(8)]
    request = f"{storage.account_url}/c/missing.txt"
    try:
        responses = await asyncio.gather(
            *(pipeline.run(HttpRequest("GET", request)) for pipeline in pipelines for _ in range(16))
        )
    finally:
        for pipeline in pipelines:
            await pipeline.__aexit__()
    assert {r.http_response.status_code for r in responses} == {404}
    assert fake.calls == 1 and len(storage.requests) == 128


# azure-core answers an `insufficient_claims` challenge in its bearer policies from 1.32.
needs_cae_policy = pytest.mark.skipif(
    tuple(int(part) for part in importlib.metadata.version("azure-core").split(".")[:2]) < (1, 32),
    reason="azure-core < 1.32's bearer policy does not answer CAE challenges",
)


@needs_cae_policy
def test_a_cae_challenge_is_answered_by_the_policy_through_a_real_credential(registry: TokenRegistry) -> None:
    with EntraIdStandIn(registry=registry) as entra, BlobStorageStandIn(registry=registry) as storage:
        secret = azure.identity.ClientSecretCredential(
            entra.tenant, entra.client_id, entra.client_secret, **entra.credential_kwargs()
        )
        credential = CachedCredential(secret)
        pipeline = _pipeline(credential, storage)
        assert _get(pipeline, storage) == 404
        registry.revoke(credential.get_token(SCOPE).token)  # the token in use (a cache hit, no call)
        assert _get(pipeline, storage) == 404  # 401 with claims, answered by the policy, resent
        assert _get(_pipeline(credential, storage), storage) == 404  # a new client: a fresh token, no 401
    statuses = [(r.status, r.token_status) for r in storage.requests]
    assert statuses == [(404, "valid"), (401, "revoked"), (404, "valid"), (404, "valid")]
    # Entra ID was asked twice: first without claims, then with the challenge's.
    first, second = (r.claims for r in entra.requests)
    assert first is None and second is not None
    assert json.loads(second)["access_token"]["nbf"]["essential"] is True
    # The revoked token was dropped from the cache, so the new client's renewal asked the
    # credential, which answered from its own cache with the token Entra ID issued for the
    # challenge: never the revoked one again, and no third trip to Entra ID.
    revoked, challenged, resent, new_client = (r.token_fingerprint for r in storage.requests)
    assert revoked == challenged != resent == new_client


def test_an_adapters_cae_challenge_renews_the_token_for_all_and_a_cached_credentials_own_does_not(
    storage: BlobStorageStandIn,
) -> None:
    fake = FakeCredential(registry=storage.registry)
    auth = AzureADTokenAuth(fake, scopes=SCOPE)  # the app's own requests to a CAE-enabled API
    credential = CachedCredential(fake)  # its Azure SDK clients: the same identity and scope, the same cache
    before = credential.get_token(SCOPE).token
    storage.challenge_next(CLAIMS)
    url = f"{storage.account_url}/c/missing.txt"
    assert requests.get(url, auth=auth, verify=storage.ca_path, timeout=10).status_code == 404  # 401, renewed, resent
    # The adapter's challenge renewed the cache's token, with its claims: every user of it gets the new one.
    assert fake.claims == [None, CLAIMS] and credential.get_token(SCOPE).token == fake.tokens[1] != before
    # A challenge azure-core's policy puts to CachedCredential goes past the cache: its token is that caller's.
    own = credential.get_token(SCOPE, claims=CLAIMS).token
    assert fake.claims == [None, CLAIMS, CLAIMS] and own == fake.tokens[2]
    assert own not in (credential.get_token(SCOPE).token, auth.cache.get_token())


@needs_cae_policy
async def test_a_cae_challenge_under_the_async_policy(storage: BlobStorageStandIn) -> None:
    fake = AsyncFakeCredential(registry=storage.registry)
    async with _async_pipeline(AsyncCachedCredential(fake), storage) as pipeline:
        url = f"{storage.account_url}/c/missing.txt"
        assert (await pipeline.run(HttpRequest("GET", url))).http_response.status_code == 404
        storage.challenge_next(CLAIMS)
        assert (await pipeline.run(HttpRequest("GET", url))).http_response.status_code == 404
    assert fake.claims == [None, CLAIMS]
    assert [r.status for r in storage.requests] == [404, 401, 404]


def test_a_blob_client_per_thread_on_the_default_credential_asks_identity_once(
    registry: TokenRegistry, storage: BlobStorageStandIn
) -> None:
    pytest.importorskip("azure.storage.blob")
    from azure.storage.blob import BlobServiceClient

    def upload_and_read(i: int, credential: Any) -> bytes:
        service = BlobServiceClient(storage.account_url, credential=credential, connection_verify=storage.ca_path)
        blob = service.get_blob_client("reports", f"{i}.txt")
        blob.upload_blob(f"report {i}".encode(), overwrite=True)
        return bytes(blob.download_blob().readall())

    with ManagedIdentityEndpoint(registry=registry) as identity, identity.patched_env():
        # Azure/azure-sdk-for-python#26177: a credential per thread asks the identity endpoint per thread.
        raw = _herd(8, lambda i: upload_and_read(i, azure.identity.DefaultAzureCredential()))
        assert identity.calls == 8
        cached = _herd(8, lambda i: upload_and_read(i, CachedCredential()))
        assert identity.calls == 9
    assert raw == cached == [f"report {i}".encode() for i in range(8)]
    assert {r.token_status for r in storage.requests} == {"valid"}
    assert identity.last_resource == "https://storage.azure.com"


async def test_async_blob_clients_on_the_default_credential_ask_identity_once(
    registry: TokenRegistry, storage: BlobStorageStandIn
) -> None:
    pytest.importorskip("aiohttp")
    from azure.storage.blob.aio import BlobServiceClient

    async def upload_and_read(i: int) -> bytes:
        async with BlobServiceClient(
            storage.account_url, credential=AsyncCachedCredential(), connection_verify=storage.ca_path
        ) as service:
            blob = service.get_blob_client("reports", f"{i}.txt")
            await blob.upload_blob(f"report {i}".encode(), overwrite=True)
            return bytes(await (await blob.download_blob()).readall())

    with ManagedIdentityEndpoint(registry=registry) as identity, identity.patched_env():
        contents = await asyncio.gather(*(upload_and_read(i) for i in range(10)))
        assert identity.calls == 1
    assert contents == [f"report {i}".encode() for i in range(10)]
    assert {r.token_status for r in storage.requests} == {"valid"}
