"""The httpx and httpx2 auths, sync and async, against real clients and a loopback server.

`server` is the https stand-in here: the clients made in a test trust it through
`SSL_CERT_FILE` (its `patched_env`), as httpx and httpx2 read it when a client is made.
"""

from __future__ import annotations

import asyncio
import importlib
import threading
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from azure_ad_token_auth import async_token_provider, token_provider
from azure_ad_token_auth.testing import AzureOpenAIStandIn, FakeCredential, ManagedIdentityEndpoint, fingerprint
from conftest import echo


@pytest.fixture
def server(https_server: AzureOpenAIStandIn) -> Iterator[AzureOpenAIStandIn]:
    with https_server.patched_env():
        yield https_server


class Client:
    """A sync `Client` or an `AsyncClient` of either package, behind one awaitable `request`."""

    def __init__(self, http: Any, is_async: bool, **kwargs: Any) -> None:
        self.is_async = is_async
        self.inner = (http.AsyncClient if is_async else http.Client)(timeout=5, **kwargs)

    async def request(self, method: str, url: str, **kwargs: Any) -> Any:
        if self.is_async:
            return await self.inner.request(method, url, **kwargs)
        return self.inner.request(method, url, **kwargs)

    async def aclose(self) -> None:
        if self.is_async:
            await self.inner.aclose()
        else:
            self.inner.close()


@pytest.fixture(params=["httpx", "httpx2"])
def pkg(request: pytest.FixtureRequest) -> SimpleNamespace:
    http = pytest.importorskip(request.param)
    adapter = importlib.import_module(f"azure_ad_token_auth.{request.param}")
    return SimpleNamespace(http=http, Auth=adapter.AzureADHttpxAuth)


@pytest.fixture(params=["sync", "async"])
def is_async(request: pytest.FixtureRequest) -> bool:
    return request.param == "async"


@pytest.fixture
async def make_client(pkg: SimpleNamespace, is_async: bool):
    made: list[Client] = []

    def make(auth: Any, **kwargs: Any) -> Client:
        made.append(Client(pkg.http, is_async, auth=auth, **kwargs))
        return made[-1]

    yield make
    for client in made:
        await client.aclose()


# -- the token on the wire ------------------------------------------------------------


async def test_a_slow_sync_credential_does_not_block_the_event_loop(pkg, server, registry) -> None:
    cred = FakeCredential(registry=registry)
    cred.hang()  # the credential call blocks until something sets cred.release
    # Safety net: if the loop were blocked, nothing on it could release the credential.
    safety = threading.Timer(3.0, cred.release.set)
    safety.start()
    ticks_while_fetching = 0
    released_by = None

    async def ticker() -> None:
        nonlocal ticks_while_fetching, released_by
        while not cred.release.is_set():
            if cred.calls:  # the credential is in its call, blocked
                ticks_while_fetching += 1
                if ticks_while_fetching == 5:
                    released_by = "ticker"
                    cred.release.set()
            await asyncio.sleep(0.005)

    try:
        async with pkg.http.AsyncClient(auth=pkg.Auth(cred, timeout=10), timeout=10) as client:
            response, _ = await asyncio.gather(client.post(echo(server), content=b"x"), ticker())
    finally:
        safety.cancel()
        cred.release.set()
    assert response.status_code == 200
    assert released_by == "ticker"  # the loop ran while the credential was blocked
    assert cred.calls == 1


async def test_azure_identity_managed_identity_credential(pkg, make_client, is_async, server, registry) -> None:
    if is_async:
        pytest.importorskip("aiohttp")
        from azure.identity.aio import ManagedIdentityCredential
    else:
        from azure.identity import ManagedIdentityCredential  # type: ignore[assignment]
    with ManagedIdentityEndpoint(registry=registry) as identity, identity.patched_env():
        credential = ManagedIdentityCredential()
        try:
            client = make_client(pkg.Auth(credential))
            for _ in range(5):
                assert (await client.request("POST", echo(server), content=b"x")).status_code == 200
        finally:
            if is_async:
                await credential.close()  # type: ignore[func-returns-value]
            else:
                credential.close()  # type: ignore[unused-coroutine]
    assert identity.calls == 1
    assert [r.token_status for r in server.requests] == ["valid"] * 5
    assert len({r.token_fingerprint for r in server.requests}) == 1


# -- openai 3.x on httpx2 ------------------------------------------------------------------


@pytest.mark.parametrize("openai_auth", ["provider_from_the_same_cache", "provider_with_another_token", "api_key"])
@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
async def test_openai3_http_client(server, cred, openai_auth: str, is_async: bool) -> None:
    openai = pytest.importorskip("openai")
    if int(openai.__version__.split(".")[0]) < 3:
        pytest.skip("openai < 3 is not built on httpx2")
    httpx2 = pytest.importorskip("httpx2")
    from azure_ad_token_auth.httpx2 import AzureADHttpxAuth

    auth = AzureADHttpxAuth(cred)
    if openai_auth == "provider_from_the_same_cache":
        cache = auth.cache
        credential: dict[str, Any] = {
            "azure_ad_token_provider": async_token_provider(cache) if is_async else token_provider(cache)
        }
    elif openai_auth == "provider_with_another_token":
        credential = {"azure_ad_token_provider": lambda: "token-from-openai-provider"}
    else:
        credential = {"api_key": "an-api-key"}
    server.fail_next(1, status=401)  # answered by our resend, under openai
    options: dict[str, Any] = {"azure_endpoint": server.base_url, "api_version": "2024-10-21", "max_retries": 0}
    messages = [{"role": "user", "content": "hi"}]
    if is_async:
        async with httpx2.AsyncClient(auth=auth) as http:
            client = openai.AsyncAzureOpenAI(http_client=http, **options, **credential)
            completion = await client.chat.completions.create(model="gpt-4o", messages=messages)
    else:
        with httpx2.Client(auth=auth) as http:
            client = openai.AzureOpenAI(http_client=http, **options, **credential)
            completion = client.chat.completions.create(model="gpt-4o", messages=messages)
    assert completion.choices[0].message.content == server.completion
    assert cred.calls == 2
    first, last = server.requests
    assert last.path == "/openai/deployments/gpt-4o/chat/completions"
    assert (first.token_fingerprint, last.token_fingerprint) == tuple(fingerprint(t) for t in cred.tokens)
    assert last.token_status == "valid"
    if openai_auth == "api_key":
        assert last.headers["api-key"] == "<redacted>"  # openai's own header is still sent
