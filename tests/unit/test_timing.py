"""Renewal timing as pure functions of `now` (`_timing`), and the cache following them."""

from __future__ import annotations

import itertools
import logging
import time
from pathlib import Path

import pytest
from azure.core.credentials import AccessTokenInfo

from azure_ad_token_auth import CacheOptions, InvalidTokenError, TokenCache
from azure_ad_token_auth._timing import Renewal, expiry_problem, plan_renewal, refresh_on_problem
from azure_ad_token_auth.testing import FakeCredential, TokenRegistry
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


def test_renewal_is_due_at_the_margin_or_half_the_life() -> None:
    assert plan_renewal(NOW, NOW + 3600, None, 300) == Renewal(NOW + 3300, NOW + 3600)
    assert plan_renewal(NOW, NOW + 120, None, 300).refresh_at == NOW + 60  # short-lived: half the life
    assert plan_renewal(NOW, NOW + 3600, NOW + 1800, 300).refresh_at == NOW + 1800  # refresh_on first
    assert plan_renewal(NOW, NOW + 3600, NOW + 3500, 300).refresh_at == NOW + 3300  # the margin first


@pytest.mark.parametrize(
    ("refresh_on", "named"),
    [(NOW - 5, "already 5 s past"), (NOW, "already 0 s past"), (1800, "lifetime"), (NOW + 3601, "after its expiry")],
    ids=["past", "at-arrival", "lifetime", "after-expiry"],
)
def test_a_refresh_on_that_cannot_be_right_is_named_and_the_margin_decides(refresh_on: float, named: str) -> None:
    problem = refresh_on_problem(refresh_on, NOW + 3600, NOW)
    assert problem is not None and named in problem
    assert plan_renewal(NOW, NOW + 3600, refresh_on, 300) == Renewal(NOW + 3300, NOW + 3600, problem)


def test_a_refresh_on_between_a_quarter_of_the_lifetime_and_expiry_is_followed() -> None:
    for refresh_on in (NOW + 900, NOW + 1800, NOW + 3600):
        assert refresh_on_problem(refresh_on, NOW + 3600, NOW) is None
    assert plan_renewal(NOW, NOW + 3600, NOW + 900, 300) == Renewal(NOW + 900, NOW + 3600)


@pytest.mark.parametrize("refresh_on", [NOW + 1, NOW + 60, NOW + 899])
def test_a_refresh_on_within_the_first_quarter_of_the_lifetime_is_named_and_the_margin_decides(
    refresh_on: float,
) -> None:
    """Followed, a 1-hour token due one second after it arrived was a credential call per second."""
    problem = refresh_on_problem(refresh_on, NOW + 3600, NOW)
    assert problem is not None and f"{refresh_on - NOW:.0f} s after it was issued" in problem
    assert "quarter of its 3600 s lifetime" in problem
    assert plan_renewal(NOW, NOW + 3600, refresh_on, 300) == Renewal(NOW + 3300, NOW + 3600, problem)


def test_the_lifetime_counts_from_the_issue_time_when_the_token_says_it() -> None:
    """A token arriving mid-life (a credential's own cache, another process's through the
    store) is rightly due soon after it arrives: its issue time (a JWT's `iat`) says so."""
    issued, expires_on, refresh_on = NOW - 1700, NOW + 1900, NOW + 100  # due at half of a 3600 s life
    assert refresh_on_problem(refresh_on, expires_on, NOW, issued) is None
    assert plan_renewal(NOW, expires_on, refresh_on, 300, 0.0, issued).refresh_at == refresh_on
    assert refresh_on_problem(NOW + 1, NOW + 3500, NOW, NOW - 100) is not None  # 101 s after its issue
    # An issue time that cannot be one counts from arrival: before 1980, after expiry, not a time.
    for implausible in (0.0, 3600.0, expires_on, expires_on + 10):
        assert refresh_on_problem(refresh_on, expires_on, NOW, implausible) is not None
    # The issuer's clock ahead of this one: counted from arrival.
    assert refresh_on_problem(NOW + 900, NOW + 3600, NOW, NOW + 60) is None
    assert refresh_on_problem(NOW + 899, NOW + 3600, NOW, NOW + 60) is not None


def test_jitter_only_moves_renewal_earlier() -> None:
    for draw in (0.0, 1.0, 30.0, 59.9):
        early = plan_renewal(NOW, NOW + 3600, NOW + 1000, 300, draw).refresh_at
        assert early <= NOW + 1000  # never after the credential's refresh_on
        plain = plan_renewal(NOW, NOW + 3600, None, 300, draw).refresh_at
        assert NOW + 3600 - 300 - draw == plain
    # Jitter stops at a quarter of the lifetime, but never pushes anything later: a token
    # that arrived mid-life, due 100 s after its arrival, stays due then.
    assert plan_renewal(NOW, NOW + 400, None, 300, 200).refresh_at == NOW + 100
    assert plan_renewal(NOW, NOW + 1900, NOW + 100, 300, 30, issued_at=NOW - 1700).refresh_at == NOW + 100


def _refresh_on_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "refresh_on" in r.getMessage()]


@pytest.mark.parametrize(
    "refresh_on",
    [lambda now: now - 10, lambda now: 1800, lambda now: now + 7200, lambda now: now + 1],
    ids=["always-past", "lifetime", "after-expiry", "one-second-after-arrival"],
)
def test_a_refresh_on_that_cannot_be_right_gets_one_warning_and_the_library_rule(
    clock: Clock, caplog: pytest.LogCaptureFixture, refresh_on: object
) -> None:
    """A credential whose every new token says "renew now" (or gives a lifetime, a time
    after expiry, or one second after arrival on a 1-hour token): followed, it was a
    credential call on every request (every second), with no word."""
    serial = itertools.count()

    def answer() -> AccessTokenInfo:
        now = time.time()
        return AccessTokenInfo(f"token-{next(serial)}", int(now + 3600), refresh_on=int(refresh_on(now)))  # type: ignore[operator]

    fake = FakeCredential(result=answer)
    cache = TokenCache(fake, background_refresh=False)
    with caplog.at_level(logging.WARNING):
        first = cache.get_token()
        for _ in range(20):
            clock.shift(1)
            assert cache.get_token() == first
        assert fake.calls == 1
        assert cache.status().refresh_at == NOW + 3600 - 300  # the margin's rule
        clock.shift(3300 - 20)
        assert cache.get_token() != first and fake.calls == 2
    (warning,) = _refresh_on_warnings(caplog)
    assert "FakeCredential.get_token_info()" in warning and "300 s before expiry" in warning


def test_the_held_token_handed_back_with_its_refresh_on_now_past_is_no_warning(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """azure-identity hands back its cached token, `refresh_on` and all, while its own
    renewal fails or waits 30 s: that `refresh_on` was right when the token arrived."""
    held = AccessTokenInfo("held-token", int(NOW + 3600), refresh_on=int(NOW + 1800))
    fake = FakeCredential(result=lambda: held)
    cache = TokenCache(fake, background_refresh=False)
    cache.get_token()
    clock.shift(1801)
    with caplog.at_level(logging.WARNING):
        assert cache.get_token() == "held-token" and fake.calls == 2
        cache.get_token()
    assert fake.calls == 2  # asked again after min(retry_backoff, half the life left), not per request
    assert _refresh_on_warnings(caplog) == []


def test_a_token_arriving_mid_life_is_renewed_at_its_refresh_on_without_a_warning(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """A credential's own cache hands a new `TokenCache` a token issued 1,700 s ago, due at
    half its life: 100 s after arrival, and no sign of a credential that is wrong."""
    registry = TokenRegistry()
    token, expires_on = registry.issue(3600)
    held = AccessTokenInfo(token, expires_on, refresh_on=int(NOW + 1800))
    clock.shift(1700)
    cache = TokenCache(FakeCredential(result=lambda: held))
    with caplog.at_level(logging.WARNING):
        assert cache.get_token() == token
    assert cache.status().refresh_at == NOW + 1800
    assert _refresh_on_warnings(caplog) == []


def test_jitter_never_pushes_an_early_refresh_on_later(clock: Clock) -> None:
    fake = FakeCredential(lifetime=200, refresh_in=60)
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
