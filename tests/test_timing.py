"""Renewal timing as pure functions of `now` (`_timing`), and the cache following them."""

from __future__ import annotations

import pytest
from azure.core.credentials import AccessTokenInfo

from azure_ad_token_auth import InvalidTokenError, TokenCache
from azure_ad_token_auth._timing import expiry_problem
from azure_ad_token_auth.testing import FakeCredential
from conftest import Clock

NOW = 1_900_000_000.0


@pytest.mark.parametrize(
    ("expires_on", "unit"),
    [(NOW * 1e3 + 3_600_000, "milliseconds"), (NOW * 1e6, "microseconds"), (NOW * 1e9, "nanoseconds")],
)
def test_an_expiry_in_the_wrong_unit_is_named(expires_on: float, unit: str) -> None:
    problem = expiry_problem(expires_on, NOW)
    assert problem is not None and unit in problem and "expected seconds" in problem


def test_plausible_expiries_pass_and_a_lifetime_is_named() -> None:
    assert expiry_problem(NOW + 3600, NOW) is None
    assert expiry_problem(253_402_300_799, NOW) is None  # a static token "valid until 9999-12-31"
    problem = expiry_problem(3600, NOW)
    assert problem is not None and "expires_in" in problem
    problem = expiry_problem(NOW - 10, NOW)
    assert problem is not None and "clock" in problem


def test_a_credential_answering_in_milliseconds_is_refused(clock: Clock) -> None:
    fake = FakeCredential(result=lambda: AccessTokenInfo("token", int((NOW + 3600) * 1000)))
    cache = TokenCache(fake)
    with pytest.raises(InvalidTokenError, match="milliseconds") as info:
        cache.get_token()
    assert "FakeCredential.get_token_info()" in str(info.value)
