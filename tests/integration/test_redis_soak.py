"""Redis across several token lifetimes: every live connection re-authenticates in time.

Tokens live 3-4 s (renewed at half-life), the soaks run about three lifetimes, against the
testing kit's `AzureRedisStandIn` (a real server; Azure's token check closes a connection
whose token expired). Counted, never timed: commands that failed, connections the server
closed for an expired token, credential calls (the loopback identity endpoint's), and the
event loop's turns while each credential call ran.
"""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from azure_ad_token_auth.testing import AzureRedisStandIn, ManagedIdentityEndpoint

redis = pytest.importorskip("redis")
redis_asyncio = pytest.importorskip("redis.asyncio")
from azure_ad_token_auth.redis import RedisCredentialProvider, credential_provider  # noqa: E402

LIFETIME = 4
# redis.asyncio re-authenticates idle connections race-free only from 8.2 (its BlockingConnectionPool
# then takes the pool's lock to hand out a connection): docs/redis.md.
REDIS_VERSION = tuple(int(part) for part in redis.__version__.split(".")[:2])
SOAK = 10  # seconds: about three lifetimes of 3-4 s


@pytest.fixture
def identity(azure_managed_identity: ManagedIdentityEndpoint) -> Iterator[ManagedIdentityEndpoint]:
    azure_managed_identity.set_lifetime(LIFETIME)
    yield azure_managed_identity
    gc.collect()  # the test's clients and providers: their renewal threads end before the endpoint does


@pytest.fixture
def providers(identity: ManagedIdentityEndpoint) -> Iterator[list[RedisCredentialProvider]]:
    """Providers the test made, closed after it (pass or fail) while the identity endpoint still runs."""
    made: list[RedisCredentialProvider] = []
    yield made
    for provider in made:
        provider.close()


def _provider(made: list[RedisCredentialProvider], credential: object) -> RedisCredentialProvider:
    provider = credential_provider(credential)  # type: ignore[arg-type]
    made.append(provider)
    return provider


def _renewals(azure: AzureRedisStandIn) -> int:
    """Distinct tokens the server accepted: the first one and each renewal."""
    return len({a.fingerprint for a in azure.auths if a.outcome == "accepted"})


class Errors:
    """Every exception a worker met, by kind (a soak passes with none)."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def guard(self, work: Callable[[], None], until: float) -> None:
        while time.monotonic() < until:
            try:
                work()
            except Exception as error:
                self.seen.append(f"{type(error).__name__}: {error}")
                time.sleep(0.05)


def test_sync_clients_pooled_across_threads_pubsub_and_blocking_commands_outlive_their_tokens(
    identity: ManagedIdentityEndpoint, azure_redis: AzureRedisStandIn, providers: list[RedisCredentialProvider]
) -> None:
    from azure.identity import ManagedIdentityCredential

    provider = _provider(providers, ManagedIdentityCredential())
    kwargs = {**azure_redis.client_kwargs(), "credential_provider": provider}
    # One pool for every thread: at each renewal some connections are idle (re-authenticated at once),
    # some in use (re-authenticated when released). redis-py's sync BlockingConnectionPool cannot
    # re-authenticate (docs/redis.md), so this is the default pool.
    client = redis.Redis(max_connections=16, protocol=2, **kwargs)
    single = redis.Redis(single_connection_client=True, protocol=2, **kwargs)
    # A RESP3 subscriber, re-authenticated on its own socket at each renewal. Not read from: redis-py
    # re-authenticates it from the renewal thread, which races a reader waiting on it (docs/redis.md).
    pubsub = redis.Redis(protocol=3, **kwargs).pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe("news")
    errors, pushed, popped = Errors(), list[int](), list[int]()
    until = time.monotonic() + SOAK

    def work(number: int) -> Callable[[], None]:
        def step() -> None:
            client.set(f"key-{number}", number)
            assert client.get(f"key-{number}") == str(number).encode()
            time.sleep(0.005)

        return step

    def produce() -> None:
        client.lpush("jobs", len(pushed))
        pushed.append(len(pushed))
        time.sleep(0.1)

    def consume() -> None:
        # A blocking command with a timeout well inside the renewal margin: its connection goes
        # back to the pool every half second, and re-authenticates there.
        item = client.brpop("jobs", timeout=0.5)
        if item is not None:
            popped.append(int(item[1]))

    def ping_single() -> None:
        assert single.ping() is True
        time.sleep(0.05)

    steps = [work(n) for n in range(8)] + [produce, consume, ping_single]
    threads = [threading.Thread(target=errors.guard, args=(step, until)) for step in steps]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(SOAK + 30)
    popped += [int(item) for item in client.lrange("jobs", 0, -1)[::-1]]
    subscribed = client.pubsub_numsub("news")

    assert errors.seen == []
    assert azure_redis.closed_for_expiry == 0  # no connection outlived its token
    assert sorted(popped) == pushed and len(pushed) > 30
    assert subscribed == [(b"news", 1)]  # the subscriber's connection lived through every renewal
    renewals = _renewals(azure_redis)
    assert renewals >= 4  # several lifetimes
    assert renewals <= identity.calls <= renewals + 1  # about one credential call per renewal
    assert identity.calls <= SOAK / (LIFETIME / 2 - 1) + 2  # at most one per (shortest) half-life
    for closable in (pubsub, single, client):
        closable.close()


@pytest.mark.skipif(REDIS_VERSION < (8, 2), reason="redis.asyncio re-authenticates race-free from redis-py 8.2")
async def test_async_clients_outlive_their_tokens_and_the_loop_turns_through_every_credential_call(
    identity: ManagedIdentityEndpoint, azure_redis: AzureRedisStandIn, providers: list[RedisCredentialProvider]
) -> None:
    from azure.identity import ManagedIdentityCredential

    ticks, turns = 0, []

    class Counting(ManagedIdentityCredential):
        """azure-identity's real sync credential (run in a thread for async clients), counting the
        loop's turns while each call runs."""

        def get_token_info(self, *scopes, options=None):  # type: ignore[no-untyped-def]
            before = ticks
            try:
                return super().get_token_info(*scopes, options=options)
            finally:
                turns.append(ticks - before)

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.002)

    identity.set_delay(0.3)  # each token request takes a while: long enough to count the loop's turns
    tick_task = asyncio.create_task(ticker())
    provider = _provider(providers, Counting())
    kwargs = {**azure_redis.client_kwargs(), "credential_provider": provider}
    # 4 connections for 10 coroutines: at each renewal some are idle, some in use. redis.asyncio's
    # default pool re-authenticates a released connection after handing it back (docs/redis.md): the
    # blocking pool does not. redis-py registers its re-authentication with the provider given to
    # Redis(), so a pool built apart is given it too.
    pool = redis_asyncio.BlockingConnectionPool(max_connections=4, timeout=10, protocol=2, **kwargs)
    client = redis_asyncio.Redis(connection_pool=pool, credential_provider=provider)
    pubsub = redis_asyncio.Redis(protocol=3, **kwargs).pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe("news")
    errors: list[str] = []
    pushed, popped = list[int](), list[int]()
    until = time.monotonic() + SOAK

    async def guard(step: Callable[[], object]) -> None:
        while time.monotonic() < until:
            try:
                await step()  # type: ignore[misc]
            except Exception as error:
                errors.append(f"{type(error).__name__}: {error}")
                await asyncio.sleep(0.05)

    def work(number: int) -> Callable[[], object]:
        async def step() -> None:
            await client.set(f"key-{number}", number)
            assert await client.get(f"key-{number}") == str(number).encode()
            await asyncio.sleep(0.005)

        return step

    async def produce() -> None:
        await client.lpush("jobs", len(pushed))
        pushed.append(len(pushed))
        await asyncio.sleep(0.1)

    async def consume() -> None:
        item = await client.brpop("jobs", timeout=0.5)
        if item is not None:
            popped.append(int(item[1]))

    await asyncio.gather(*(guard(step) for step in [work(n) for n in range(8)] + [produce, consume]))
    popped += [int(item) for item in (await client.lrange("jobs", 0, -1))[::-1]]
    subscribed = await client.pubsub_numsub("news")
    tick_task.cancel()

    assert errors == []
    assert azure_redis.closed_for_expiry == 0
    assert sorted(popped) == pushed and len(pushed) > 30
    assert subscribed == [(b"news", 1)]
    renewals = _renewals(azure_redis)
    assert renewals >= 4
    assert renewals <= identity.calls <= renewals + 1
    assert len(turns) == identity.calls and min(turns) > 0  # the loop kept turning through each call
    await pubsub.aclose()
    await client.aclose()


def test_a_control_without_renewal_is_closed_at_expiry_and_then_refused(
    identity: ManagedIdentityEndpoint, azure_redis: AzureRedisStandIn
) -> None:
    """The same pool with a plain static password: what the soaks above would see without renewal."""
    from azure.identity import ManagedIdentityCredential

    token = ManagedIdentityCredential().get_token("https://redis.azure.com/.default").token
    user = str((azure_redis.registry.claims(token) or {})["oid"])
    static = redis.UsernamePasswordCredentialProvider(user, token)
    no_retries = redis.retry.Retry(redis.backoff.NoBackoff(), 0)
    client = redis.Redis(**azure_redis.client_kwargs(), credential_provider=static, protocol=2, retry=no_retries)
    errors = Errors()
    expires_on = azure_redis.registry.expires_on(token)
    assert expires_on is not None

    def ping() -> None:
        client.ping()
        time.sleep(0.05)

    errors.guard(ping, time.monotonic() + expires_on - time.time() + 1)
    assert azure_redis.closed_for_expiry >= 1
    assert any("AuthenticationError" in seen for seen in errors.seen)  # reconnecting with the expired token
    client.close()


def test_resp2_pub_sub_cannot_reauthenticate_it_is_closed_at_expiry_and_redis_py_resubscribes(
    identity: ManagedIdentityEndpoint, azure_redis: AzureRedisStandIn, providers: list[RedisCredentialProvider]
) -> None:
    """Not covered, as docs/redis.md says: a RESP2 subscriber's connection is closed when its token
    expires; redis-py reconnects (with a fresh token from the provider) and subscribes again, by
    itself from redis-py 6 (its default retry), after raising ConnectionError once before."""
    from azure.identity import ManagedIdentityCredential

    provider = _provider(providers, ManagedIdentityCredential())
    kwargs = {**azure_redis.client_kwargs(), "credential_provider": provider, "protocol": 2}
    publisher = redis.Redis(**kwargs)
    pubsub = redis.Redis(**kwargs).pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe("news")
    first = provider.get_credentials()[1]
    expires_on = azure_redis.registry.expires_on(first)
    assert expires_on is not None
    dropped = 0
    while time.time() < expires_on + 0.5:
        try:
            pubsub.get_message(timeout=0.1)
        except redis.exceptions.ConnectionError:
            dropped += 1
    assert dropped <= (1 if REDIS_VERSION < (6, 0) else 0)
    assert azure_redis.closed_for_expiry == 1  # the subscriber's connection, closed at its token's expiry
    publisher.publish("news", "after")
    messages = [pubsub.get_message(timeout=0.5) for _ in range(3)]
    assert [m["data"] for m in messages if m] == [b"after"]  # subscribed again on a new connection
    pubsub.close()
    publisher.close()


def test_a_blocking_command_waiting_past_its_tokens_expiry_has_its_connection_closed(
    identity: ManagedIdentityEndpoint, azure_redis: AzureRedisStandIn, providers: list[RedisCredentialProvider]
) -> None:
    """Not covered, as docs/redis.md says: a connection inside BRPOP with no timeout cannot send AUTH.
    redis-py's retry (its default from redis-py 6) sends the command again on a new connection, which
    carries a fresh token; before 6 the command raises ConnectionError."""
    from azure.identity import ManagedIdentityCredential

    provider = _provider(providers, ManagedIdentityCredential())
    client = redis.Redis(**azure_redis.client_kwargs(), credential_provider=provider, protocol=2)
    first = provider.get_credentials()[1]
    expires_on = azure_redis.registry.expires_on(first)
    assert expires_on is not None
    pusher = threading.Timer(expires_on - time.time() + 0.5, lambda: client.lpush("jobs", "late"))
    pusher.start()
    try:
        item = client.brpop("jobs", timeout=0)
    except redis.exceptions.ConnectionError:
        assert REDIS_VERSION < (6, 0)
        item = client.brpop("jobs", timeout=0)
    pusher.join(10)  # BRPOP can return before LPUSH has its reply: not after the stand-in stops
    assert item in ((b"jobs", b"late"), [b"jobs", b"late"])
    assert azure_redis.closed_for_expiry == 1
    pusher.join(30)  # LPUSH reads its reply after BRPOP returns: closing the pool first broke its socket
    client.close()
