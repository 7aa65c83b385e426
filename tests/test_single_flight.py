"""The single flight (`TokenCache`): durations, held errors, odd exceptions, hung and orphaned calls."""

from __future__ import annotations

import threading

import pytest
from azure.core.exceptions import ClientAuthenticationError

from azure_ad_token_auth import TokenCache
from azure_ad_token_auth.testing import FakeCredential
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
