"""Shared fixtures: clocks, fake credentials, log capture that proves no token leaks."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator

import pytest
import time_machine

from azure_ad_token_auth import _timing
from azure_ad_token_auth._registry import forget_shared_caches
from azure_ad_token_auth.testing import AzureOpenAIStandIn, FakeCredential, TokenRegistry


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll for a background effect; fail the test (not hang) if it never happens."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached within %.1f s" % timeout)
        time.sleep(0.002)


@pytest.fixture(autouse=True)
def _fresh_shared_caches() -> Iterator[None]:
    """Adapters share caches per credential; the default credential's outlive a test."""
    forget_shared_caches()
    yield
    forget_shared_caches()


class Clock:
    """The test's clocks: a frozen wall clock, and the cache's monotonic clock running
    on with an offset the test controls.

    `shift(s)`: time passes (both clocks move). `step(s)`: the wall clock is set
    forward or back (NTP, a suspended VM), durations are untouched. Whether
    time-machine itself moves `time.monotonic` differs between its versions, so the
    cache's monotonic clock is moved through its seam, `_timing.monotonic`.
    """

    def __init__(self, traveller: time_machine.Traveller, monkeypatch: pytest.MonkeyPatch) -> None:
        self.traveller = traveller
        self.offset = 0.0
        real = time.monotonic
        monkeypatch.setattr(_timing, "monotonic", lambda: real() + self.offset)

    def shift(self, seconds: float) -> None:
        self.traveller.shift(seconds)
        self.offset += seconds

    def step(self, seconds: float) -> None:
        self.traveller.shift(seconds)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[Clock]:
    """A frozen wall clock at 1,900,000,000 and a movable monotonic one (see `Clock`)."""
    with time_machine.travel(1_900_000_000.0, tick=False) as traveller:
        yield Clock(traveller, monkeypatch)


@pytest.fixture
def fake() -> FakeCredential:
    return FakeCredential()


@pytest.fixture
def token_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Every log record at DEBUG and above, from every logger."""
    caplog.set_level(logging.DEBUG)
    return caplog


def assert_no_token_in(text: str, tokens: list[str]) -> None:
    for token in tokens:
        assert token not in text, "a token leaked"


@pytest.fixture
def registry() -> TokenRegistry:
    """Tokens the stand-ins accept: issue them with `FakeCredential(registry=registry)`."""
    return TokenRegistry()


@pytest.fixture
def server(registry: TokenRegistry) -> Iterator[AzureOpenAIStandIn]:
    """A loopback Azure OpenAI stand-in that checks every token against `registry`."""
    with AzureOpenAIStandIn(registry=registry) as stand_in:
        yield stand_in


@pytest.fixture
def cred(registry: TokenRegistry) -> FakeCredential:
    """A counting credential whose tokens `server` accepts."""
    return FakeCredential(registry=registry)


def echo(server: AzureOpenAIStandIn) -> str:
    """The stand-in's route that reports what it received (body hash, token status)."""
    return f"{server.base_url}/echo"
