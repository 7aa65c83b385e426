"""`azure_ad_token_auth.testing.reset()`: every live object back to as made, the objects kept.

What a user's suite sees end to end (an app built at import time, the kit's fixtures, any
order, xdist) is tests/project/test_user_suite.py; here, each thing the reset forgets.
"""

from __future__ import annotations

import logging
import threading
import time

import azure.identity
import pytest
from azure.identity import DefaultAzureCredential

from azure_ad_token_auth import AzureADTokenAuth, CachedCredential, TokenAcquisitionTimeout, TokenCache, token_provider
from azure_ad_token_auth.testing import FakeCredential, ManagedIdentityEndpoint, TokenRegistry, reset
from conftest import join_renewals, wait_until

SCOPE = "https://cognitiveservices.azure.com/.default"


def test_a_cache_forgets_its_token_and_counts_and_keeps_the_credential_passed_in(fake: FakeCredential) -> None:
    cache = TokenCache(fake)
    first = cache.get_token()
    reset()
    assert cache.current is None
    assert cache.status() == (None, None, None, 0, 0, 0, 0)
    assert cache.credential is fake
    assert cache.get_token() != first
    assert fake.calls == 2


def test_the_default_credential_the_library_made_is_closed_and_made_again_from_the_environment_then(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    closed = []

    class Counted(DefaultAzureCredential):
        def close(self) -> None:
            closed.append(self)
            super().close()

    monkeypatch.setattr(azure.identity, "DefaultAzureCredential", Counted)
    first_registry, second_registry = TokenRegistry(), TokenRegistry()
    cache = TokenCache()  # made once, as a module would at import time
    with ManagedIdentityEndpoint(registry=first_registry) as first, first.patched_env():
        assert first_registry.check(cache.get_token()) == "valid"
        made = cache.credential
    reset()
    assert closed == [made]
    with ManagedIdentityEndpoint(registry=second_registry) as second, second.patched_env():
        # Not the first endpoint's token, nor its address (stopped): the second's.
        assert second_registry.check(cache.get_token()) == "valid"
        assert second.calls == 1
    assert cache.credential is not made
    assert isinstance(cache.credential, Counted)


def test_a_credential_call_begun_before_the_reset_brings_nothing_into_the_cache() -> None:
    fake = FakeCredential(delay=0.3)
    cache = TokenCache(fake)
    caller = threading.Thread(target=cache.get_token)
    caller.start()
    wait_until(lambda: fake.calls == 1)
    reset()
    caller.join(5)
    join_renewals()
    assert cache.current is None
    cache.get_token()
    assert fake.calls == 2


def test_caches_stay_shared_after_a_reset(fake: FakeCredential) -> None:
    """As in production: an adapter built at import time and a provider built in a test share one cache."""
    auth = AzureADTokenAuth(fake)
    reset()
    provider = token_provider(fake, endpoint="https://example.openai.azure.com")
    assert provider.cache is auth.cache
    provider()
    assert auth.cache.current is not None and fake.calls == 1


def test_keep_fresh_fetches_nothing_after_a_reset_until_the_cache_is_asked_again() -> None:
    fake = FakeCredential()
    cache = TokenCache(fake, keep_fresh=True)
    wait_until(lambda: cache.current is not None)
    reset()
    time.sleep(1.0)  # two of the timer's looks (`_RECHECK`): an empty cache, in an environment not the test's
    assert fake.calls == 1
    fake.lifetime = 4.0  # the next token falls due within seconds
    cache.get_token()
    assert fake.calls == 2
    wait_until(lambda: fake.calls == 3, timeout=10)  # the timer renews it again, with no request


def test_a_redis_provider_watches_again_only_from_the_next_connection(fake: FakeCredential) -> None:
    pytest.importorskip("redis.auth.token")
    from azure_ad_token_auth.redis import credential_provider

    provider = credential_provider(fake, username="app")
    provider.on_next(lambda token: None)  # a client registered
    provider.get_credentials()
    assert provider.is_streaming()
    reset()
    assert not provider.is_streaming()
    time.sleep(0.2)
    assert fake.calls == 1  # the watch renews nothing meanwhile
    provider.get_credentials()
    assert fake.calls == 2 and provider.is_streaming()
    provider.close()


def test_a_claims_call_given_up_on_before_the_reset_does_not_refuse_the_next() -> None:
    fake = FakeCredential()
    fake.hang()
    credential = CachedCredential(fake, timeout=0.2)
    try:
        with pytest.raises(TokenAcquisitionTimeout, match="no answer"):
            credential.get_token(SCOPE, claims='{"access_token":{}}')
        with pytest.raises(TokenAcquisitionTimeout, match="has not returned yet"):
            credential.get_token(SCOPE, claims='{"access_token":{}}')
        reset()
        with pytest.raises(TokenAcquisitionTimeout, match="no answer"):
            credential.get_token(SCOPE, claims='{"access_token":{}}')
        assert fake.calls == 2
    finally:
        fake.release.set()


def test_a_provider_without_an_endpoint_warns_again_after_a_reset(
    fake: FakeCredential, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AZURE_OPENAI_ENDPOINT", raising=False)
    caplog.set_level(logging.WARNING, "azure_ad_token_auth")
    reset()
    token_provider(fake)
    token_provider(fake)
    reset()
    token_provider(fake)
    assert sum("made without endpoint=" in r.getMessage() for r in caplog.records) == 2
