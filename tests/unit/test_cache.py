"""The token cache: reuse, renewal timing, single flight, bad credentials, secrecy."""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from azure.core.credentials import AccessToken, AccessTokenInfo
from azure.core.exceptions import ClientAuthenticationError

from azure_ad_token_auth import (
    DEFAULT_SCOPE,
    InvalidTokenError,
    TokenAcquisitionTimeout,
    TokenCache,
)
from azure_ad_token_auth.testing import FakeCredential
from conftest import assert_no_token_in, wait_until


def test_reuses_one_token(fake: FakeCredential) -> None:
    cache = TokenCache(fake)
    tokens = {cache.get_token() for _ in range(1000)}
    assert tokens == {fake.tokens[0]}
    assert fake.calls == 1


def test_scopes_normalized_and_validated(fake: FakeCredential) -> None:
    assert TokenCache(fake).scopes == (DEFAULT_SCOPE,)
    assert TokenCache(fake, ["a/.default", "b/.default"]).scopes == ("a/.default", "b/.default")
    with pytest.raises(ValueError, match="scopes"):
        TokenCache(fake, [])
    with pytest.raises(ValueError, match="refresh_margin"):
        TokenCache(fake, refresh_margin=-1)


def test_credential_without_token_methods_is_refused() -> None:
    with pytest.raises(TypeError, match="object"):
        TokenCache(object())  # type: ignore[arg-type]


@pytest.mark.parametrize("background", [True, False])
def test_renews_inside_the_five_minute_margin(clock, fake: FakeCredential, background: bool) -> None:
    cache = TokenCache(fake, background_refresh=background)
    first = cache.get_token()
    clock.shift(3600 - 301)
    assert cache.get_token() == first
    assert fake.calls == 1
    clock.shift(2)  # 299 s left: inside the margin
    token = cache.get_token()
    if background:
        assert token == first  # still valid: handed out at once, renewed behind the scenes
        wait_until(lambda: cache.status().refreshes == 2)
    else:
        assert token == fake.tokens[1]
    assert cache.get_token() == fake.tokens[1] != first
    assert fake.calls == 2


def test_custom_margin(clock, fake: FakeCredential) -> None:
    cache = TokenCache(fake, refresh_margin=900, background_refresh=False)
    first = cache.get_token()
    clock.shift(3600 - 901)
    assert cache.get_token() == first
    clock.shift(2)
    assert cache.get_token() != first
    assert fake.calls == 2


def test_refresh_on_is_honoured(clock) -> None:
    fake = FakeCredential(lifetime=86400, refresh_in=43200)
    cache = TokenCache(fake, background_refresh=False)
    first = cache.get_token()
    clock.shift(43199)
    assert cache.get_token() == first
    clock.shift(2)
    assert cache.get_token() != first
    assert fake.calls == 2


def test_get_token_only_credential_works_without_refresh_on(clock) -> None:
    fake = FakeCredential(token_info=False)
    cache = TokenCache(fake, background_refresh=False)
    first = cache.get_token()
    clock.shift(3600 - 299)
    assert cache.get_token() != first
    assert fake.calls == 2


def test_short_lived_tokens_renew_at_half_life_not_per_request(clock) -> None:
    fake = FakeCredential(lifetime=120)  # shorter than the 300 s margin
    cache = TokenCache(fake, background_refresh=False)
    first = cache.get_token()
    for _ in range(100):
        assert cache.get_token() == first
    clock.shift(59)
    assert cache.get_token() == first
    assert fake.calls == 1
    clock.shift(2)
    assert cache.get_token() != first
    assert fake.calls == 2


def test_single_flight_on_a_cold_cache() -> None:
    fake = FakeCredential(delay=0.3)
    cache = TokenCache(fake)
    barrier = threading.Barrier(64)

    def worker(_: int) -> str:
        barrier.wait()
        return cache.get_token()

    with ThreadPoolExecutor(64) as pool:
        tokens = set(pool.map(worker, range(64)))
    assert fake.calls == 1
    assert tokens == {fake.tokens[0]}


def test_single_flight_at_renewal_time_and_nobody_waits(clock) -> None:
    fake = FakeCredential()
    cache = TokenCache(fake)
    first = cache.get_token()
    clock.shift(3400)
    barrier = threading.Barrier(64)

    def worker(_: int) -> str:
        barrier.wait()
        return cache.get_token()

    fake.hang()  # the renewal cannot finish until every request has gone out
    try:
        with ThreadPoolExecutor(64) as pool:
            tokens = set(pool.map(worker, range(64)))
        assert tokens == {first}  # everyone got the still-valid token while the renewal hung
        assert cache.status().refreshes == 1
    finally:
        fake.release.set()
    wait_until(lambda: cache.status().refreshes == 2)
    assert fake.calls == 2


def test_credential_error_reaches_caller_unchanged(clock, fake: FakeCredential) -> None:
    fake.fail = ClientAuthenticationError("no identity available")
    cache = TokenCache(fake)
    with pytest.raises(ClientAuthenticationError, match="no identity available"):
        cache.get_token()
    assert cache.status().fingerprint is None
    fake.fail = None
    # For a few seconds the same error comes back without a call per request...
    for _ in range(20):
        with pytest.raises(ClientAuthenticationError, match="no identity available"):
            cache.get_token()
    assert fake.calls == 1
    # ...then the credential is asked again.
    clock.shift(5.1)
    assert cache.get_token() == fake.tokens[0]
    assert fake.calls == 2


@pytest.mark.parametrize(
    ("result", "message"),
    [
        (lambda: None, "returned None"),
        (lambda: "a-bare-string", "token is of type NoneType"),
        (lambda: AccessTokenInfo(12345, 2_000_000_000), "token is of type int"),  # type: ignore[arg-type]
        (lambda: AccessTokenInfo("", 2_000_000_000), "token is empty"),
        (lambda: AccessTokenInfo("secret-token-value", "2000000000"), "expires_on of type str"),  # type: ignore[arg-type]
        (lambda: AccessTokenInfo("secret-token-value", True), "expires_on of type bool"),  # type: ignore[arg-type]
        (lambda: AccessTokenInfo("secret-token-value", 1000), "expired"),
    ],
)
def test_garbage_from_the_credential_is_a_clear_error(result, message: str) -> None:
    fake = FakeCredential(result=result)
    cache = TokenCache(fake)
    with pytest.raises(InvalidTokenError, match=message) as info:
        cache.get_token()
    assert "FakeCredential.get_token_info()" in str(info.value)
    assert "secret-token-value" not in str(info.value)
    assert isinstance(info.value, TypeError)


def test_async_credential_used_synchronously_is_a_clear_error() -> None:
    from azure_ad_token_auth.testing import AsyncFakeCredential

    with pytest.raises(TypeError, match="async credential"):
        TokenCache(AsyncFakeCredential()).get_token()


def test_repr_and_logs_never_show_the_token(token_log, clock) -> None:
    fake = FakeCredential()
    cache = TokenCache(fake, background_refresh=False)
    token = cache.get_token()
    clock.shift(3500)
    second = cache.get_token()
    text = repr(cache) + str(cache) + repr(cache.status()) + token_log.text
    assert_no_token_in(text, [token, second])
    assert str(cache.status().fingerprint) in repr(cache)
    acquired = [r for r in token_log.records if r.name == "azure_ad_token_auth" and "acquired" in r.getMessage()]
    assert len(acquired) == 2
    assert all(r.levelno == logging.DEBUG for r in acquired)
    assert "expires in" in acquired[0].getMessage()


def test_same_token_returned_again_is_not_asked_for_per_request(clock) -> None:
    # azure-identity credentials answer from their own cache until their own window:
    # the cache must not turn that into a credential call per request.
    issued = AccessToken("same-token", int(time.time()) + 3600)
    fake = FakeCredential(result=lambda: issued)
    cache = TokenCache(fake, background_refresh=False, retry_backoff=30)
    cache.get_token()
    clock.shift(3400)
    for _ in range(50):
        assert cache.get_token() == "same-token"
    assert fake.calls == 2
    clock.shift(31)
    cache.get_token()
    assert fake.calls == 3


def test_invalidate_drops_only_the_current_token_once_per_backoff(clock, fake: FakeCredential) -> None:
    cache = TokenCache(fake, retry_backoff=30)
    first = cache.get_token()
    assert cache.invalidate("some-other-token") is True  # not ours: retry with the current one
    assert cache.get_token() == first
    assert cache.invalidate(first) is True
    second = cache.get_token()
    assert second != first and fake.calls == 2
    assert cache.invalidate(second) is False  # within the backoff: no credential call per 401
    assert cache.get_token() == second
    clock.shift(31)
    assert cache.invalidate(second, claims='{"access_token":{}}') is True
    assert cache.get_token() != second
    assert fake.claims == [None, None, '{"access_token":{}}']


def test_hanging_credential_times_out(fake: FakeCredential) -> None:
    fake.hang()
    cache = TokenCache(fake, timeout=0.2)
    try:
        with pytest.raises(TokenAcquisitionTimeout, match="FakeCredential.get_token_info"):
            cache.get_token()
    finally:
        fake.release.set()


def test_get_header_is_the_bearer_form_of_the_same_token(clock, fake: FakeCredential) -> None:
    cache = TokenCache(fake, background_refresh=False)
    assert cache.get_header() == "Bearer " + cache.get_token()
    clock.shift(3500)
    assert cache.get_header() == "Bearer " + fake.tokens[1]  # renewed through get_header too
    assert fake.calls == 2


def test_jitter_spreads_renewals_inside_the_allowed_window(clock) -> None:
    planned = []
    for _ in range(50):
        cache = TokenCache(FakeCredential(), jitter=60)
        cache.get_token()
        status = cache.status()
        assert status.expires_on is not None and status.refresh_at is not None
        planned.append(status.expires_on - status.refresh_at)
    assert all(300 <= margin <= 360 for margin in planned)
    assert len({round(m) for m in planned}) > 10  # spread, not one instant
    no_jitter = TokenCache(FakeCredential())
    no_jitter.get_token()
    status = no_jitter.status()
    assert status.expires_on is not None and status.refresh_at is not None
    assert status.expires_on - status.refresh_at == 300


@pytest.mark.parametrize(
    "options",
    [
        {"refresh_margin": float("nan")},
        {"timeout": float("inf")},
        {"retry_backoff": 0},
        {"timeout": 0},
        {"jitter": -1},
    ],
)
def test_options_that_would_misbehave_are_refused(fake: FakeCredential, options: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=next(iter(options))):
        TokenCache(fake, **options)  # type: ignore[arg-type]


def test_non_finite_expiry_from_the_credential_is_refused() -> None:
    fake = FakeCredential(result=lambda: AccessTokenInfo("secret-token-value", float("nan")))  # type: ignore[arg-type]
    with pytest.raises(InvalidTokenError, match="expires_on"):
        TokenCache(fake).get_token()


def test_a_cae_challenge_during_a_renewal_gets_a_token_with_its_claims(clock) -> None:
    claims = '{"access_token":{"nbf":{"essential":true,"value":"1900000000"}}}'

    class MarksClaims(FakeCredential):
        def get_token_info(self, *scopes, options=None):  # type: ignore[no-untyped-def]
            info = super().get_token_info(*scopes, options=options)
            marked = "with-claims-" if (options or {}).get("claims") else "plain-"
            return AccessTokenInfo(marked + info.token, info.expires_on)

    fake = MarksClaims(delay=0.3)
    cache = TokenCache(fake)
    first = cache.get_token()
    clock.shift(3400)
    assert cache.get_token() == first  # a background renewal (no claims) is now under way
    wait_until(lambda: fake.calls == 2)
    assert cache.invalidate(first, claims) is True
    renewed = cache.get_token()
    assert renewed.startswith("with-claims-")
    assert fake.claims == [None, None, claims]
    wait_until(lambda: not any(t.name == "azure-ad-token-auth-refresh" and t.is_alive() for t in threading.enumerate()))
    assert fake.calls == 3  # the plain renewal has landed too...
    assert cache.status().refreshes == 2  # ...was not stored, so it is no refresh...
    assert cache.get_token() == renewed  # ...and did not replace the token that carries the claims
