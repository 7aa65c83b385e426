"""Renewal timing as pure functions of `now` (`_timing`), and the cache following them."""

from __future__ import annotations

from pathlib import Path

import pytest
from azure.core.credentials import AccessTokenInfo

from azure_ad_token_auth import CacheOptions, InvalidTokenError, TokenCache
from azure_ad_token_auth._timing import Renewal, expiry_problem, plan_renewal
from azure_ad_token_auth.testing import FakeCredential
from conftest import Clock, wait_until

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


def test_renewal_is_due_at_the_margin_or_half_the_life() -> None:
    assert plan_renewal(NOW, NOW + 3600, None, 300) == Renewal(NOW + 3300, NOW + 3600)
    assert plan_renewal(NOW, NOW + 120, None, 300).refresh_at == NOW + 60  # short-lived: half the life
    assert plan_renewal(NOW, NOW + 3600, NOW + 1800, 300).refresh_at == NOW + 1800  # refresh_on first
    assert plan_renewal(NOW, NOW + 3600, NOW + 3500, 300).refresh_at == NOW + 3300  # the margin first


def test_a_refresh_on_already_past_makes_the_next_request_renew() -> None:
    assert plan_renewal(NOW, NOW + 3600, NOW - 5, 300).refresh_at <= NOW


def test_jitter_only_moves_renewal_earlier() -> None:
    for draw in (0.0, 1.0, 30.0, 59.9):
        early = plan_renewal(NOW, NOW + 3600, NOW + 60, 300, draw).refresh_at
        assert early <= NOW + 60  # never after the credential's refresh_on
        plain = plan_renewal(NOW, NOW + 3600, None, 300, draw).refresh_at
        assert NOW + 3600 - 300 - draw == plain
    # Jitter stops at a quarter of the lifetime, but never pushes anything later.
    assert plan_renewal(NOW, NOW + 400, None, 300, 200).refresh_at == NOW + 100
    assert plan_renewal(NOW, NOW + 3600, NOW + 60, 300, 30).refresh_at == NOW + 60


def test_a_refresh_on_already_past_on_arrival_renews_in_the_background(clock: Clock) -> None:
    fake = FakeCredential(refresh_in=-10)  # azure-identity: "renew now", the token valid for an hour
    cache = TokenCache(fake)
    first = cache.get_token()
    assert cache.get_token() == first  # valid: handed out at once...
    wait_until(lambda: cache.status().credential_calls == 2 and fake.calls == 2)  # ...and renewed behind it


def test_jitter_never_pushes_an_early_refresh_on_later(clock: Clock) -> None:
    fake = FakeCredential(refresh_in=60)
    cache = TokenCache(fake, jitter=30, background_refresh=False)
    first = cache.get_token()
    assert (cache.status().refresh_at or 0) <= NOW + 60
    clock.shift(61)
    assert cache.get_token() != first
    assert fake.calls == 2


def _how_refresh_works() -> str:
    """The docs page that explains renewal (it was the README's section before the docs site)."""
    return (Path(__file__).resolve().parents[2] / "docs" / "refresh.md").read_text(encoding="utf-8")


def test_renewal_at_exactly_the_margin_and_the_docs_say_so(clock: Clock) -> None:
    fake = FakeCredential()
    cache = TokenCache(fake, background_refresh=False)
    first = cache.get_token()
    clock.shift(3600 - 300 - 0.5)
    assert cache.get_token() == first
    clock.shift(0.5)  # exactly 300 s left: renewed, as azure-identity does (<=)
    assert cache.get_token() != first
    section = " ".join(_how_refresh_works().split())
    assert "`refresh_margin` seconds (300) or fewer remain" in section
    assert "fewer than" not in section
    assert "seconds or fewer remain" in " ".join((CacheOptions.__doc__ or "").split())


def test_why_claims_also_send_enable_cae_is_documented() -> None:
    from azure_ad_token_auth._credential import CredentialBinding

    binding = CredentialBinding(FakeCredential(), ("scope/.default",))
    assert binding.options('{"access_token":{}}') == {"claims": '{"access_token":{}}', "enable_cae": True}
    assert binding.options(None) == {}
    section = " ".join(_how_refresh_works().split())
    assert "always with `enable_cae=True`: claims come only from a CAE challenge" in section
    assert "CP1" in section
