"""`azure_ad_token_auth.redis.credential_provider` with real redis-py clients and a real Redis server.

The server is the testing kit's `AzureRedisStandIn` (Azure's token check in front of a real
server); tokens come from azure-identity's real `ManagedIdentityCredential`, asking the
loopback managed-identity endpoint, whose `calls` count the credential calls.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import threading
import time
import traceback
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from azure_ad_token_auth import (
    ConfigurationError,
    ConfigurationTypeError,
    InvalidTokenError,
    TokenCache,
    UsageError,
    token_provider,
)
from azure_ad_token_auth.testing import (
    AzureRedisStandIn,
    FakeCredential,
    ManagedIdentityEndpoint,
    TokenRegistry,
    fingerprint,
)
from conftest import assert_no_token_in, wait_until

redis = pytest.importorskip("redis")
redis_asyncio = pytest.importorskip("redis.asyncio")
from azure_ad_token_auth.redis import RedisCredentialProvider, credential_provider  # noqa: E402

REDIS_SCOPE = "https://redis.azure.com/.default"
LIFETIME = 3  # seconds (the registry truncates expiry to a whole second: 2-3 s); renewal at half-life


@pytest.fixture
def identity(azure_managed_identity: ManagedIdentityEndpoint) -> Iterator[ManagedIdentityEndpoint]:
    azure_managed_identity.set_lifetime(LIFETIME)
    yield azure_managed_identity
    gc.collect()


@pytest.fixture
def made(identity: ManagedIdentityEndpoint) -> Iterator[list[RedisCredentialProvider]]:
    """The providers a test made on the identity endpoint: closed after it, pass or fail, while the
    endpoint and the environment pointing azure-identity at it still exist."""
    providers: list[RedisCredentialProvider] = []
    yield providers
    for provider in providers:
        provider.close()


def _provider(made: list[RedisCredentialProvider], credential: object, **options: Any) -> RedisCredentialProvider:
    provider = credential_provider(credential, **options)  # type: ignore[arg-type]
    made.append(provider)
    return provider


def _credential():  # azure-identity's real one, asking the loopback endpoint
    from azure.identity import ManagedIdentityCredential

    return ManagedIdentityCredential()


def _sleep_past(registry: TokenRegistry, token: str, extra: float = 0.3) -> None:
    expires_on = registry.expires_on(token)
    assert expires_on is not None
    time.sleep(max(0.0, expires_on - time.time() + extra))


def _oid(registry: TokenRegistry, token: str) -> str:
    claims = registry.claims(token)
    assert claims is not None
    return str(claims["oid"])


def test_a_new_connection_authenticates_as_the_tokens_oid_with_the_redis_scope(
    identity: ManagedIdentityEndpoint, azure_redis: AzureRedisStandIn, made: list[RedisCredentialProvider]
) -> None:
    provider = _provider(made, _credential())
    client = redis.Redis(**azure_redis.client_kwargs(), credential_provider=provider)
    assert client.set("greeting", "hello") is True and client.get("greeting") == b"hello"
    user, token = provider.get_credentials()
    assert user == _oid(azure_redis.registry, token)
    assert [(a.user, a.outcome) for a in azure_redis.auths] == [(user, "accepted")]
    assert identity.last_resource == "https://redis.azure.com" and identity.calls == 1
    assert provider.cache.scopes == (REDIS_SCOPE,)
    client.close()


def test_username_replaces_the_oid_on_the_first_auth_and_on_every_renewal(
    identity: ManagedIdentityEndpoint, azure_redis: AzureRedisStandIn, made: list[RedisCredentialProvider]
) -> None:
    provider = _provider(made, _credential(), username="cache-user")
    renewed: list[object] = []
    provider.on_next(renewed.append)
    assert provider.get_credentials()[0] == "cache-user"
    wait_until(lambda: bool(renewed), timeout=LIFETIME + 2)
    # What redis-py sends with AUTH when it re-authenticates:
    assert renewed[0].try_get("oid") == "cache-user"  # type: ignore[attr-defined]
    # Azure (and the stand-in) check the name against the token's oid: this one is refused, by name.
    no_retries = redis.retry.Retry(redis.backoff.NoBackoff(), 0)
    with pytest.raises(redis.exceptions.AuthenticationError):
        redis.Redis(**azure_redis.client_kwargs(), credential_provider=provider, retry=no_retries).ping()
    assert azure_redis.auths[-1].user == "cache-user"


def test_a_token_without_an_oid_is_a_clear_error_and_nothing_is_sent(azure_redis: AzureRedisStandIn) -> None:
    fake = FakeCredential()  # opaque tokens: no claims to read
    client = redis.Redis(**azure_redis.client_kwargs(), credential_provider=credential_provider(fake))
    with pytest.raises(InvalidTokenError, match="no 'oid' claim.*pass username=") as info:
        client.ping()
    assert fake.tokens[0] not in str(info.value)
    assert azure_redis.auths == []


def _rendered_with_locals(error: BaseException) -> str:
    """The traceback as error trackers and `capture_locals` render it: every frame's locals by repr."""
    return "".join(traceback.TracebackException.from_exception(error, capture_locals=True).format())


def test_no_token_in_the_locals_of_a_traceback_ours_or_redis_pys(azure_redis: AzureRedisStandIn) -> None:
    no_oid = FakeCredential()  # opaque tokens: our InvalidTokenError, raised where the token was a local
    with pytest.raises(InvalidTokenError) as ours:
        credential_provider(no_oid).get_credentials()
    assert_no_token_in(_rendered_with_locals(ours.value), no_oid.tokens)
    # A token Azure refuses (the user name is not its oid): redis-py's AuthenticationError, raised in
    # its own frames, which hold what the provider handed it (`auth_args`): the token's fingerprint shows.
    refused = FakeCredential(registry=azure_redis.registry, lifetime=60)
    client = redis.Redis(
        **azure_redis.client_kwargs(),
        credential_provider=credential_provider(refused, username="not-the-oid"),
        retry=redis.retry.Retry(redis.backoff.NoBackoff(), 0),
    )
    with pytest.raises(redis.exceptions.AuthenticationError) as theirs:
        client.ping()
    rendered = _rendered_with_locals(theirs.value)
    assert "auth_args" in rendered  # redis-py's frame, with the credentials in its locals...
    assert fingerprint(refused.tokens[0]) in rendered  # ...shown by fingerprint
    assert_no_token_in(rendered, refused.tokens)
    assert [a.outcome for a in azure_redis.auths] == ["user is not the token's oid"]
    client.close()


def test_a_sync_client_with_an_async_credential_is_a_clear_error_and_nothing_is_sent(
    azure_redis: AzureRedisStandIn,
) -> None:
    from azure_ad_token_auth.testing import AsyncFakeCredential

    fake = AsyncFakeCredential()
    client = redis.Redis(**azure_redis.client_kwargs(), credential_provider=credential_provider(fake))
    with pytest.raises(UsageError, match="async credential .*redis.asyncio"):
        client.ping()
    assert fake.calls == 0 and azure_redis.auths == []


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: credential_provider(FakeCredential(), refresh_margn=60), UsageError, "did you mean 'refresh_margin'"),  # type: ignore[call-arg]
        (lambda: credential_provider(FakeCredential(), username=42), UsageError, "username must be a string"),  # type: ignore[arg-type]
        (lambda: credential_provider(FakeCredential(), username="a b"), ConfigurationError, "without whitespace"),
        (lambda: credential_provider(FakeCredential(), host=b"x"), UsageError, "host must be a string"),  # type: ignore[arg-type]
        (
            lambda: credential_provider(FakeCredential(), "https://cognitiveservices.azure.com/.default"),
            ConfigurationError,
            "is for openai, not Redis",
        ),
        (lambda: credential_provider(FakeCredential(), "https://redis.azure.com"), ConfigurationError, "/.default"),
        (lambda: credential_provider(FakeCredential, username="x"), ConfigurationTypeError, "pass an instance"),  # type: ignore[arg-type]
        (lambda: credential_provider(TokenCache(FakeCredential()), timeout=5), UsageError, "options"),
        (lambda: credential_provider(FakeCredential(), timeout=-1), ConfigurationError, "timeout"),
    ],
)
def test_misuse_is_refused_when_the_provider_is_built(call, error, message: str) -> None:
    with pytest.raises(error, match=message):
        call()


def test_the_host_picks_its_clouds_scope_and_a_shared_cache_must_hold_it() -> None:
    fake = FakeCredential()
    assert credential_provider(fake, host="c.redis.cache.windows.net").cache.scopes == (REDIS_SCOPE,)
    assert credential_provider(fake, host="c.eastus.redis.azure.net").cache.scopes == (REDIS_SCOPE,)
    app_id = "acca5fbb-b7e4-4009-81f1-37e38fd66d78/.default"
    assert credential_provider(fake, app_id).cache.scopes == (app_id,)
    shared = TokenCache(fake, app_id)
    assert credential_provider(shared, app_id).cache is shared
    with pytest.raises(ConfigurationError, match="differ from the shared TokenCache"):
        credential_provider(shared)  # not the scope asked for: said, so the cache is shared knowingly


def test_a_sovereign_cloud_host_no_rule_knows_is_refused_never_given_the_public_scope() -> None:
    fake = FakeCredential()
    hosts = ("c.redis.cache.usgovcloudapi.net", "c.usgovvirginia.redis.azure.us", "c.eastchina.redis.azure.cn")
    # With the port a connection string carries, or a stray space: the same host, the same refusal.
    for host in (*hosts, "c.redis.cache.usgovcloudapi.net:6380", " c.redis.cache.usgovcloudapi.net "):
        with pytest.raises(ConfigurationError, match=f"host '{host}' is in Azure (Government|China).*pass scopes="):
            credential_provider(fake, host=host)
    assert credential_provider(fake, host="c.redis.cache.chinacloudapi.cn").cache.scopes == (REDIS_SCOPE,)  # documented
    assert credential_provider(fake, host="redis.internal.example").cache.scopes == (REDIS_SCOPE,)  # no cloud's domain
    given = "https://redis.azure.us/.default"  # whatever the cache's documentation gives: taken as said
    assert credential_provider(fake, given, host="c.redis.cache.usgovcloudapi.net").cache.scopes == (given,)
    assert fake.calls == 0


@pytest.mark.parametrize(
    ("scope", "service"),
    [
        ("https://cognitiveservices.azure.com//.default", "openai"),
        ("HTTPS://COGNITIVESERVICES.AZURE.COM/.default", "openai"),
        ("https://cognitiveservices.azure.com/.default ", "openai"),
        ("https://database.windows.net//.default", "sql"),  # the SQL scope as its docs spell it
    ],
)
def test_another_services_scope_is_refused_however_it_is_spelled(scope: str, service: str) -> None:
    # Entra ID compares resources without case, slashes before `/.default` or surrounding space.
    fake = FakeCredential()
    with pytest.raises(ConfigurationError, match=f"is for {service}, not Redis"):
        credential_provider(fake, scope)
    assert credential_provider(fake, "https://redis.azure.com//.default").cache.scopes  # its own, however spelled
    assert fake.calls == 0


def test_a_shared_cache_of_another_service_is_refused_when_the_provider_is_built(
    azure_redis: AzureRedisStandIn,
) -> None:
    openai = FakeCredential(registry=azure_redis.registry)
    for scope in ("https://cognitiveservices.azure.com/.default", "https://ossrdbms-aad.database.windows.net/.default"):
        for host in (None, "c.redis.cache.windows.net"):
            with pytest.raises(ConfigurationError, match=f"differ from the shared TokenCache's \\['{scope}'\\]"):
                credential_provider(TokenCache(openai, scope), host=host)
    assert openai.calls == 0
    assert azure_redis.auths == []  # nothing sent: before, every AUTH went out with the wrong audience
    client = redis.Redis(
        **azure_redis.client_kwargs(), credential_provider=credential_provider(TokenCache(openai, REDIS_SCOPE))
    )
    assert client.ping() is True  # a cache of Redis's own scope serves
    client.close()


def test_providers_and_adapters_on_one_credential_share_one_cache(azure_token_registry: TokenRegistry) -> None:
    fake = FakeCredential(registry=azure_token_registry)
    first, second = credential_provider(fake), credential_provider(fake)
    assert first.cache is second.cache is token_provider(fake, REDIS_SCOPE).cache  # type: ignore[attr-defined]
    threads = [threading.Thread(target=first.get_credentials) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert second.get_credentials()[1] == fake.tokens[0]
    assert fake.calls == 1  # single flight: 16 threads and a second provider, one call


def test_the_shared_cache_option_shares_tokens_through_the_store(
    azure_token_registry: TokenRegistry, tmp_path: Path
) -> None:
    writer, reader = FakeCredential(registry=azure_token_registry), FakeCredential(registry=azure_token_registry)
    options = {"shared_cache": str(tmp_path / "store"), "shared_cache_identity": "redis-app"}
    token = credential_provider(writer, **options).get_credentials()[1]  # type: ignore[arg-type]
    assert credential_provider(reader, **options).get_credentials()[1] == token  # type: ignore[arg-type]
    assert (writer.calls, reader.calls) == (1, 0)


async def test_an_async_client_with_a_slow_sync_credential_never_stalls_its_loop(
    identity: ManagedIdentityEndpoint, azure_redis: AzureRedisStandIn, made: list[RedisCredentialProvider]
) -> None:
    identity.set_delay(0.4)  # every token request takes 0.4 s
    ticks = 0
    during: list[int] = []

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.005)

    class Counting:
        def __init__(self) -> None:
            self.inner = _credential()

        def get_token_info(self, *scopes, options=None):  # type: ignore[no-untyped-def]
            before = ticks
            try:
                return self.inner.get_token_info(*scopes, options=options)
            finally:
                during.append(ticks - before)  # the loop's turns while this call ran

    task = asyncio.create_task(ticker())
    client = redis_asyncio.Redis(**azure_redis.client_kwargs(), credential_provider=_provider(made, Counting()))
    assert await client.ping() is True
    for _ in range(200):  # until a renewal, in the background, has run too
        if len(during) >= 2:
            break
        await asyncio.sleep(0.05)
    task.cancel()
    await client.aclose()
    assert len(during) >= 2 and identity.calls == len(during)
    assert min(during) > 0  # the loop kept turning through every credential call (counted, not timed)


class AsyncRegistryCredential:
    """An async credential issuing the registry's Redis tokens (azure-identity's async managed-identity
    credential keeps a token it got less than 30 s ago, so it cannot renew 3 s tokens); counts its calls
    and the loop each ran on."""

    def __init__(self, registry: TokenRegistry) -> None:
        self.registry = registry
        self.loops: list[asyncio.AbstractEventLoop] = []

    async def get_token_info(self, *scopes: str, options: object = None) -> Any:
        from azure.core.credentials import AccessTokenInfo

        self.loops.append(asyncio.get_running_loop())
        await asyncio.sleep(0.05)
        token, expires_on = self.registry.issue(LIFETIME, audience="https://redis.azure.com")
        return AccessTokenInfo(token, expires_on)


async def test_an_async_credential_is_renewed_on_the_clients_own_loop(azure_redis: AzureRedisStandIn) -> None:
    credential = AsyncRegistryCredential(azure_redis.registry)
    provider = credential_provider(credential)  # type: ignore[arg-type]
    client = redis_asyncio.Redis(**azure_redis.client_kwargs(), credential_provider=provider)
    until = time.monotonic() + LIFETIME + 1
    while time.monotonic() < until:  # one connection, kept: only the renewals bring new tokens
        assert await client.ping() is True
        await asyncio.sleep(0.05)
    await client.aclose()
    provider.close()
    assert len(credential.loops) >= 3 and set(credential.loops) == {asyncio.get_running_loop()}
    assert azure_redis.closed_for_expiry == 0 and azure_redis.connections == 1


def test_an_async_credential_renews_on_the_running_loop_after_a_warm_up_on_a_loop_left_open(
    azure_redis: AzureRedisStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    """`loop.run_until_complete(warm_up())` then `asyncio.run(main())`: the first loop stays open but
    never runs again; renewals scheduled there would wait for good and the server close the connection."""
    credential = AsyncRegistryCredential(azure_redis.registry)
    provider = credential_provider(credential)  # type: ignore[arg-type]

    warmed: list[object] = []  # the warm-up's client stays registered while the app starts: a renewal falls due

    async def warm_up() -> None:
        client = redis_asyncio.Redis(**azure_redis.client_kwargs(), credential_provider=provider)
        assert await client.ping() is True
        await client.aclose()
        warmed.append(client)

    async def main() -> asyncio.AbstractEventLoop:
        client = redis_asyncio.Redis(**azure_redis.client_kwargs(), credential_provider=provider)
        until = time.monotonic() + 2 * LIFETIME + 1
        while time.monotonic() < until:  # one connection, kept: only the renewals bring new tokens
            assert await client.ping() is True
            await asyncio.sleep(0.05)
        await client.aclose()
        return asyncio.get_running_loop()

    first = asyncio.new_event_loop()
    try:
        with caplog.at_level(logging.DEBUG, logger="azure_ad_token_auth"):
            first.run_until_complete(warm_up())  # left open, as run_until_complete users leave it
            wait_until(lambda: "is not running" in caplog.text, LIFETIME)  # due, with no loop running
            second = asyncio.run(main())
    finally:
        provider.close()
        first.close()
    stopped = [r for r in caplog.records if "is not running" in r.getMessage()]
    assert [r.levelno for r in stopped] == [logging.WARNING]  # once, however long it polls
    assert credential.loops[0] is first and len(credential.loops) >= 4
    assert set(credential.loops[1:]) == {second}  # every renewal on the loop that runs
    assert azure_redis.closed_for_expiry == 0


def test_a_pool_shared_by_clients_without_the_provider_is_one_warning_naming_the_fix(
    azure_redis: AzureRedisStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    """django-redis, rq, kombu style: a pool built with the provider, clients built on the pool alone.
    redis-py registers re-authentication with the client, so nothing renews these connections."""
    credential = FakeCredential(registry=azure_redis.registry, lifetime=60)
    unregistered, registered = credential_provider(credential), credential_provider(credential)
    with caplog.at_level(logging.WARNING, logger="azure_ad_token_auth"):
        for provider, with_provider in ((unregistered, False), (registered, True)):
            pool = redis.ConnectionPool(**azure_redis.client_kwargs(), credential_provider=provider, max_connections=12)
            clients = [
                redis.Redis(connection_pool=pool, **({"credential_provider": provider} if with_provider else {}))
                for _ in range(3)
            ]
            answers: list[int] = []
            threads = [threading.Thread(target=lambda c=c: answers.append(c.incr("n"))) for c in clients * 4]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert len(answers) == 12
            assert provider.is_streaming() is with_provider  # renewals watched only for registered clients
            pool.disconnect()
    warned = [r for r in caplog.records if "no client built on this provider is registered" in r.getMessage()]
    assert len(warned) == 1 and "credential_provider=provider" in warned[0].getMessage()
    assert all(a.outcome == "accepted" for a in azure_redis.auths) and len(azure_redis.auths) >= 2
    assert_no_token_in(caplog.text, credential.tokens)
    unregistered.close()
    registered.close()


def test_a_sync_client_inside_a_running_event_loop_does_not_deadlock(
    identity: ManagedIdentityEndpoint, azure_redis: AzureRedisStandIn, made: list[RedisCredentialProvider]
) -> None:
    """redis-entraid hangs here (redis/redis-py-entraid#55): its renewal start waits on the caller's loop."""

    async def main() -> bytes:
        client = redis.Redis(**azure_redis.client_kwargs(), credential_provider=_provider(made, _credential()))
        client.set("k", "v")
        return client.get("k")

    outcome: list[object] = []
    thread = threading.Thread(target=lambda: outcome.append(asyncio.run(main())), daemon=True)
    thread.start()
    thread.join(30)
    assert outcome == [b"v"]


class Flaky:
    """azure-identity's real credential, made to fail on demand (the identity endpoint down)."""

    def __init__(self) -> None:
        self.inner = _credential()
        self.down = threading.Event()

    def get_token_info(self, *scopes, options=None):  # type: ignore[no-untyped-def]
        from azure.core.exceptions import ClientAuthenticationError

        if self.down.is_set():
            raise ClientAuthenticationError("the identity endpoint is down")
        return self.inner.get_token_info(*scopes, options=options)


def test_a_failed_renewal_keeps_the_token_until_it_expires_then_fails_clearly_and_recovers(
    identity: ManagedIdentityEndpoint,
    azure_redis: AzureRedisStandIn,
    caplog: pytest.LogCaptureFixture,
    made: list[RedisCredentialProvider],
) -> None:
    from azure.core.exceptions import ClientAuthenticationError

    credential = Flaky()
    provider = _provider(made, credential, retry_backoff=0.5)
    errors: list[BaseException] = []
    provider.on_error(errors.append)
    client = redis.Redis(**azure_redis.client_kwargs(), credential_provider=provider)
    assert client.ping() is True
    first = provider.get_credentials()[1]
    credential.down.set()
    with caplog.at_level(logging.WARNING, logger="azure_ad_token_auth"):
        expires_on = azure_redis.registry.expires_on(first)
        assert expires_on is not None
        while time.time() < expires_on - 0.3:  # the held token keeps serving until it expires
            assert client.ping() is True
            time.sleep(0.1)
        _sleep_past(azure_redis.registry, first)
        with pytest.raises(ClientAuthenticationError, match="endpoint is down"):  # the credential's own error
            client.ping()
        wait_until(lambda: len(errors) == 1, timeout=6)
    assert isinstance(errors[0], ClientAuthenticationError)
    assert azure_redis.closed_for_expiry == 1  # the server closed the connection at expiry
    assert [r.levelname for r in caplog.records if "expired and could not be renewed" in r.getMessage()] == ["ERROR"]
    credential.down.clear()
    wait_until(lambda: _pings(client), timeout=6)  # the credential is back: new connections work again


def _pings(client) -> bool:
    try:
        return bool(client.ping())
    except Exception:  # the held credential error, until it is asked again
        return False


def test_nothing_logged_or_shown_holds_a_token(
    identity: ManagedIdentityEndpoint,
    azure_redis: AzureRedisStandIn,
    token_log: pytest.LogCaptureFixture,
    made: list[RedisCredentialProvider],
) -> None:
    provider = _provider(made, _credential())
    seen: list[object] = []
    provider.on_next(seen.append)
    client = redis.Redis(**azure_redis.client_kwargs(), credential_provider=provider)
    client.ping()
    wait_until(lambda: bool(seen), timeout=LIFETIME + 2)
    tokens = [provider.get_credentials()[1], seen[0].get_value()]  # type: ignore[attr-defined]
    shown = " ".join([repr(provider), repr(seen[0]), str(seen[0]), token_log.text])
    assert_no_token_in(shown, tokens)
    assert isinstance(provider, RedisCredentialProvider) and provider.is_streaming()


def test_providers_on_one_cache_share_one_renewal_thread(azure_token_registry: TokenRegistry) -> None:
    """A provider made per client (a factory writing `credential_provider(credential)` each time):
    one renewal thread for the cache they share, not one per provider."""
    earlier = set(threading.enumerate())

    def renewal_threads() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name == "azure-ad-token-auth-renewal" and t not in earlier]

    fake = FakeCredential(registry=azure_token_registry, lifetime=2)  # renewal due after about 1 s
    providers = [credential_provider(fake) for _ in range(50)]
    listeners = [Listener() for _ in providers]
    for provider, listener in zip(providers, listeners):
        provider.get_credentials()
        provider.on_next(listener.re_auth)
    assert all(provider.is_streaming() for provider in providers)
    assert len(renewal_threads()) == 1
    wait_until(lambda: all(listener.tokens for listener in listeners), timeout=4)
    assert len(renewal_threads()) == 1 and fake.calls == 2  # one renewal, told to all fifty
    for provider in providers:
        provider.close()
    wait_until(lambda: not renewal_threads(), timeout=4)  # the last one closed: the thread ends


def test_close_stops_renewals(azure_token_registry: TokenRegistry) -> None:
    fake = FakeCredential(registry=azure_token_registry, lifetime=2)  # renewal due after 1 s
    provider, renewing = (
        credential_provider(fake),
        credential_provider(FakeCredential(registry=azure_token_registry, lifetime=2)),
    )
    seen: list[object] = []
    provider.on_next(seen.append)
    renewing.on_next(seen.append)
    provider.get_credentials()
    renewing.get_credentials()
    provider.close()
    wait_until(lambda: len(seen) == 1, timeout=4)  # the other provider renewed
    time.sleep(0.5)
    assert fake.calls == 1 and not provider.is_streaming() and renewing.is_streaming()


class Listener:
    """Stands for a redis-py client: it registers a bound method, as redis-py does."""

    def __init__(self) -> None:
        self.tokens: list[object] = []

    def re_auth(self, token: object) -> None:
        self.tokens.append(token)


def test_renewals_run_while_a_client_is_registered_and_stop_when_the_last_is_gone(
    azure_token_registry: TokenRegistry,
) -> None:
    fake = FakeCredential(registry=azure_token_registry, lifetime=2)  # renewal due after about 1 s
    provider = credential_provider(fake)
    provider.get_credentials()
    assert not provider.is_streaming()  # no client to tell: no renewal thread
    listeners = [Listener()]
    provider.on_next(listeners[0].re_auth)
    assert provider.is_streaming()
    wait_until(lambda: bool(listeners[0].tokens), timeout=4)
    listeners.clear()
    gc.collect()
    wait_until(lambda: not provider.is_streaming(), timeout=4)  # the last client is gone
    calls = fake.calls
    time.sleep(1.5)
    assert fake.calls == calls  # nobody to tell: no renewal
    again = Listener()
    provider.on_next(again.re_auth)  # a new client: renewals resume
    wait_until(lambda: bool(again.tokens), timeout=4)
    provider.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_renews_for_its_own_clients(azure_token_registry: TokenRegistry) -> None:
    """gunicorn --preload: a provider made before the fork; the parent's renewal thread does not exist in the child."""
    fake = FakeCredential(registry=azure_token_registry, lifetime=2)
    provider = credential_provider(fake)
    parent = Listener()
    provider.on_next(parent.re_auth)
    provider.get_credentials()
    assert provider.is_streaming()
    with warnings.catch_warnings():
        # Forking with the renewal thread running is the point; Python 3.12+ warns about any such fork.
        warnings.filterwarnings("ignore", r"This process \(pid=\d+\) is multi-threaded", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: its own client, renewed by a thread of its own
        code = 1
        try:
            child = Listener()
            provider.on_next(child.re_auth)
            provider.get_credentials()
            deadline = time.monotonic() + 5
            while not child.tokens and time.monotonic() < deadline:
                time.sleep(0.02)
            code = 0 if child.tokens and provider.is_streaming() else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    wait_until(lambda: bool(parent.tokens), timeout=4)  # the parent's thread carries on too
    provider.close()


@pytest.fixture
def no_redis_module(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    for name in [n for n in sys.modules if n == "redis" or n.startswith(("redis.", "azure_ad_token_auth.redis"))]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "redis", None)


def test_without_redis_py_the_import_names_the_extra(no_redis_module: None) -> None:
    from azure_ad_token_auth import MissingExtraError

    with pytest.raises(MissingExtraError, match=r'pip install "azure-ad-token-auth\[redis\]"'):
        import azure_ad_token_auth.redis  # noqa: F401
