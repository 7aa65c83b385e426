"""keep-fresh: a daemon timer per cache renews the token with no request coming."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from azure_ad_token_auth import AzureADTokenAuth, TokenAcquisitionTimeout, TokenCache
from azure_ad_token_auth.testing import AsyncFakeCredential, FakeCredential
from conftest import child_pythonpath, wait_until


def _timers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "azure-ad-token-auth-keep-fresh"]


@pytest.mark.parametrize("keep_fresh", [True, False])
def test_after_an_idle_spell_longer_than_a_token_life_the_request_does_not_wait(keep_fresh: bool) -> None:
    cred = FakeCredential(lifetime=2)  # renewed 1 s before expiry
    cache = TokenCache(cred, keep_fresh=keep_fresh, timeout=1)
    cache.get_token()
    time.sleep(3)  # idle: no request for longer than a token's life
    cred.hang()  # from now on the credential does not answer
    try:
        if keep_fresh:
            # Renewed by the timer alone, so the token held now is valid: no wait.
            assert cred.calls >= 3
            token = cache.get_token()
            assert token in cred.tokens and cache.current is not None and cache.current.expires_on > time.time()
        else:
            assert cred.calls == 1
            with pytest.raises(TokenAcquisitionTimeout):
                cache.get_token()  # the request waits for the credential
    finally:
        cred.release.set()


def test_one_timer_per_cache_and_it_goes_with_the_cache() -> None:
    before = set(_timers())
    cred = FakeCredential()
    cache = TokenCache(cred, keep_fresh=True)
    wait_until(lambda: cred.calls == 1)  # fetched by the timer, unasked
    (timer,) = set(_timers()) - before
    del cache
    gc.collect()
    wait_until(lambda: not timer.is_alive())


def test_adapters_asking_for_keep_fresh_share_the_cache_of_their_other_options() -> None:
    cred = FakeCredential()
    plain = AzureADTokenAuth(cred)
    fresh = AzureADTokenAuth(cred, keep_fresh=True, prefetch=True)
    assert fresh.cache is plain.cache
    wait_until(lambda: plain.cache.current is not None)
    assert cred.calls == 1


def test_keep_fresh_refuses_an_async_credential() -> None:
    with pytest.raises(ValueError, match="keep_fresh needs a sync credential"):
        TokenCache(AsyncFakeCredential(), keep_fresh=True)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork")
def test_a_forked_child_gets_a_timer_of_its_own() -> None:
    cred = FakeCredential(lifetime=2)
    cache = TokenCache(cred, keep_fresh=True)
    cache.get_token()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            calls = cred.calls
            deadline = time.monotonic() + 10
            while cred.calls < calls + 2 and time.monotonic() < deadline:
                time.sleep(0.01)
            status = 0 if cred.calls >= calls + 2 and _timers() else 1
        finally:
            os.write(write, bytes([status]))
            os._exit(0)
    os.close(write)
    try:
        assert os.read(read, 1) == b"\x00"
    finally:
        os.close(read)
        os.waitpid(pid, 0)


def test_timers_stop_at_exit(tmp_path: Path) -> None:
    """A timer still running while the interpreter exits would renew a token nobody will
    use, during shutdown. An exit handler registered before the package's own (so run
    after it) waits past the renewal time: no credential call comes meanwhile."""
    script = textwrap.dedent(
        """
        import atexit, time

        def after_the_package_stopped_its_timers():
            before = sum(c.calls for c in creds)
            time.sleep(max(0.0, max(c.current.refresh_at for c in caches) - time.time()) + 1.0)
            print("calls during exit:", sum(c.calls for c in creds) - before, flush=True)

        atexit.register(after_the_package_stopped_its_timers)  # runs after keep-fresh's handler

        from azure_ad_token_auth import TokenCache
        from azure_ad_token_auth.testing import FakeCredential
        creds = [FakeCredential(lifetime=2) for _ in range(4)]
        caches = [TokenCache(cred, keep_fresh=True) for cred in creds]
        for cache in caches:
            cache.get_token()
        print("ok")
        """
    )
    src = str(Path(__file__).resolve().parents[2] / "src")
    done = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "PYTHONPATH": child_pythonpath(src)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert done.stdout == "ok\ncalls during exit: 0\n"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork")
def test_a_forked_child_timer_renews_though_a_parent_thread_held_the_cache_lock_at_the_fork() -> None:
    """The child's timer starts only after the cache's fork reset: started before it, it
    found the token due and blocked for good on the lock the parent's thread held."""
    cred = FakeCredential(lifetime=2)  # renewal due 1 s in
    cache = TokenCache(cred, keep_fresh=True)
    cache.get_token()
    held, done = threading.Event(), threading.Event()

    def request_mid_plan() -> None:
        with cache._lock:  # a request thread deciding under the lock when the fork comes
            held.set()
            done.wait()

    helper = threading.Thread(target=request_mid_plan)
    helper.start()
    held.wait()
    time.sleep(1.3)  # the token is due at the fork
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            calls = cred.calls
            deadline = time.monotonic() + 5
            while cred.calls == calls and time.monotonic() < deadline:
                time.sleep(0.01)
            status = 0 if cred.calls > calls else 1
        finally:
            os.write(write, bytes([status]))
            os._exit(0)
    os.close(write)
    done.set()
    helper.join()
    try:
        assert os.read(read, 1) == b"\x00", "the child's timer never renewed"
    finally:
        os.close(read)
        os.waitpid(pid, 0)


def test_a_hung_credential_never_gets_a_second_renewal_thread_from_the_timer(monkeypatch: pytest.MonkeyPatch) -> None:
    """An idle process, keep-fresh on, a credential that hangs: the timer used to start a new
    renewal thread after every `timeout` + 5 s, each stuck for good. Over many simulated
    timeouts (short ones, and the timer's wait after a failure shortened), at most one."""
    from azure_ad_token_auth import _keep_fresh

    monkeypatch.setattr(_keep_fresh, "AFTER_FAILURE", 0.02)
    monkeypatch.setattr(_keep_fresh, "_RECHECK", 0.02)

    def renewals() -> int:
        return sum(t.name == "azure-ad-token-auth-refresh" and t.is_alive() for t in threading.enumerate())

    before = renewals()
    cred = FakeCredential()
    cred.hang()
    try:
        cache = TokenCache(cred, keep_fresh=True, timeout=0.05)
        most = 0
        deadline = time.monotonic() + 1.5  # about twenty timeouts and failure waits
        while time.monotonic() < deadline:
            most = max(most, renewals() - before)
            time.sleep(0.01)
        assert most == 1
        assert cred.calls == 1
        assert cache.renewing
    finally:
        cred.release.set()
    wait_until(lambda: not cache.renewing)  # the call returned: the token lands
    wait_until(lambda: cache.current is not None)
    assert cache.get_token() == cred.tokens[0]
