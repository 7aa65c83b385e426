"""`CachedCredential`: an azure-core credential over the shared caches (sync form)."""

from __future__ import annotations

import gc
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import azure.identity
import azure.identity.aio
import pytest
from azure.core.credentials import AccessToken, AccessTokenInfo, SupportsTokenInfo, TokenCredential
from azure.core.exceptions import ClientAuthenticationError

from azure_ad_token_auth import (
    AzureADTokenAuth,
    CachedCredential,
    ConfigurationError,
    ConfigurationTypeError,
    InvalidTokenError,
    TokenAcquisitionTimeout,
    TokenCache,
    UsageError,
    token_provider,
)
from azure_ad_token_auth.testing import AsyncFakeCredential, FakeCredential, ManagedIdentityEndpoint
from conftest import assert_no_token_in, frames_holding, wait_until

SCOPE = "https://storage.azure.com/.default"
VAULT = "https://vault.azure.net/.default"
SECRET = "eyJhbGciOiJub25lIn0.eyJvaWQiOiJ4In0.the-secret-signature"


class Recording(FakeCredential):
    """A `FakeCredential` that also records each call's scopes and options, and its closes."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.asked: list[tuple[tuple[str, ...], dict[str, Any]]] = []
        self.closed = 0

    def get_token_info(self, *scopes: str, options: Any = None) -> AccessTokenInfo:
        self.asked.append((scopes, dict(options or {})))
        return super().get_token_info(*scopes, options=options)

    def close(self) -> None:
        self.closed += 1


def test_it_is_an_azure_core_token_credential_with_token_info(fake: FakeCredential) -> None:
    credential = CachedCredential(fake)
    typed: TokenCredential = credential  # and mypy agrees
    info_typed: SupportsTokenInfo = credential
    assert isinstance(typed, TokenCredential) and isinstance(info_typed, SupportsTokenInfo)
    token = credential.get_token(SCOPE)
    info = credential.get_token_info(SCOPE)
    assert type(token) is AccessToken and type(info) is AccessTokenInfo
    assert token.token == info.token == fake.tokens[0]
    assert isinstance(token.expires_on, int) and isinstance(info.refresh_on, int)
    assert info.token_type == "Bearer"


def test_many_calls_one_credential_call(fake: FakeCredential) -> None:
    credential = CachedCredential(fake)
    tokens = {credential.get_token(SCOPE).token for _ in range(500)}
    tokens |= {credential.get_token_info(SCOPE, options={}).token for _ in range(500)}
    assert tokens == {fake.tokens[0]} and fake.calls == 1


def test_64_threads_on_a_cold_cached_credential_make_one_credential_call() -> None:
    fake = FakeCredential(delay=0.2)
    credential = CachedCredential(fake)
    barrier = threading.Barrier(64)

    def ask(_: int) -> str:
        barrier.wait()
        return credential.get_token(SCOPE).token

    with ThreadPoolExecutor(64) as pool:
        tokens = set(pool.map(ask, range(64)))
    assert fake.calls == 1 and tokens == {fake.tokens[0]}


def test_it_draws_from_the_caches_the_adapters_built_on_the_same_credential(fake: FakeCredential) -> None:
    provider = token_provider(fake)  # the default scope, cognitiveservices
    auth = AzureADTokenAuth(fake, scopes=SCOPE)
    credential = CachedCredential(fake)
    assert credential.get_token("https://cognitiveservices.azure.com/.default").token == provider()
    assert credential.get_token_info(SCOPE).token == auth.cache.get_token()
    assert fake.calls == 2  # one per scope, whoever asked first


def test_one_cache_per_scopes_tenant_and_cae() -> None:
    fake = Recording()
    credential = CachedCredential(fake)
    first = credential.get_token(VAULT).token
    assert (
        credential.get_token_info(VAULT, options={"claims": ""}).token == first
    )  # empty claims: none (as azure-identity)
    other_tenant = credential.get_token(VAULT, tenant_id="tenant-b").token
    cae = credential.get_token_info(VAULT, options={"enable_cae": True}).token
    both = credential.get_token_info(VAULT, options={"enable_cae": True, "tenant_id": "tenant-b"}).token
    assert credential.get_token(VAULT, tenant_id="tenant-b").token == other_tenant
    assert credential.get_token(VAULT, enable_cae=True).token == cae
    assert len({first, other_tenant, cae, both}) == 4 and fake.calls == 4
    assert [options for _, options in fake.asked] == [
        {},
        {"tenant_id": "tenant-b"},
        {"enable_cae": True},
        {"enable_cae": True, "tenant_id": "tenant-b"},
    ]


def test_tenant_and_cae_given_when_made_apply_to_every_call_unless_a_call_names_a_tenant() -> None:
    fake = Recording()
    credential = CachedCredential(fake, tenant_id="tenant-a", enable_cae=True)
    credential.get_token(VAULT)
    credential.get_token(VAULT, tenant_id="tenant-b")
    assert [options for _, options in fake.asked] == [
        {"enable_cae": True, "tenant_id": "tenant-a"},
        {"enable_cae": True, "tenant_id": "tenant-b"},
    ]


def live_caches(which: Callable[[TokenCache], bool]) -> int:
    """How many `TokenCache` objects alive are `which`."""
    gc.collect()
    # `type(o)`, not isinstance: openai's lazy module proxies (numpy, pandas) raise when asked their class.
    return sum(type(o) is TokenCache and which(o) for o in gc.get_objects())


def test_caches_of_tenants_a_service_chose_are_bounded_and_freed_on_close() -> None:
    # azure-core's challenge policies (Key Vault, Storage) pass the tenant of the service's
    # WWW-Authenticate: the service decides how many tenants a process meets.
    def vault(cache: TokenCache) -> bool:
        return cache.scopes == (VAULT,)

    with ManagedIdentityEndpoint() as identity, identity.patched_env():
        pinned = AzureADTokenAuth(scopes=VAULT, tenant_id="tenant-00")  # shared with the calls naming it
        credential = CachedCredential()
        for i in range(40):
            credential.get_token(VAULT, tenant_id=f"tenant-{i:02d}")
        assert live_caches(vault) == 16 + 1  # the 16 used last, and the adapter's
        assert credential.get_token(VAULT, tenant_id="tenant-39").token  # held: no new request
        assert identity.calls == 40
        credential.close()
        del credential
        assert live_caches(vault) == 1  # the adapter's, pinned for the process as ever
        assert CachedCredential().get_token(VAULT, tenant_id="tenant-00").token == pinned.cache.get_token()
        assert identity.calls == 40


def test_caches_of_tenants_a_call_named_on_a_credential_passed_in_are_bounded_too(fake: FakeCredential) -> None:
    credential = CachedCredential(fake)
    credential.get_token(VAULT)  # the tenant it was made with (none): its cache is kept
    for i in range(40):
        credential.get_token(VAULT, tenant_id=f"tenant-{i:02d}")
    assert live_caches(lambda cache: cache.credential is fake) == 1 + 16 and repr(credential).endswith(": 17 caches>")
    credential.get_token(VAULT, tenant_id="tenant-30")
    assert fake.calls == 41  # among the 16 used last: answered from its cache
    credential.close()
    assert live_caches(lambda cache: cache.credential is fake) == 0


def test_no_scope_is_a_value_error_as_azure_identity_raises(fake: FakeCredential) -> None:
    credential = CachedCredential(fake)
    with pytest.raises(ValueError, match='"get_token" requires at least one scope'):
        credential.get_token()
    with pytest.raises(ValueError, match='"get_token_info" requires at least one scope'):
        credential.get_token_info()
    with pytest.raises(ConfigurationError, match="https://vault.azure.net/.default"):
        credential.get_token("https://vault.azure.net")  # a resource, not a scope
    assert fake.calls == 0


def test_refresh_on_is_when_the_cache_renews_and_renewal_never_makes_a_caller_wait(clock) -> None:
    fake = FakeCredential(lifetime=3600)
    credential = CachedCredential(fake)
    info = credential.get_token_info(SCOPE)
    assert info.refresh_on == int(time.time()) + 3600 - 300  # the cache's margin, not the credential's silence
    assert info.expires_on == int(time.time()) + 3600
    clock.shift(3400)  # 200 s left: due
    fake.hang()
    started = time.monotonic()
    due = credential.get_token_info(SCOPE)
    assert time.monotonic() - started < 0.5  # the held token, at once
    assert due.token == fake.tokens[0] and due.refresh_on is not None and due.refresh_on <= time.time()
    wait_until(lambda: fake.calls == 2)  # renewing in the background
    fake.release.set()
    wait_until(lambda: credential.get_token(SCOPE).token != fake.tokens[0])
    assert credential.get_token_info(SCOPE).refresh_on == int(time.time()) + 3600 - 300


def test_the_credentials_refresh_on_comes_through_when_it_is_earlier(clock) -> None:
    # 30000 s: past the first quarter of the token's life (earlier, the cache takes it for a mistake).
    credential = CachedCredential(FakeCredential(lifetime=86400, refresh_in=30000))
    assert credential.get_token_info(SCOPE).refresh_on == int(time.time()) + 30000


def test_claims_go_to_the_credential_and_the_refused_token_is_dropped(clock) -> None:
    fake = Recording()
    credential = CachedCredential(fake)
    held = credential.get_token(SCOPE).token
    answer = credential.get_token_info(SCOPE, options={"claims": '{"access_token":{"nbf":{"essential":true}}}'})
    assert answer.token != held and fake.asked[-1] == (
        (SCOPE,),
        {"claims": '{"access_token":{"nbf":{"essential":true}}}'},  # as asked: enable_cae is the policy's choice
    )
    after = credential.get_token(SCOPE).token
    assert after not in (held, answer.token)  # neither the refused token nor the challenge's
    assert fake.calls == 3 and fake.claims == [None, '{"access_token":{"nbf":{"essential":true}}}', None]
    assert credential.get_token(SCOPE).token == after and fake.calls == 3


def test_a_refused_claims_challenge_reaches_its_caller_only_and_is_not_held(clock) -> None:
    fake = FakeCredential()
    credential = CachedCredential(fake)
    credential.get_token(SCOPE)
    fake.fail, fake.fail_times = ClientAuthenticationError("run az login --claims-challenge"), 1
    with pytest.raises(ClientAuthenticationError, match="claims-challenge"):
        credential.get_token(SCOPE, claims='{"access_token":{}}')
    # Not held: the next plain call asks the credential (the refused token was dropped) and succeeds.
    assert credential.get_token(SCOPE).token == fake.tokens[-1] and fake.calls == 3


def test_a_claims_challenge_with_the_default_credential_goes_to_the_one_the_cache_made(monkeypatch) -> None:
    fake = Recording()
    monkeypatch.setattr(azure.identity, "DefaultAzureCredential", lambda: fake)
    credential = CachedCredential()
    answer = credential.get_token(SCOPE, claims='{"a":1}')  # first use: the cache makes its credential, asks nothing
    assert fake.claims == ['{"a":1}'] and answer.token == fake.tokens[0]
    assert credential.get_token(SCOPE).token == fake.tokens[1] and fake.claims == ['{"a":1}', None]  # the same one


def test_a_claims_challenge_first_on_a_fresh_default_credential_is_one_identity_request(tmp_path) -> None:
    # azure-core's policy answering a CAE challenge on a client's very first request.
    store = tmp_path / "store"
    with ManagedIdentityEndpoint() as identity, identity.patched_env():
        credential = CachedCredential(shared_cache=store)
        credential.get_token(SCOPE, claims='{"access_token":{"nbf":{"essential":true,"value":"1"}}}')
        assert identity.calls == 1  # the claims call only: no token fetched just to create the credential
        credential.get_token(SCOPE)  # the shared store in use now
    assert os.listdir(store) and not [name for name in os.listdir(store) if name.endswith(".rejected")]


def test_a_hung_credential_fails_a_claims_call_after_timeout_and_never_piles_up_threads() -> None:
    fake = FakeCredential()
    credential = CachedCredential(fake, timeout=0.3)
    held = credential.get_token(SCOPE).token
    fake.hang()
    safety = threading.Timer(5, fake.release.set)  # a caller that never gives up fails the test, not hangs it
    safety.start()
    try:
        started = time.monotonic()
        with pytest.raises(TokenAcquisitionTimeout, match=r"FakeCredential\.get_token_info\(\) to a claims challenge"):
            credential.get_token(SCOPE, claims='{"c":1}')
        assert 0.3 <= time.monotonic() - started < 2
        started = time.monotonic()
        with pytest.raises(TokenAcquisitionTimeout, match="has not returned yet; not starting another"):
            credential.get_token(SCOPE, claims='{"c":2}')  # the first still hangs: refused at once, no thread more
        assert time.monotonic() - started < 0.2 and fake.claims == [None, '{"c":1}']
    finally:
        safety.cancel()
        fake.release.set()
    wait_until(lambda: len(fake.tokens) == 2)  # the abandoned call returned, its answer dropped
    answer = credential.get_token(SCOPE, claims='{"c":3}')
    assert answer.token == fake.tokens[2] and held not in (answer.token, credential.get_token(SCOPE).token)


def test_claims_answers_are_checked_like_every_token() -> None:
    fake = FakeCredential()
    credential = CachedCredential(fake)
    fake.result = lambda: AccessTokenInfo("bad token\n", int(time.time()) + 3600)
    with pytest.raises(TypeError, match=r"^FakeCredential\.get_token_info\(\) returned a token containing a line"):
        credential.get_token(SCOPE, claims="{}")


def test_a_refused_claims_answer_leaves_no_token_in_any_frames_locals() -> None:
    fake = FakeCredential(result=lambda: AccessTokenInfo(SECRET, int(time.time() * 1000) + 3_600_000))
    with pytest.raises(InvalidTokenError, match="milliseconds") as raised:
        CachedCredential(fake).get_token(SCOPE, claims='{"access_token":{}}')
    assert fake.claims == ['{"access_token":{}}'] and frames_holding(raised.value, SECRET) == []


def test_an_async_credential_is_refused_naming_the_sync_one() -> None:
    with pytest.raises(TypeError, match="AsyncFakeCredential is async"):
        CachedCredential(AsyncFakeCredential())
    pytest.importorskip("aiohttp")  # azure.identity.aio's credentials are made with its transport
    aio = azure.identity.aio.ManagedIdentityCredential()
    with pytest.raises(ConfigurationTypeError, match=r"use azure\.identity\.ManagedIdentityCredential here"):
        CachedCredential(aio)


@pytest.mark.parametrize(
    ("credential", "options", "error", "message"),
    [
        (FakeCredential, {}, ConfigurationTypeError, r"pass an instance: FakeCredential\(\)"),
        ("https://vault.azure.net/.default", {}, ConfigurationTypeError, "credential is a str"),
        (TokenCache(FakeCredential()), {}, ConfigurationTypeError, "not a TokenCache"),
        (FakeCredential(), {"refresh_margn": 60}, UsageError, "did you mean 'refresh_margin'"),
        (FakeCredential(), {"timeout": -1}, ConfigurationError, "timeout must be"),
        (FakeCredential(), {"enable_cae": "yes"}, UsageError, "enable_cae must be True or False"),
    ],
)
def test_misuse_is_refused_when_made(credential: Any, options: dict[str, Any], error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        CachedCredential(credential, **options)


def test_a_cached_credential_passed_on_means_the_same_caches(fake: FakeCredential) -> None:
    inner = CachedCredential(fake, refresh_margin=600)
    outer = CachedCredential(inner)
    assert outer.credential is fake and outer.options == {"refresh_margin": 600}
    assert outer.get_token(SCOPE).token == inner.get_token(SCOPE).token and fake.calls == 1
    with pytest.raises(UsageError, match="give them to the one you pass"):
        CachedCredential(inner, timeout=5)


def test_adapters_and_providers_given_a_cached_credential_draw_from_its_caches(clock) -> None:
    fake = FakeCredential()
    cached = CachedCredential(fake, refresh_margin=600)
    auth = AzureADTokenAuth(cached, scopes=SCOPE)
    provider = token_provider(cached, SCOPE)
    assert auth.cache.credential is fake  # the credential itself: no second cache stacked on the first
    assert auth.cache.get_token() == provider() == cached.get_token(SCOPE).token and fake.calls == 1
    clock.shift(3600 - 599)  # due at the CachedCredential's margin: one renewal, for all of them
    cached.get_token(SCOPE)
    wait_until(lambda: len(fake.tokens) == 2 and cached.get_token(SCOPE).token == fake.tokens[1])
    assert auth.cache.get_token() == provider() == fake.tokens[1] and fake.calls == 2
    with pytest.raises(UsageError, match=r"AzureADTokenAuth\(\) got options \['timeout'\] with a CachedCredential"):
        AzureADTokenAuth(cached, timeout=5)


def test_close_and_with_let_go_of_the_caches_and_never_close_the_callers_credential() -> None:
    fake = Recording()
    with CachedCredential(fake) as credential:
        first = credential.get_token(SCOPE).token
        assert CachedCredential(fake).get_token(SCOPE).token == first  # shared while one of them holds it
    assert fake.closed == 0
    del credential
    gc.collect()
    assert CachedCredential(fake).get_token(SCOPE).token != first  # let go: nothing kept it
    assert fake.calls == 2


def test_closed_it_still_works_as_azure_identitys_sync_credentials_do(fake: FakeCredential) -> None:
    credential = CachedCredential(fake)
    credential.close()
    assert credential.get_token(SCOPE).token == fake.tokens[0]


def test_repr_and_logs_never_show_the_token(token_log, fake: FakeCredential) -> None:
    credential = CachedCredential(fake)
    credential.get_token(SCOPE, claims="{}")
    credential.get_token(SCOPE)
    assert repr(credential) == "<CachedCredential over FakeCredential: 1 cache>"
    assert repr(CachedCredential()) == "<CachedCredential over DefaultAzureCredential (shared): 0 caches>"
    assert_no_token_in(repr(credential) + token_log.text, fake.tokens)


def test_azure_identitys_get_bearer_token_provider_on_it_makes_one_call_from_many_threads() -> None:
    fake = FakeCredential(delay=0.2)
    provider = azure.identity.get_bearer_token_provider(CachedCredential(fake), SCOPE)
    barrier = threading.Barrier(32)

    def ask(_: int) -> str:
        barrier.wait()
        return provider()

    with ThreadPoolExecutor(32) as pool:
        assert set(pool.map(ask, range(32))) == {fake.tokens[0]}
    assert fake.calls == 1


def test_claims_reach_a_get_token_only_credential_with_the_tenant_and_cae_asked_for() -> None:
    asked: list[dict[str, Any]] = []

    class GetTokenOnly(FakeCredential):
        def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
            asked.append(kwargs)
            return super().get_token(*scopes, **kwargs)

    fake = GetTokenOnly(token_info=False)
    credential = CachedCredential(fake, tenant_id="tenant-a")
    credential.get_token(SCOPE, enable_cae=True)
    credential.get_token(SCOPE, claims='{"c":1}', enable_cae=True)
    assert asked == [
        {"enable_cae": True, "tenant_id": "tenant-a"},
        {"claims": '{"c":1}', "tenant_id": "tenant-a", "enable_cae": True},
    ]
