"""The single flight (`TokenCache`): durations, held errors, odd exceptions, hung and orphaned calls."""

from __future__ import annotations

import asyncio
import gc
import threading
import time

import pytest
from azure.core.exceptions import ClientAuthenticationError

from azure_ad_token_auth import TokenAcquisitionTimeout, TokenCache
from azure_ad_token_auth.testing import AsyncFakeCredential, FakeCredential
from conftest import Clock, wait_until


def test_a_wall_clock_step_forward_does_not_abandon_a_healthy_call(clock: Clock) -> None:
    fake = FakeCredential()
    fake.hang()
    cache = TokenCache(fake, timeout=60)
    tokens: list[str] = []
    first = threading.Thread(target=lambda: tokens.append(cache.get_token()))
    first.start()
    wait_until(lambda: fake.calls == 1)
    clock.step(61)  # NTP sets the clock forward; the call is 0 s old, not 61
    second = threading.Thread(target=lambda: tokens.append(cache.get_token()))
    second.start()
    try:
        second.join(0.5)  # on the wall clock's word it would start a second call now
        assert fake.calls == 1
    finally:
        fake.release.set()
        first.join(5)
        second.join(5)
    assert tokens == [fake.tokens[0]] * 2
    assert fake.calls == 1


def test_a_wall_clock_step_back_does_not_stretch_the_error_hold(clock: Clock) -> None:
    fake = FakeCredential(fail=ClientAuthenticationError("identity endpoint down"))
    cache = TokenCache(fake)
    with pytest.raises(ClientAuthenticationError):
        cache.get_token()
    fake.fail = None
    clock.step(-3600)  # the clock is set back an hour
    with pytest.raises(ClientAuthenticationError):
        cache.get_token()  # still inside the 5 s hold
    assert fake.calls == 1
    clock.shift(5.1)  # 5.1 s pass: the hold is over, whatever the wall clock says
    assert cache.get_token() == fake.tokens[0]
    assert fake.calls == 2


def test_a_wall_clock_step_back_does_not_stretch_the_401_spacing(clock: Clock) -> None:
    fake = FakeCredential()
    cache = TokenCache(fake, retry_backoff=30)
    assert cache.invalidate(cache.get_token()) is True
    second = cache.get_token()
    clock.step(-3600)
    assert cache.invalidate(second) is False  # within 30 s of the last forced renewal
    clock.shift(31)
    assert cache.invalidate(second) is True
    assert cache.get_token() != second
    assert fake.calls == 3


def test_a_held_error_keeps_the_credentials_frame_in_its_traceback(clock: Clock) -> None:
    import traceback

    class Fails(FakeCredential):
        def get_token_info(self, *scopes, options=None):  # type: ignore[no-untyped-def]
            self.calls += 1
            raise ClientAuthenticationError("identity endpoint down")

    fake = Fails()
    cache = TokenCache(fake)
    for attempt in range(3):  # the first failure, then the same error held
        with pytest.raises(ClientAuthenticationError) as info:
            cache.get_token()
        frames = [frame.name for frame in traceback.extract_tb(info.value.__traceback__)]
        assert "get_token_info" in frames, f"attempt {attempt}: the credential's frame is lost: {frames}"
    assert fake.calls == 1


class _RaisesCancelled(FakeCredential):
    """A credential that awaits a future someone else cancelled: CancelledError, not ours."""

    def get_token_info(self, *scopes, options=None):  # type: ignore[no-untyped-def]
        with self._lock:
            self.calls += 1
        raise asyncio.CancelledError()


def test_a_credential_raising_cancelled_error_is_a_failure_not_a_spin() -> None:
    fake = _RaisesCancelled()
    cache = TokenCache(fake)
    seen: list[str] = []
    stop = threading.Event()

    def caller() -> None:
        while not stop.is_set():
            try:
                cache.get_token()
            except BaseException as exc:
                seen.append(type(exc).__name__)

    threads = [threading.Thread(target=caller, daemon=True) for _ in range(8)]
    for thread in threads:
        thread.start()
    time.sleep(1.5)
    stop.set()
    for thread in threads:
        thread.join(5)
    assert not any(thread.is_alive() for thread in threads), "a caller never came back"
    # One call, its failure held for 5 s: not one call per loop turn.
    assert fake.calls == 1
    assert seen and set(seen) == {"RuntimeError"}


def test_an_async_credential_raising_cancelled_error_is_a_failure_on_the_loop() -> None:
    class AsyncRaisesCancelled(AsyncFakeCredential):
        async def get_token_info(self, *scopes, options=None):  # type: ignore[no-untyped-def, override]
            with self._lock:
                self.calls += 1
            cancelled: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            cancelled.cancel()
            await cancelled  # raises CancelledError: the credential's, not the caller's

    fake = AsyncRaisesCancelled()
    cache = TokenCache(fake)
    seen: list[str] = []

    async def three_callers_in_turn() -> None:
        for _ in range(3):
            try:
                await cache.get_token_async()
            except BaseException as exc:
                seen.append(f"{type(exc).__name__}: {exc}")

    # In a thread of its own: a cache that spins on the loop would hang the test.
    runner = threading.Thread(target=asyncio.run, args=(three_callers_in_turn(),), daemon=True)
    runner.start()
    runner.join(10)
    assert not runner.is_alive(), f"the loop spun: {fake.calls} credential calls"
    assert len(seen) == 3 and all(s.startswith("RuntimeError") and "CancelledError" in s for s in seen), seen
    assert fake.calls == 1


@pytest.mark.parametrize("kind", [KeyboardInterrupt, SystemExit, GeneratorExit])
def test_keyboard_interrupt_and_friends_reach_the_waiters_once_and_are_not_held(kind: type[BaseException]) -> None:
    fake = FakeCredential(fail=kind(), fail_times=1, delay=0.3)
    cache = TokenCache(fake)
    got: list[object] = []
    barrier = threading.Barrier(8)

    def caller() -> None:
        barrier.wait()
        try:
            got.append(cache.get_token())
        except BaseException as exc:
            got.append(type(exc))

    threads = [threading.Thread(target=caller) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert got == [kind] * 8  # every caller waiting on that call gets it, once
    assert fake.calls == 1
    try:
        token = cache.get_token()  # at once: not held for 5 s
    except BaseException as exc:
        pytest.fail(f"{exc!r} was held and re-raised to a later caller")
    assert token == fake.tokens[0]
    assert fake.calls == 2


async def test_a_hung_credential_under_async_load_holds_no_waiters_of_callers_that_gave_up() -> None:
    fake = AsyncFakeCredential()
    fake.hang()
    cache = TokenCache(fake, timeout=0.05)
    try:
        for _ in range(20):  # several abandoned calls, each with hundreds of callers that gave up
            results = await asyncio.gather(*(cache.get_token_async() for _ in range(300)), return_exceptions=True)
            assert {type(r) for r in results} == {TokenAcquisitionTimeout}
        flights = [o for o in gc.get_objects() if type(o).__name__ == "RunningFlight"]
        assert len(flights) >= 2  # the hung calls are still there...
        assert sum(len(f.waiters) for f in flights) == 0  # ...but keep no caller's future
    finally:
        fake.release.set()


def test_a_loop_closed_under_its_flight_sends_other_loops_callers_to_ask_again() -> None:
    class FirstCallHangs(AsyncFakeCredential):
        async def get_token_info(self, *scopes, options=None):  # type: ignore[no-untyped-def, override]
            if self.calls == 0:
                self.calls += 1
                await asyncio.sleep(3600)
            return await super().get_token_info(*scopes, options=options)

    fake = FirstCallHangs()
    cache = TokenCache(fake, timeout=30)
    loop = asyncio.new_event_loop()
    first_caller = loop.create_task(cache.get_token_async())
    loop.run_until_complete(asyncio.sleep(0.1))  # the call is under way on `loop`...
    assert fake.calls == 1
    result: list[object] = []

    def other_loop() -> None:
        try:
            result.append(asyncio.run(asyncio.wait_for(cache.get_token_async(), 5)))
        except BaseException as exc:
            result.append(exc)

    waiter = threading.Thread(target=other_loop)
    waiter.start()
    time.sleep(0.2)  # ...and a caller on another loop waits for it
    loop.close()  # without cancelling anything: the flight will never land
    assert not first_caller.done()
    waiter.join(10)
    assert len(result) == 1 and isinstance(result[0], str), result  # asked again at once, not after 30 s
    assert fake.calls == 2


def test_a_renewal_expiring_before_the_held_token_still_replaces_it(clock: Clock) -> None:
    fake = FakeCredential(lifetime=86400, refresh_in=43200)  # a 24 h CAE token, renewal due at 12 h
    cache = TokenCache(fake, background_refresh=False)
    first = cache.get_token()
    fake.lifetime, fake.refresh_in = 3600, None  # then 1 h tokens, expiring before the first
    clock.shift(43201)
    second = cache.get_token()
    assert second != first
    for _ in range(2000):
        assert cache.get_token() == second
    assert fake.calls == 2  # not one credential call per request


def _refresh_threads_done() -> bool:
    return not any(t.name == "azure-ad-token-auth-refresh" and t.is_alive() for t in threading.enumerate())


def test_status_refreshes_counts_only_tokens_stored(clock: Clock) -> None:
    fake = FakeCredential(delay=0.3)
    cache = TokenCache(fake)
    first = cache.get_token()
    clock.shift(3400)
    assert cache.get_token() == first  # a background renewal starts...
    wait_until(lambda: fake.calls == 2)
    assert cache.invalidate(first) is True  # ...and a 401 makes it stale: its token is never stored
    third = cache.get_token()
    wait_until(_refresh_threads_done)
    assert cache.get_token() == third
    status = cache.status()
    assert (status.credential_calls, status.refreshes) == (3, 2)


def test_claims_go_with_one_renewal_and_a_refusal_reaches_the_caller_once(clock: Clock) -> None:
    from azure.identity import CredentialUnavailableError

    class RefusesClaims(FakeCredential):  # AzureCliCredential: "run az login --claims-challenge ..."
        def get_token_info(self, *scopes, options=None):  # type: ignore[no-untyped-def]
            if (options or {}).get("claims"):
                with self._lock:
                    self.calls += 1
                    self.claims.append(options["claims"])
                raise CredentialUnavailableError("run az login --claims-challenge")
            return super().get_token_info(*scopes, options=options)

    fake = RefusesClaims()
    cache = TokenCache(fake)
    first = cache.get_token()
    assert cache.invalidate(first, claims='{"access_token":{}}') is True
    with pytest.raises(CredentialUnavailableError):
        cache.get_token()  # the refusal reaches the caller, once...
    second = cache.get_token()  # ...and the next renewal asks without the claims
    assert second != first
    assert fake.claims == [None, '{"access_token":{}}', None]
    for _ in range(100):
        assert cache.get_token() == second
    assert fake.calls == 3


def test_a_credential_that_asks_its_own_cache_gets_a_timeout_not_a_deadlock() -> None:
    # A credential whose own HTTP pipeline carries this cache's auth would wait for the
    # call it is part of: the cache cannot tell, so `timeout` bounds it (one call, no hang).
    calls = 0

    class Reentrant:
        def get_token_info(self, *scopes: str, options: object = None) -> object:
            nonlocal calls
            calls += 1
            return cache.get_token()

    cache = TokenCache(Reentrant(), timeout=0.5)  # type: ignore[arg-type]
    started = time.monotonic()
    with pytest.raises(TokenAcquisitionTimeout):
        cache.get_token()
    assert time.monotonic() - started < 5
    assert calls == 1
