"""`password_provider` / `async_password_provider`: the scope of the host's cloud, one cache, no blocked loop.

The real drivers and servers are in test_postgres_clients.py; here the providers alone.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import threading
import time
from types import SimpleNamespace

import pytest

from azure_ad_token_auth import (
    ConfigurationError,
    ConfigurationTypeError,
    InvalidTokenError,
    TokenCache,
    UsageError,
    token_provider,
)
from azure_ad_token_auth.postgres import async_password_provider, password_provider, user_name
from azure_ad_token_auth.testing import FakeCredential, TokenRegistry
from postgres_helpers import CHINA, GOVERNMENT, PUBLIC, AsyncPostgresCredential, LoopTicker, PostgresCredential


@pytest.fixture
def pg(registry: TokenRegistry) -> PostgresCredential:
    return PostgresCredential(registry)


@pytest.fixture(autouse=True)
def _no_pghost(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PGHOST", raising=False)


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


# -- the scope ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "scope"),
    [
        ("myserver.postgres.database.azure.com", PUBLIC),
        ("MyServer.Postgres.Database.Azure.Com.", PUBLIC),
        ("myserver.privatelink.postgres.database.azure.com", PUBLIC),
        ("myserver.postgres.database.usgovcloudapi.net", GOVERNMENT),
        ("myserver.postgres.database.chinacloudapi.cn", CHINA),
        ("a.postgres.database.usgovcloudapi.net, b.postgres.database.usgovcloudapi.net", GOVERNMENT),
    ],
)
def test_the_scope_follows_the_hosts_cloud(
    pg: PostgresCredential, host: str, scope: str, caplog: pytest.LogCaptureFixture
) -> None:
    password_provider(pg, host=host)()
    async_password_provider(pg, host=host)  # the same cache: nothing more asked
    assert pg.scopes == [(scope,)]
    assert warnings_of(caplog) == []


def test_with_no_host_the_scope_is_pghosts_clouds_or_the_public_one(
    pg: PostgresCredential, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    password_provider(pg)()
    monkeypatch.setenv("PGHOST", "myserver.postgres.database.chinacloudapi.cn")  # as libpq and asyncpg read it
    password_provider(pg)()
    monkeypatch.setenv("PGHOST", "myserver.postgres.database.usgovcloudapi.net")
    password_provider(pg, host="")()  # an empty host is libpq's default, as None
    assert pg.scopes == [(PUBLIC,), (CHINA,), (GOVERNMENT,)]
    assert warnings_of(caplog) == []


@pytest.mark.parametrize(
    "host", ["db.contoso.internal", "10.1.2.3", "/var/run/postgresql", "postgres.database.azure.com"]
)
def test_a_host_no_rule_knows_gets_the_public_scope_with_one_warning(
    pg: PostgresCredential, host: str, caplog: pytest.LogCaptureFixture
) -> None:
    provider = password_provider(pg, host=host)
    provider()
    provider()
    assert pg.scopes == [(PUBLIC,)]
    (warning,) = warnings_of(caplog)
    assert host in warning and "scopes=" in warning and PUBLIC in warning


def test_scopes_given_win_over_the_host_without_a_warning(
    pg: PostgresCredential, caplog: pytest.LogCaptureFixture
) -> None:
    password_provider(pg, host="db.contoso.internal", scopes=GOVERNMENT)()
    assert pg.scopes == [(GOVERNMENT,)]
    assert warnings_of(caplog) == []


def test_hosts_in_two_clouds_are_refused_before_any_call(pg: PostgresCredential) -> None:
    with pytest.raises(ConfigurationError, match="different Azure clouds"):
        password_provider(pg, host="a.postgres.database.azure.com,b.postgres.database.chinacloudapi.cn")
    assert pg.calls == 0


def test_bad_arguments_are_refused_naming_the_fix(pg: PostgresCredential) -> None:
    with pytest.raises(ConfigurationTypeError, match="server's name as a str"):
        password_provider(pg, host=b"myserver.postgres.database.azure.com")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="refresh_margin"):
        async_password_provider(pg, refresh_margn=60)  # type: ignore[call-arg]
    with pytest.raises(ConfigurationError, match="/.default"):
        password_provider(pg, scopes="https://ossrdbms-aad.database.windows.net")
    assert pg.calls == 0


# -- one cache --------------------------------------------------------------------------


def test_both_providers_and_the_openai_provider_share_one_cache_per_credential(pg: PostgresCredential) -> None:
    password = password_provider(pg, host="myserver.postgres.database.azure.com")
    apassword = async_password_provider(pg)
    openai_style = token_provider(pg, PUBLIC)
    tokens = {password(), asyncio.run(apassword()), openai_style()}
    assert len(tokens) == 1
    assert pg.calls == 1


def test_a_token_cache_passed_in_is_used_and_its_scope_must_be_the_servers(pg: PostgresCredential) -> None:
    cache = TokenCache(pg, PUBLIC)
    assert password_provider(cache, host="myserver.postgres.database.azure.com")() == cache.get_token()
    assert pg.calls == 1
    with pytest.raises(ConfigurationError, match="differ from the shared TokenCache"):
        password_provider(cache, host="myserver.postgres.database.usgovcloudapi.net")
    with pytest.raises(UsageError, match="pass them to the TokenCache"):
        async_password_provider(cache, keep_fresh=True)
    for scope, service in (
        ("https://redis.azure.com/.default", "redis"),
        ("https://database.windows.net/.default", "sql"),
    ):
        with pytest.raises(ConfigurationError, match=f"that scope is for {service}, not Azure Database for PostgreSQL"):
            password_provider(pg, scopes=scope)
        with pytest.raises(ConfigurationError, match=f"that scope is for {service}, not Azure Database for PostgreSQL"):
            async_password_provider(cache, scopes=scope)
    assert pg.calls == 1


def test_shared_cache_hands_another_credential_the_stored_token(registry: TokenRegistry, tmp_path) -> None:
    first, second = PostgresCredential(registry), PostgresCredential(registry)
    token = password_provider(first, shared_cache=tmp_path, shared_cache_identity="my-app")()
    second_provider = async_password_provider(second, shared_cache=tmp_path, shared_cache_identity="my-app")
    assert asyncio.run(second_provider()) == token
    assert (first.calls, second.calls) == (1, 0)


def test_sixty_four_threads_on_a_cold_provider_make_one_call(registry: TokenRegistry) -> None:
    slow = PostgresCredential(registry, delay=0.2)
    password = password_provider(slow)
    barrier, seen = threading.Barrier(64), []

    def connect() -> None:
        barrier.wait()
        seen.append(password())

    threads = [threading.Thread(target=connect) for _ in range(64)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(seen) == 64 and len(set(seen)) == 1
    assert slow.calls == 1


# -- never blocking an event loop ---------------------------------------------------------


async def test_the_async_provider_runs_a_sync_credential_off_the_loop(registry: TokenRegistry) -> None:
    slow = PostgresCredential(registry, delay=0.3)
    apassword = async_password_provider(slow)
    ticker = LoopTicker()
    ticker.start()
    tokens = await asyncio.gather(*(apassword() for _ in range(200)))
    await ticker.stop()
    assert len(set(tokens)) == 1 and slow.calls == 1
    ((start, end),) = slow.intervals
    assert ticker.during(start, end) > 0  # the loop turned while the credential worked


async def test_the_async_provider_awaits_an_async_credential_on_the_loop(registry: TokenRegistry) -> None:
    aio = AsyncPostgresCredential(registry, delay=0.2)
    apassword = async_password_provider(aio, host="myserver.postgres.database.azure.com")
    ticker = LoopTicker()
    ticker.start()
    tokens = await asyncio.gather(*(apassword() for _ in range(200)))
    await ticker.stop()
    assert len(set(tokens)) == 1 and aio.calls == 1
    assert len(ticker.ticks) > 5  # 0.2 s awaited, not slept in the loop's thread


async def until(condition: object, seconds: float = 5.0) -> None:
    """Turn the loop until `condition()` holds (a bound, not a speed claim)."""
    for _ in range(int(seconds / 0.01)):
        if condition():  # type: ignore[operator]
            return
        await asyncio.sleep(0.01)
    raise AssertionError("not reached")


async def test_on_a_loop_the_sync_provider_hands_out_the_held_token_and_renews_in_the_background(
    registry: TokenRegistry,
) -> None:
    # refresh_in=0.5: the first token falls due for renewal within 1.5 s of its arrival.
    slow = PostgresCredential(registry, delay=0.3, refresh_in=0.5)
    password = password_provider(slow)
    first = await asyncio.to_thread(password)  # off the loop: fetched, waiting for it
    slow.refresh_in = None
    ticker = LoopTicker()
    ticker.start()
    await asyncio.sleep(1.5)  # due now (refresh_on is whole seconds, at most 1.5 s away)
    assert password() == first  # on the loop: the held token at once...
    await until(lambda: password() != first)
    await ticker.stop()
    assert password() == slow.tokens[1] and slow.calls == 2
    start, end = slow.intervals[1]  # ...and the renewal ran meanwhile, off the loop's thread
    assert ticker.during(start, end) > 0


async def test_on_a_loop_with_no_token_the_sync_provider_refuses_and_starts_the_fetch(
    registry: TokenRegistry,
) -> None:
    slow = PostgresCredential(registry, delay=0.2)
    password = password_provider(slow)
    with pytest.raises(UsageError, match="async_password_provider"):
        password()
    with pytest.raises(UsageError):
        password()  # still fetching: refused again, no second call

    def answers() -> bool:
        try:
            return password() == slow.tokens[0]
        except UsageError:
            return False

    await until(answers)
    assert slow.calls == 1


async def test_on_a_loop_the_sync_provider_renews_an_async_credential_on_that_loop(registry: TokenRegistry) -> None:
    aio = AsyncPostgresCredential(registry, refresh_in=0.5)
    apassword = async_password_provider(aio)
    first = await apassword()
    aio.refresh_in = None
    await asyncio.sleep(1.5)  # due now (refresh_on is whole seconds, at most 1.5 s away)
    password = password_provider(aio)  # the same cache (alive while a provider holds it)
    assert password() == first
    await until(lambda: password() != first)
    assert password() == aio.tokens[1] and aio.calls == 2


def test_a_renewal_stranded_on_a_loop_that_stopped_is_started_again_on_the_running_loop(
    registry: TokenRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    # refresh_in=0.5: each token falls due within 1.5 s of its arrival.
    slow = PostgresCredential(registry, delay=0.3, refresh_in=0.5)
    cache = TokenCache(slow, PUBLIC)
    password = password_provider(cache)
    first = password()  # off any loop (start-up)
    time.sleep(1.5)  # due now

    async def connect() -> str:  # an async engine's do_connect
        return password()

    stale = asyncio.new_event_loop()
    assert stale.run_until_complete(connect()) == first  # starts a renewal task there; returns before it lands
    stale.close()  # the task with it: before, the provider held it for good and never renewed again
    time.sleep(1.6)  # whatever token the cache holds now is due again
    held = cache.current
    assert held is not None

    async def later() -> str:
        assert password() == held.token  # the held token at once, and a renewal on this loop
        await until(lambda: password() != held.token)
        return password()

    with caplog.at_level(logging.DEBUG, logger="azure_ad_token_auth"):
        assert asyncio.run(later()) == slow.tokens[-1]
        assert asyncio.run(connect()) == slow.tokens[-1]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "stopped before" in r.getMessage()]
    assert len(warnings) == 1
    assert held.token not in caplog.text


def test_off_a_loop_the_sync_provider_refuses_an_async_credential(registry: TokenRegistry) -> None:
    aio = AsyncPostgresCredential(registry)
    password = password_provider(aio)
    with pytest.raises(UsageError, match="only an event loop can await"):
        password()
    assert aio.calls == 0


def test_the_providers_repr_shows_no_token(pg: PostgresCredential) -> None:
    password, apassword = password_provider(pg), async_password_provider(pg)
    token = password()
    for provider in (password, apassword):
        assert token not in repr(provider) and "ossrdbms-aad" in repr(provider)


# -- the user name ----------------------------------------------------------------------


def _jwt(claims: dict[str, object]) -> str:
    def part(value: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'RS256'})}.{part(claims)}.c2lnbmF0dXJl"


@pytest.mark.parametrize(
    ("claims", "name"),
    [
        (
            {
                "xms_mirid": "/subscriptions/s/resourcegroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/my-id"
            },
            "my-id",
        ),
        ({"xms_mirid": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Web/sites/my-web-app"}, "my-web-app"),
        ({"upn": "alice@contoso.com", "unique_name": "alice@contoso.com"}, "alice@contoso.com"),
        ({"preferred_username": "bob@contoso.com"}, "bob@contoso.com"),
        ({"upn": "carol@contoso.com", "xms_mirid": "/x/userAssignedIdentities/id-2"}, "id-2"),
    ],
)
def test_user_name_reads_the_identity_from_the_tokens_claims(claims: dict[str, object], name: str) -> None:
    assert user_name(_jwt(claims)) == name


def test_user_name_needs_no_second_token(registry: TokenRegistry) -> None:
    pg = PostgresCredential(registry, claims={"upn": "alice@contoso.com"})
    password = password_provider(pg)
    assert user_name(password()) == "alice@contoso.com"
    assert pg.calls == 1 and pg.scopes == [(PUBLIC,)]


def test_user_name_of_a_service_principal_asks_for_it_and_shows_no_token() -> None:
    token = _jwt({"appid": "app-123", "oid": "oid-1"})
    with pytest.raises(ConfigurationError, match="pass user= yourself") as caught:
        user_name(token)
    assert "app-123" in str(caught.value) and token not in str(caught.value)


@pytest.mark.parametrize("garbage", ["not-a-jwt", "a.b", "a.!!!.c", _jwt({}).replace(".", "x", 1), 42])
def test_user_name_of_something_that_is_no_jwt_is_a_clear_error(garbage: object) -> None:
    with pytest.raises(InvalidTokenError, match="user_name") as caught:
        user_name(garbage)  # type: ignore[arg-type]
    assert str(garbage) not in str(caught.value)


async def test_on_a_loop_a_failed_renewal_keeps_handing_out_the_valid_token(
    registry: TokenRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    pg = PostgresCredential(registry, refresh_in=0.5)
    password = password_provider(pg)
    first = await asyncio.to_thread(password)
    pg.fail = RuntimeError("identity endpoint down")
    await asyncio.sleep(1.5)  # due now (refresh_on is whole seconds, at most 1.5 s away)
    assert password() == first  # the renewal starts in a task, and fails
    await until(lambda: bool(warnings_of(caplog)))
    assert password() == first  # still valid: still handed out, no error
    assert pg.calls == 2
    (warning,) = warnings_of(caplog)
    assert warning.startswith("token renewal failed") and first not in warning


# -- a token about to expire is no password for a new connection ------------------------------


def _one_second_tokens() -> FakeCredential:
    """Tokens living exactly 1 s (renewal due after 0.5 s; too close to expiry after 0.75 s)."""
    names = iter(f"token-{n}" for n in range(1, 100))
    # A float expiry (azure-core's types say int; the cache takes any number of seconds).
    return FakeCredential(
        result=lambda: SimpleNamespace(token=next(names), expires_on=time.time() + 1.0, refresh_on=None)
    )


def test_a_token_about_to_expire_waits_for_its_renewal_instead_of_opening_a_connection() -> None:
    credential = _one_second_tokens()
    password = password_provider(credential)
    assert password() == "token-1"
    credential.hang()  # the renewal, started when due, does not answer yet
    time.sleep(0.8)  # 0.2 s left: the server might see it expired by the end of the handshake
    got: list[str] = []
    caller = threading.Thread(target=lambda: got.append(password()))
    caller.start()
    time.sleep(0.1)
    credential.release.set()
    caller.join(10)
    assert got == ["token-2"]  # not token-1, which would have reached the server (nearly) expired
    assert credential.calls == 2


async def test_the_async_provider_waits_for_the_renewal_of_a_token_about_to_expire() -> None:
    credential = _one_second_tokens()
    apassword = async_password_provider(credential)
    assert await apassword() == "token-1"
    credential.hang()
    await asyncio.sleep(0.8)
    waiting = asyncio.ensure_future(apassword())
    ticker = LoopTicker()
    ticker.start()
    await asyncio.sleep(0.1)
    assert not waiting.done()
    credential.release.set()
    assert await waiting == "token-2"
    await ticker.stop()
    assert len(ticker.ticks) > 5  # the loop turned while the caller waited


async def test_on_a_loop_a_token_about_to_expire_is_refused_rather_than_waited_for() -> None:
    credential = _one_second_tokens()
    password = password_provider(credential)
    assert await asyncio.to_thread(password) == "token-1"
    await asyncio.sleep(0.8)
    with pytest.raises(UsageError, match="about to expire"):
        password()
    await until(lambda: credential.calls == 2)
    await until(lambda: password() == "token-2")
