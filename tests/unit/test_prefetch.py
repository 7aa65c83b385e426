"""prefetch: the first token is fetched in the background at construction / install."""

from __future__ import annotations

import asyncio
import threading

import pytest

from azure_ad_token_auth import (
    TokenCache,
    async_token_provider,
    install_openai_session,
    token_provider,
    uninstall_openai_session,
)
from azure_ad_token_auth.testing import AsyncFakeCredential, FakeCredential
from conftest import wait_until


def test_prefetch_fetches_before_the_first_request() -> None:
    cred = FakeCredential()
    cache = TokenCache(cred, prefetch=True)
    wait_until(lambda: cache.current is not None)
    assert cred.calls == 1
    assert cache.get_token() == cred.tokens[0] and cred.calls == 1


def test_a_request_during_the_prefetch_joins_it() -> None:
    cred = FakeCredential()
    cred.hang()
    cache = TokenCache(cred, prefetch=True)
    wait_until(lambda: cred.calls == 1)  # the prefetch is under way
    got: list[str] = []
    request = threading.Thread(target=lambda: got.append(cache.get_token()))
    request.start()
    cred.release.set()
    request.join(10)
    assert got == cred.tokens and cred.calls == 1


def test_a_failed_prefetch_reaches_the_first_request_without_another_call() -> None:
    cred = FakeCredential(fail=OSError("identity endpoint down"))
    cache = TokenCache(cred, prefetch=True)
    wait_until(lambda: cache.status().failures == 1)
    with pytest.raises(OSError, match="identity endpoint down"):
        cache.get_token()
    assert cred.calls == 1  # the held error, not a second call


def test_token_provider_and_install_helper_take_prefetch() -> None:
    cred = FakeCredential()
    provider = token_provider(cred, prefetch=True)
    wait_until(lambda: cred.calls == 1)
    assert provider() == cred.tokens[0] and cred.calls == 1
    openai = pytest.importorskip("openai")
    other = FakeCredential()
    auth = install_openai_session(other, openai_module=openai, prefetch=True)
    try:
        wait_until(lambda: auth.cache.current is not None)
        assert other.calls == 1
    finally:
        uninstall_openai_session(openai_module=openai)


async def test_async_credential_prefetches_on_the_running_loop() -> None:
    cred = AsyncFakeCredential()
    cache = TokenCache(cred, prefetch=True)
    for _ in range(100):
        if cache.current is not None:
            break
        await asyncio.sleep(0.01)
    assert cred.calls == 1 and await cache.get_token_async() == cred.tokens[0]


def test_async_credential_prefetch_needs_a_running_loop() -> None:
    with pytest.raises(ValueError, match="needs a running event loop"):
        TokenCache(AsyncFakeCredential(), prefetch=True)


def _prefetch_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name == "azure-ad-token-auth-prefetch")


def test_a_provider_built_per_request_against_a_hung_credential_starts_one_prefetch_thread() -> None:
    """Each `token_provider(cred, prefetch=True)` gets the same shared cache: while the
    credential hangs, one prefetch waits for its token, not one thread per construction
    (300 constructions left 300 threads)."""
    cred = FakeCredential()
    cred.hang()
    before = _prefetch_threads()
    try:
        providers = [token_provider(cred, prefetch=True) for _ in range(300)]
        wait_until(lambda: cred.calls == 1)
        assert _prefetch_threads() - before == 1
        assert cred.calls == 1
    finally:
        cred.release.set()
    assert providers[-1]() == cred.tokens[0] and cred.calls == 1
    wait_until(lambda: _prefetch_threads() <= before)


def test_a_finished_prefetch_leaves_room_for_the_next_one() -> None:
    from azure_ad_token_auth._prefetch import prefetch

    cred = FakeCredential()
    before = _prefetch_threads()
    cache = TokenCache(cred, prefetch=True)
    wait_until(lambda: cache.current is not None)
    assert cache.invalidate(cache.get_token()) and cache.current is None
    wait_until(lambda: _prefetch_threads() <= before)  # the first prefetch is over
    prefetch(cache)  # an adapter built again for this cache, say
    wait_until(lambda: cache.current is not None)
    assert cred.calls == 2


async def test_async_providers_built_per_request_start_one_prefetch_task() -> None:
    cred = AsyncFakeCredential()
    cred.hang()

    def prefetching() -> int:
        names = [getattr(task.get_coro(), "__qualname__", "") for task in asyncio.all_tasks()]
        return names.count("TokenCache.get_token_async")

    try:
        providers = [async_token_provider(cred, prefetch=True) for _ in range(300)]
        await asyncio.sleep(0.05)
        assert prefetching() == 1
    finally:
        cred.release.set()
    assert await providers[-1]() == cred.tokens[0] and cred.calls == 1
    await asyncio.sleep(0.05)
    assert prefetching() == 0
