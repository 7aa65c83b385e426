"""`async_token_provider` and `TokenCache.get_token_async`: single flight across coroutines,
threads and event loops, background renewal, hangs and failures. No openai needed."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from azure.core.exceptions import ClientAuthenticationError

from azure_ad_token_auth import TokenAcquisitionTimeout, TokenCache, async_token_provider, token_provider
from azure_ad_token_auth.testing import AsyncFakeCredential, FakeCredential

KINDS = [AsyncFakeCredential, FakeCredential]
KIND_IDS = ["async-credential", "sync-credential"]


async def eventually(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll without blocking the loop; fail (not hang) if `predicate` never holds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not reached within {timeout:.1f} s")
        await asyncio.sleep(0.002)


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
async def test_cold_cache_many_coroutines_one_call(kind: type[FakeCredential]) -> None:
    credential = kind(delay=0.1)
    provider = async_token_provider(credential)
    tokens = await asyncio.gather(*(provider() for _ in range(200)))
    assert credential.calls == 1
    assert set(tokens) == {credential.tokens[0]}
    assert await provider() == credential.tokens[0]
    assert credential.calls == 1


async def test_sync_credential_does_not_block_the_loop() -> None:
    credential = FakeCredential()
    credential.hang()
    # Only a coroutine on this loop releases the credential: had the credential been
    # called on the loop's thread, the loop would be stuck and the safety timer would
    # be the one to release it.
    safety = threading.Timer(5, credential.release.set)
    safety.start()
    released_by_loop = False

    async def release_soon() -> None:
        nonlocal released_by_loop
        await asyncio.sleep(0.05)
        released_by_loop = not credential.release.is_set()
        credential.release.set()

    try:
        token, _ = await asyncio.gather(async_token_provider(credential)(), release_soon())
    finally:
        safety.cancel()
    assert released_by_loop
    assert token == credential.tokens[0]


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
async def test_background_renewal(clock: Any, kind: type[FakeCredential]) -> None:
    credential = kind(lifetime=3600)
    cache = TokenCache(credential)
    first = await cache.get_token_async()
    clock.shift(3600 - 301)
    assert await cache.get_token_async() == first
    assert credential.calls == 1
    clock.shift(2)  # 299 s left: inside the five-minute margin, still valid
    assert await cache.get_token_async() == first  # handed out at once
    await eventually(lambda: cache.status().refreshes == 2)
    assert len(credential.tokens) == 2
    assert await cache.get_token_async() == credential.tokens[1] != first
    assert credential.calls == 2


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
async def test_hanging_credential_times_out(kind: type[FakeCredential]) -> None:
    credential = kind()
    credential.hang()
    cache = TokenCache(credential, timeout=0.2)
    try:
        with pytest.raises(TokenAcquisitionTimeout, match="hanging"):
            await cache.get_token_async()
        assert cache.status().fingerprint is None
    finally:
        credential.release.set()
    # The abandoned call still lands, and the cache then serves its token.
    await eventually(lambda: cache.status().fingerprint is not None)
    assert await cache.get_token_async() == credential.tokens[0]
    assert credential.calls == 1


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
async def test_credential_error_reaches_every_waiter(clock: Any, kind: type[FakeCredential]) -> None:
    credential = kind(delay=0.1, fail=ClientAuthenticationError("denied by the loopback tenant"))
    provider = async_token_provider(credential)
    results = await asyncio.gather(*(provider() for _ in range(20)), return_exceptions=True)
    assert all(isinstance(r, ClientAuthenticationError) for r in results), results
    assert credential.calls == 1
    credential.fail = None
    clock.shift(5.1)  # past the few seconds a failure is re-raised without a call
    assert await provider() == credential.tokens[0]


def test_sync_get_token_on_async_credential_without_token() -> None:
    credential = AsyncFakeCredential()
    cache = TokenCache(credential)
    with pytest.raises(TypeError, match="async"):
        cache.get_token()
    with pytest.raises(TypeError, match="async"):
        token_provider(credential)  # refused when made (tests/unit/test_providers.py)
    assert credential.calls == 0


def test_sync_get_token_serves_a_token_an_async_caller_fetched() -> None:
    credential = AsyncFakeCredential()
    cache = TokenCache(credential)
    token = asyncio.run(cache.get_token_async())
    assert cache.get_token() == token == credential.tokens[0]
    assert credential.calls == 1


async def _call(provider: Callable[[], Awaitable[str]]) -> str:
    return await provider()


def _run_in_threads(targets: list[Callable[[], None]]) -> None:
    threads = [threading.Thread(target=t) for t in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert not any(t.is_alive() for t in threads), "a thread hung"


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_one_cache_two_event_loops_in_two_threads(kind: type[FakeCredential]) -> None:
    credential = kind(delay=0.2)
    provider = async_token_provider(credential)
    barrier = threading.Barrier(2)
    seen: list[str] = []
    errors: list[BaseException] = []

    def worker() -> None:
        async def ask() -> list[str]:
            return list(await asyncio.gather(*(provider() for _ in range(20))))

        try:
            barrier.wait(5)
            seen.extend(asyncio.run(ask()))
        except BaseException as exc:
            errors.append(exc)

    _run_in_threads([worker, worker])
    assert errors == []
    assert len(seen) == 40
    assert set(seen) == {credential.tokens[0]}
    assert credential.calls == 1
    # Both loops are closed now; a third one is served from the cache.
    assert asyncio.run(_call(provider)) == credential.tokens[0]
    assert credential.calls == 1


def test_threads_and_coroutines_asking_at_once() -> None:
    credential = FakeCredential(delay=0.2)
    cache = TokenCache(credential)
    barrier = threading.Barrier(16 + 2)
    seen: list[str] = []
    lock = threading.Lock()

    def sync_worker() -> None:
        barrier.wait(5)
        token = cache.get_token()
        with lock:
            seen.append(token)

    def loop_worker() -> None:
        async def ask() -> list[str]:
            return list(await asyncio.gather(*(cache.get_token_async() for _ in range(50))))

        barrier.wait(5)
        tokens = asyncio.run(ask())
        with lock:
            seen.extend(tokens)

    _run_in_threads([sync_worker] * 16 + [loop_worker] * 2)
    assert len(seen) == 16 + 2 * 50
    assert set(seen) == {credential.tokens[0]}
    assert credential.calls == 1


def test_loop_that_closes_mid_flight_does_not_fail_another_loops_callers() -> None:
    """Loop A starts the credential call, then shuts down (cancelling its tasks) while
    loop B waits for that same call: B must still get a token, not A's cancellation."""
    credential = AsyncFakeCredential()
    credential.hang()
    cache = TokenCache(credential)
    a_started, b_waiting = threading.Event(), threading.Event()
    outcome: list[object] = []

    def loop_a() -> None:
        async def main() -> None:
            asyncio.get_running_loop().create_task(cache.get_token_async())
            await asyncio.sleep(0.01)  # the task has launched the credential call
            a_started.set()
            await asyncio.to_thread(b_waiting.wait, 5)
            # Returning makes asyncio.run cancel what is still pending, the call included.

        asyncio.run(main())

    def loop_b() -> None:
        async def main() -> None:
            a_started.wait(5)
            task = asyncio.get_running_loop().create_task(cache.get_token_async())
            await asyncio.sleep(0.01)  # the task now waits for loop A's call
            b_waiting.set()
            try:
                outcome.append(await task)
            except BaseException as exc:
                outcome.append(exc)

        asyncio.run(main())

    thread_a, thread_b = threading.Thread(target=loop_a), threading.Thread(target=loop_b)
    thread_a.start()
    thread_b.start()
    thread_a.join(10)
    credential.release.set()  # loop A is gone: a new call may now answer
    thread_b.join(10)
    assert not thread_a.is_alive() and not thread_b.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], str), outcome
    assert outcome == [credential.tokens[-1]]
