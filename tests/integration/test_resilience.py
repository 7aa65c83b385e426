"""Faults: failing, hanging and slow credentials, clock jumps, forks, a soak, and log secrecy."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from azure.core.exceptions import ClientAuthenticationError

from azure_ad_token_auth import AzureADTokenAuth, TokenAcquisitionTimeout, TokenCache
from azure_ad_token_auth.testing import AzureOpenAIStandIn, FakeCredential, ManagedIdentityEndpoint, TokenRegistry
from conftest import assert_no_token_in, wait_until


@pytest.mark.parametrize("background", [True, False])
def test_failed_renewal_keeps_serving_the_valid_token_with_one_warning(clock, caplog, background: bool) -> None:
    caplog.set_level(logging.WARNING, logger="azure_ad_token_auth")
    fake = FakeCredential()
    cache = TokenCache(fake, background_refresh=background, retry_backoff=30)
    first = cache.get_token()
    clock.shift(3400)  # inside the margin, 200 s of validity left
    fake.fail = ClientAuthenticationError("identity endpoint down")
    assert cache.get_token() == first
    # The warning is logged just after the failure is counted: wait for the log itself.
    wait_until(lambda: any(r.levelno == logging.WARNING for r in caplog.records))
    for _ in range(200):  # within the backoff: no credential call per request
        assert cache.get_token() == first
    assert fake.calls == 2
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "ClientAuthenticationError" in warnings[0].getMessage()
    assert first not in caplog.text
    clock.shift(31)  # backoff over: one more attempt, which now succeeds
    fake.fail = None
    cache.get_token()
    wait_until(lambda: cache.status().refreshes == 2)
    assert cache.get_token() != first
    assert fake.calls == 3


def test_failed_renewal_after_expiry_raises_the_credential_error(clock) -> None:
    fake = FakeCredential()
    cache = TokenCache(fake)
    cache.get_token()
    clock.shift(3601)
    fake.fail = ClientAuthenticationError("identity endpoint down")
    with pytest.raises(ClientAuthenticationError, match="identity endpoint down"):
        cache.get_token()


def test_clock_jump_past_expiry_never_hands_out_an_expired_token(clock) -> None:
    fake = FakeCredential()
    cache = TokenCache(fake)  # background renewal on: yet an expired token must not be served
    first = cache.get_token()
    clock.shift(7200)
    second = cache.get_token()
    assert second != first
    assert second == fake.tokens[1]


def test_hanging_credential_gives_every_waiter_a_clear_error_then_recovers() -> None:
    fake = FakeCredential()
    fake.hang()
    cache = TokenCache(fake, timeout=0.3)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            cache.get_token()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(errors) == 8
    assert all(isinstance(e, TokenAcquisitionTimeout) for e in errors)
    assert fake.calls == 1  # one hung call, not eight
    assert "hanging" in str(errors[0])
    fake.release.set()
    # The hung call was abandoned after `timeout`, so this may be a second call: either
    # way the caller gets a token the credential issued.
    assert cache.get_token() in fake.tokens
    assert fake.calls <= 2


def test_a_credential_that_hangs_for_good_never_holds_more_than_two_renewal_threads() -> None:
    # Callers keep coming for ten timeouts while every call hangs: each timeout used to
    # abandon the call and start another, a stuck thread per `timeout` for ever.
    fake = FakeCredential()
    fake.hang()
    cache = TokenCache(fake, timeout=0.05)
    try:
        deadline = time.monotonic() + 0.6
        most = 0
        while time.monotonic() < deadline:
            with contextlib.suppress(TokenAcquisitionTimeout):
                cache.get_token()
            renewing = [t for t in threading.enumerate() if t.name == "azure-ad-token-auth-refresh" and t.is_alive()]
            most = max(most, len(renewing))
        assert fake.calls == 2  # the first call, and one more after it was abandoned
        assert most <= 2
    finally:
        fake.release.set()
    # Once the credential answers, the cache works again.
    assert cache.get_token() in fake.tokens


def test_hanging_renewal_does_not_hold_up_requests_while_the_token_is_valid(clock) -> None:
    fake = FakeCredential()
    cache = TokenCache(fake, timeout=0.3)
    first = cache.get_token()
    clock.shift(3400)
    fake.hang()
    try:
        with ThreadPoolExecutor(16) as pool:
            assert set(pool.map(lambda _: cache.get_token(), range(64))) == {first}
        assert fake.calls == 2
    finally:
        fake.release.set()


def _fork_and_get_token(cache: TokenCache) -> tuple[int, str]:
    """Fork; the child asks the cache for a token and reports it through a pipe."""
    read_end, write_end = os.pipe()
    with warnings.catch_warnings():
        # Forking while another thread is mid-refresh or holds the lock is the point of these
        # tests; Python 3.12+ warns about exactly that (the child may deadlock: here it must not).
        warnings.filterwarnings(
            "ignore",
            r"This process \(pid=\d+\) is multi-threaded, use of fork\(\) may lead to deadlocks",
            DeprecationWarning,
        )
        pid = os.fork()
    if pid == 0:  # child
        os.close(read_end)
        signal.alarm(10)  # a deadlocked child must not hang the suite
        try:
            token = cache.get_token()
            os.write(write_end, token.encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        data = pipe.read().decode()
    _, status = os.waitpid(pid, 0)
    return status, data


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_while_a_refresh_is_in_flight_gives_the_child_a_working_cache() -> None:
    parent = os.getpid()

    gate = threading.Event()

    class HangsInParent(FakeCredential):
        def get_token_info(self, *scopes, options=None):  # type: ignore[no-untyped-def]
            if os.getpid() == parent:
                gate.wait()
            return super().get_token_info(*scopes, options=options)

    fake = HangsInParent()
    cache = TokenCache(fake, timeout=30)
    waiter = threading.Thread(target=cache.get_token, daemon=True)
    waiter.start()
    wait_until(lambda: cache._flight is not None)
    try:
        status, token = _fork_and_get_token(cache)
        assert status == 0
        assert token.startswith("fake-")  # the child made its own call instead of waiting on a dead flight
    finally:
        gate.set()
        waiter.join(5)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_while_another_thread_holds_the_lock() -> None:
    fake = FakeCredential()
    cache = TokenCache(fake)
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with cache._lock:
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(5)
    try:
        status, token = _fork_and_get_token(cache)
    finally:
        release.set()
        holder.join(5)
    assert os.WIFEXITED(status), "the child died (deadlocked on an inherited lock and was killed by its alarm)"
    assert token.startswith("fake-")


def test_soak_64_threads_short_lived_tokens_never_send_an_expired_or_missing_token(token_log) -> None:
    registry = TokenRegistry()
    cred = FakeCredential(registry=registry, lifetime=3)
    auth = AzureADTokenAuth(cred)
    deadline = time.monotonic() + 3.0
    with AzureOpenAIStandIn(registry=registry) as server, server.patched_env():
        url = f"{server.base_url}/echo"

        def worker(_: int) -> int:
            sent = 0
            with requests.Session() as session:
                session.auth = auth
                while time.monotonic() < deadline:
                    assert session.post(url, data=b"x", timeout=10).status_code == 200
                    sent += 1
            return sent

        with ThreadPoolExecutor(64) as pool:
            total = sum(pool.map(worker, range(64)))
        statuses = {r.token_status for r in server.requests}
    assert total == len(server.requests) > 64
    assert statuses == {"valid"}  # never expired, never missing
    # Renewed about every 1.5 s (half of a 3 s life): a handful of calls, not one per request.
    assert 2 <= cred.calls <= 6
    assert_no_token_in(token_log.text, cred.tokens)


def test_debug_log_of_a_whole_run_with_real_azure_identity_has_no_token(token_log, clock) -> None:
    from azure.identity import DefaultAzureCredential

    registry = TokenRegistry()
    with ManagedIdentityEndpoint(registry=registry, lifetime=3600) as identity, identity.patched_env():
        with AzureOpenAIStandIn(registry=registry) as server, server.patched_env():
            auth = AzureADTokenAuth(DefaultAzureCredential())
            session = requests.Session()
            session.auth = auth
            assert session.post(f"{server.base_url}/echo", data=b"x").status_code == 200
            server.fail_next(1, status=401)
            session.post(f"{server.base_url}/echo", data=b"x")
            clock.shift(3400)
            assert session.post(f"{server.base_url}/echo", data=b"x").status_code == 200
            wait_until(lambda: auth.cache.status().refreshes >= 2)
            assert session.post(f"{server.base_url}/echo", data=b"x").status_code == 200
            tokens = list(registry._tokens)  # every token the run issued
    assert identity.calls >= 2
    assert tokens
    assert any(r.name.startswith("azure") and r.levelno == logging.DEBUG for r in token_log.records)
    assert_no_token_in(token_log.text, tokens)


def test_a_held_error_keeps_its_traceback_short(clock) -> None:
    import traceback

    fake = FakeCredential(fail=ClientAuthenticationError("identity endpoint down"))
    cache = TokenCache(fake)
    errors = []
    for _ in range(200):
        with pytest.raises(ClientAuthenticationError) as info:
            cache.get_token()
        errors.append(info.value)
    assert fake.calls == 1  # held, not asked again
    assert len({id(e) for e in errors}) == 1
    # Re-raising the same object must not stack 200 callers' frames onto it.
    assert len(traceback.extract_tb(errors[0].__traceback__)) < 20


def test_an_abandoned_call_failing_late_does_not_disturb_the_new_token() -> None:
    gate = threading.Event()

    class FirstCallHangsThenFails(FakeCredential):
        def get_token_info(self, *scopes, options=None):  # type: ignore[no-untyped-def]
            if self.calls == 0:
                self.calls += 1
                gate.wait(10)
                raise ClientAuthenticationError("late failure of an abandoned call")
            return super().get_token_info(*scopes, options=options)

    fake = FirstCallHangsThenFails()
    cache = TokenCache(fake, timeout=0.2)
    with pytest.raises(TokenAcquisitionTimeout):
        cache.get_token()
    time.sleep(0.25)  # past `timeout`: the hung call is abandoned and the next caller starts another
    token = cache.get_token()
    planned = cache.status().refresh_at
    gate.set()
    wait_until(lambda: not any(t.name == "azure-ad-token-auth-refresh" and t.is_alive() for t in threading.enumerate()))
    assert cache.status().refresh_at == planned  # the late failure did not bring the renewal forward
    assert cache.status().failures == 0
    assert cache.get_token() == token
