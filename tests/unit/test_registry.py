"""The shared-cache registry: one cache per credential and settings, safe across forks."""

from __future__ import annotations

import importlib
import importlib.util
import os
import signal
import threading
import time
from types import ModuleType

import pytest

from azure_ad_token_auth import DEFAULT_SCOPE, AzureADTokenAuth, TokenCache, token_provider
from azure_ad_token_auth.testing import FakeCredential


def _module_locks() -> list[tuple[ModuleType, str]]:
    """Every module-level lock of the package: (module, attribute)."""
    names = [
        ("azure_ad_token_auth._registry", "_SHARED_LOCK"),
        ("azure_ad_token_auth._openai", "_lock"),
        ("azure_ad_token_auth._keep_fresh", "_KEEPERS_LOCK"),
        ("azure_ad_token_auth._store._lock", "_HELD_LOCK"),
        ("azure_ad_token_auth.testing._guard", "_state_lock"),
    ]
    if importlib.util.find_spec("aiohttp") is not None:
        names.append(("azure_ad_token_auth.aiohttp", "_lock"))
    return [(importlib.import_module(module), attribute) for module, attribute in names]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_while_other_threads_build_adapters_never_hangs_the_child() -> None:
    locks = _module_locks()
    fake = FakeCredential()
    stop = threading.Event()

    def build_adapters(margin: int) -> None:
        while not stop.is_set():
            AzureADTokenAuth(fake, refresh_margin=margin)  # the shared-cache table's lock

    def take(module: ModuleType, attribute: str) -> None:
        while not stop.is_set():
            with getattr(module, attribute):  # read each time: the lock a fork may replace
                time.sleep(0)

    threads = [threading.Thread(target=build_adapters, args=(m,), daemon=True) for m in range(4)]
    threads += [threading.Thread(target=take, args=lock, daemon=True) for lock in locks]
    for thread in threads:
        thread.start()
    hung = 0
    try:
        for _ in range(40):
            pid = os.fork()
            if pid == 0:  # child: only this thread survives
                signal.alarm(5)  # a hung child must not hang the suite
                code = 1  # any error in the child fails the test, not only a hang
                try:
                    AzureADTokenAuth(fake, refresh_margin=7)
                    for module, attribute in locks:
                        with getattr(module, attribute):
                            pass
                    code = 0
                finally:
                    os._exit(code)
            _, status = os.waitpid(pid, 0)
            hung += not (os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0)
    finally:
        stop.set()
        for thread in threads:
            thread.join(5)
    assert hung == 0, f"{hung} of 40 children hung on a lock held at the fork"


def test_spelling_out_a_default_option_shares_the_same_cache() -> None:
    fake = FakeCredential()
    plain = AzureADTokenAuth(fake)
    spelled = AzureADTokenAuth(fake, refresh_margin=300.0, background_refresh=True, timeout=60, jitter=0.0)
    provider = token_provider(fake, DEFAULT_SCOPE, retry_backoff=30, tenant_id=None, enable_cae=False)
    assert spelled.cache is plain.cache
    assert provider() == plain.cache.get_token() == spelled.cache.get_token()
    assert fake.calls == 1
    assert AzureADTokenAuth(fake, refresh_margin=600).cache is not plain.cache  # a real difference


def test_scopes_given_with_a_shared_cache_are_compared_by_value() -> None:
    cache = TokenCache(FakeCredential(), "api://other/.default")
    assert AzureADTokenAuth(cache).cache is cache  # scopes left out: the cache's own
    assert AzureADTokenAuth(cache, ["api://other/.default"]).cache is cache
    for scopes in (DEFAULT_SCOPE, [DEFAULT_SCOPE], "https://cognitiveservices.azure.com/.default"):
        with pytest.raises(ValueError, match="differ from the shared TokenCache"):
            AzureADTokenAuth(cache, scopes)
        with pytest.raises(ValueError, match="differ from the shared TokenCache"):
            token_provider(cache, scopes)
