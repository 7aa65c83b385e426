"""`AsyncCachedCredential`: the async form, over the same caches; never blocks the event loop."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import azure.identity
import pytest
from azure.core.credentials import AccessToken, AccessTokenInfo
from azure.core.credentials_async import AsyncSupportsTokenInfo, AsyncTokenCredential
from azure.core.exceptions import ClientAuthenticationError

from azure_ad_token_auth import (
    AsyncCachedCredential,
    CachedCredential,
    ConfigurationError,
    InvalidTokenError,
    TokenAcquisitionTimeout,
    async_token_provider,
)
from azure_ad_token_auth.testing import AsyncFakeCredential, FakeCredential, ManagedIdentityEndpoint, TokenRegistry
from conftest import frames_holding

SCOPE = "https://storage.azure.com/.default"
KINDS = [AsyncFakeCredential, FakeCredential]
KIND_IDS = ["async-credential", "sync-credential"]
SECRET = "eyJhbGciOiJub25lIn0.eyJvaWQiOiJ4In0.the-secret-signature"


async def test_it_is_an_azure_core_async_token_credential_with_token_info() -> None:
    fake = AsyncFakeCredential()
    async with AsyncCachedCredential(fake) as credential:
        typed: AsyncTokenCredential = credential  # and mypy agrees
        info_typed: AsyncSupportsTokenInfo = credential
        assert isinstance(typed, AsyncTokenCredential) and isinstance(info_typed, AsyncSupportsTokenInfo)
        token = await credential.get_token(SCOPE)
        info = await credential.get_token_info(SCOPE, options={})
    assert type(token) is AccessToken and type(info) is AccessTokenInfo
    assert token.token == info.token == fake.tokens[0] and fake.calls == 1


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
async def test_200_coroutines_on_a_cold_credential_make_one_call(kind: type[FakeCredential]) -> None:
    fake = kind(delay=0.1)
    credential = AsyncCachedCredential(fake)
    tokens = await asyncio.gather(*(credential.get_token(SCOPE) for _ in range(200)))
    assert {t.token for t in tokens} == {fake.tokens[0]} and fake.calls == 1


async def test_a_sync_credential_runs_off_the_loop() -> None:
    fake = FakeCredential()
    fake.hang()
    # Only a coroutine on this loop releases the credential: had it been called on the
    # loop's thread, the loop would be stuck and the safety timer would release it.
    safety = threading.Timer(5, fake.release.set)
    safety.start()
    released_by_loop = False

    async def release_soon() -> None:
        nonlocal released_by_loop
        await asyncio.sleep(0.05)
        released_by_loop = not fake.release.is_set()
        fake.release.set()

    try:
        token, _ = await asyncio.gather(AsyncCachedCredential(fake).get_token(SCOPE), release_soon())
    finally:
        safety.cancel()
    assert released_by_loop and token.token == fake.tokens[0]


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
async def test_claims_go_to_the_credential_off_the_cache(kind: type[FakeCredential]) -> None:
    fake = kind()
    credential = AsyncCachedCredential(fake)
    held = (await credential.get_token(SCOPE, enable_cae=True)).token  # as a CAE-enabled client's policy asks
    answer = await credential.get_token_info(SCOPE, options={"claims": '{"x":1}', "enable_cae": True})
    after = (await credential.get_token_info(SCOPE, options={"enable_cae": True})).token
    assert len({held, answer.token, after}) == 3
    assert fake.claims == [None, '{"x":1}', None]


async def test_a_refused_claims_challenge_is_not_held() -> None:
    fake = AsyncFakeCredential()
    credential = AsyncCachedCredential(fake)
    await credential.get_token(SCOPE)
    fake.fail, fake.fail_times = ClientAuthenticationError("claims refused"), 1
    with pytest.raises(ClientAuthenticationError, match="claims refused"):
        await credential.get_token(SCOPE, claims="{}")
    assert (await credential.get_token(SCOPE)).token == fake.tokens[-1] and fake.calls == 3


async def test_no_scope_is_a_value_error() -> None:
    with pytest.raises(ValueError, match='"get_token_info" requires at least one scope'):
        await AsyncCachedCredential(AsyncFakeCredential()).get_token_info()


async def test_it_shares_its_caches_with_the_sync_form_and_the_providers() -> None:
    fake = FakeCredential()
    provider = async_token_provider(fake, SCOPE)
    token = (await AsyncCachedCredential(fake).get_token(SCOPE)).token
    assert await provider() == token == CachedCredential(fake).get_token(SCOPE).token
    assert fake.calls == 1


async def test_the_default_is_the_processs_sync_default_credential_shared_with_everyone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    created: list[object] = []
    real = azure.identity.DefaultAzureCredential

    def counted(**kwargs: Any) -> object:
        created.append(real(**kwargs))
        return created[-1]

    monkeypatch.setattr(azure.identity, "DefaultAzureCredential", counted)
    registry = TokenRegistry()
    with ManagedIdentityEndpoint(registry=registry) as identity, identity.patched_env():
        # Made per call, as people write `credential=DefaultAzureCredential()` per client.
        tokens = await asyncio.gather(*(AsyncCachedCredential().get_token(SCOPE) for _ in range(50)))
        sync = await asyncio.to_thread(lambda: CachedCredential().get_token(SCOPE))
        assert {t.token for t in tokens} == {sync.token} and registry.check(sync.token) == "valid"
        assert identity.calls == 1 and len(created) == 1
        assert type(created[0]) is real  # the sync one, run in a thread


async def test_close_never_closes_the_callers_async_credential() -> None:
    class Closing(AsyncFakeCredential):
        closed = 0

        async def close(self) -> None:
            Closing.closed += 1

    fake = Closing()
    async with AsyncCachedCredential(fake) as credential:
        await credential.get_token(SCOPE)
    await credential.close()
    assert Closing.closed == 0
    assert (await credential.get_token(SCOPE)).token == fake.tokens[-1]  # still usable, as azure-identity's are


async def test_the_async_form_reports_the_caches_times_too() -> None:
    fake = AsyncFakeCredential()
    credential = AsyncCachedCredential(fake)
    info = await credential.get_token_info(SCOPE)
    assert info.refresh_on is not None and info.refresh_on == pytest.approx(time.time() + 3300, abs=2)
    assert info.expires_on == pytest.approx(time.time() + 3600, abs=2)


async def test_a_claims_challenge_on_the_default_credential_runs_it_in_a_thread(monkeypatch) -> None:
    fake = FakeCredential()
    monkeypatch.setattr(azure.identity, "DefaultAzureCredential", lambda: fake)
    credential = AsyncCachedCredential()
    answer = await credential.get_token(SCOPE, claims='{"d":1}')  # first use: the cache makes it, asks nothing
    assert fake.claims == ['{"d":1}'] and answer.token == fake.tokens[0]


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
async def test_a_refused_claims_answer_leaves_no_token_in_any_frames_locals(kind: type[FakeCredential]) -> None:
    # A real token, its expiry in milliseconds: refused (InvalidTokenError) after the answer arrived.
    fake = kind(result=lambda: AccessTokenInfo(SECRET, int(time.time() * 1000) + 3_600_000))
    with pytest.raises(InvalidTokenError, match="milliseconds") as raised:
        await AsyncCachedCredential(fake).get_token(SCOPE, claims='{"access_token":{}}')
    assert fake.claims == ['{"access_token":{}}'] and frames_holding(raised.value, SECRET) == []


async def test_claims_calls_to_a_hung_sync_credential_time_out_and_leave_the_default_executor_free() -> None:
    loop = asyncio.get_running_loop()
    loop.set_default_executor(ThreadPoolExecutor(2))  # small, so a claims call holding a worker shows
    fake = FakeCredential()
    fake.hang()
    credential = AsyncCachedCredential(fake, timeout=0.3)
    try:
        calls = [asyncio.ensure_future(credential.get_token(SCOPE, claims='{"c":1}')) for _ in range(4)]
        done, pending = await asyncio.wait(calls, timeout=3)
        assert not pending and all(isinstance(call.exception(), TokenAcquisitionTimeout) for call in done)
        assert await asyncio.wait_for(loop.run_in_executor(None, lambda: 42), 2) == 42
        assert fake.calls == 4  # each in a thread of its own
    finally:
        fake.release.set()
        for call in calls:
            call.cancel()


async def test_a_claims_call_to_a_hung_async_credential_is_cancelled_at_timeout() -> None:
    fake = AsyncFakeCredential()
    fake.hang()
    credential = AsyncCachedCredential(fake, timeout=0.2)
    safety = threading.Timer(5, fake.release.set)  # a caller that never gives up fails the test, not hangs it
    safety.start()
    try:
        with pytest.raises(TokenAcquisitionTimeout, match=r"AsyncFakeCredential\.get_token_info\(\) to a claims"):
            await credential.get_token(SCOPE, claims='{"c":1}')
    finally:
        safety.cancel()
        fake.release.set()
    answer = await credential.get_token(SCOPE, claims='{"c":2}')  # nothing left hanging: asked again
    assert fake.claims == ['{"c":2}'] and answer.token == fake.tokens[0]  # the first never answered: cancelled


async def test_keep_fresh_with_an_async_credential_is_refused_when_made() -> None:
    fake = AsyncFakeCredential()
    with pytest.raises(ConfigurationError, match="keep_fresh needs a sync credential"):
        AsyncCachedCredential(fake, keep_fresh=True)  # not on the first request, inside a client's pipeline
    assert fake.calls == 0
    sync = FakeCredential()
    kept = AsyncCachedCredential(sync, keep_fresh=True)  # a sync one is run in threads: its timer works
    assert (await kept.get_token(SCOPE)).token == sync.tokens[0]
