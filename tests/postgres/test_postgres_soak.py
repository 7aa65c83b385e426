"""A soak over several token lifetimes: pools that keep opening connections while tokens come and go.

Tokens live 3 s (the registry rounds expiry down, so 2-3 s), the credential takes 0.25 s,
and for 9 s a psycopg_pool (connections retired after 1 s) serves threads while an asyncpg
pool (connections retired after 10 queries) serves coroutines on an event loop. Azure's
check (the stand-in) sees every new connection. Beside them, the control: a token fetched
once and reused, as a hand-written `password=token` does, which fails once it expires.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from typing import Any

import pytest

from azure_ad_token_auth.postgres import async_password_provider, password_provider
from azure_ad_token_auth.testing import AzurePostgresStandIn, TokenRegistry, fingerprint
from postgres_helpers import LoopTicker, PostgresCredential

psycopg = pytest.importorskip("psycopg")
psycopg_pool = pytest.importorskip("psycopg_pool")
asyncpg = pytest.importorskip("asyncpg")

SOAK, LIFETIME, DELAY = 9.0, 3.0, 0.25
THREADS, COROUTINES = 4, 8


async def test_soak_new_connections_across_renewals_never_fail_and_the_loop_never_stalls(
    azure_postgres: AzurePostgresStandIn, azure_token_registry: TokenRegistry
) -> None:
    azure = azure_postgres
    credential = PostgresCredential(azure_token_registry, lifetime=LIFETIME, delay=DELAY)
    password = password_provider(credential, host=azure.host_name)
    apassword = async_password_provider(credential, host=azure.host_name)  # one cache for both
    static = PostgresCredential(azure_token_registry, lifetime=LIFETIME).get_token_info("scope").token
    static_expiry = azure_token_registry.expires_on(static)
    assert static_expiry is not None
    stop = threading.Event()
    errors: list[BaseException] = []
    served = {"sync": 0, "async": 0}
    control: list[tuple[float, str]] = []

    # Opened first, used last: Azure checks the token at connect only.
    held = await asyncio.to_thread(psycopg.connect, azure.conninfo(), password=static)

    pool = psycopg_pool.ConnectionPool(
        azure.conninfo(), kwargs=lambda: {"password": password()}, min_size=2, max_size=4, max_lifetime=1.0, open=False
    )
    await asyncio.to_thread(pool.open, wait=True)

    def sync_worker() -> None:
        while not stop.is_set():
            try:
                with pool.connection(timeout=10) as conn:
                    conn.execute("select 1")
                served["sync"] += 1
            except BaseException as error:
                errors.append(error)
            stop.wait(0.05)

    def control_worker() -> None:
        while not stop.is_set():
            try:
                psycopg.connect(azure.conninfo(), password=static).close()
                control.append((time.time(), "ok"))
            except psycopg.OperationalError as error:
                control.append((time.time(), str(error)))
            stop.wait(0.25)

    ticker = LoopTicker()
    ticker.start()
    threads = [threading.Thread(target=sync_worker) for _ in range(THREADS)]
    threads.append(threading.Thread(target=control_worker))
    for thread in threads:
        thread.start()
    options: dict[str, Any] = {"host": "127.0.0.1", "port": azure.port, "user": azure.default_user}
    async with asyncpg.create_pool(
        **options,
        database="postgres",
        ssl=azure.ssl_context(),
        password=apassword,
        min_size=2,
        max_size=4,
        max_queries=10,
    ) as apool:
        deadline = time.monotonic() + SOAK

        async def async_worker() -> None:
            while time.monotonic() < deadline:
                try:
                    await apool.fetchval("select 1")
                    served["async"] += 1
                except Exception as error:
                    errors.append(error)
                await asyncio.sleep(0.05)

        await asyncio.gather(*(async_worker() for _ in range(COROUTINES)))
    stop.set()
    await ticker.stop()
    for thread in threads:
        await asyncio.to_thread(thread.join, 30)
    await asyncio.to_thread(pool.close)
    still_open = held.execute("select 1").fetchone()
    held.close()

    # Zero connection errors, and every new connection the providers fed was accepted.
    assert errors == []
    assert still_open == (1,)  # its token expired seconds ago: checked only when it opened
    assert served["sync"] > 100 and served["async"] > 100
    ours = [r for r in azure.records if r.fingerprint != fingerprint(static)]
    assert [r.reason for r in ours if r.outcome == "rejected"] == []
    # New connections opened under many tokens: the pools kept connecting across renewals.
    assert len({r.fingerprint for r in ours}) >= 3 and len(ours) >= 20

    # About one credential call per renewal: a token every half-lifetime or so, never one per
    # connection, and never two calls at once.
    assert SOAK / LIFETIME <= credential.calls <= SOAK / (LIFETIME / 2 - 0.5) + 2
    spans = sorted(credential.intervals)
    assert all(end <= next_start for (_, end), (next_start, _) in itertools.pairwise(spans))

    # The event loop turned during every credential call made while it ran.
    during = [ticker.during(start, end) for start, end in spans if ticker.ticks[0] < start and end < ticker.ticks[-1]]
    assert during and min(during) > 0

    # The control: its connections work until the token expires, then Azure refuses every one.
    failures = [(when, text) for when, text in control if text != "ok"]
    assert control[0][1] == "ok" and failures
    assert all(when >= static_expiry and "has expired" in text for when, text in failures)
    assert all(text == "ok" for when, text in control if when < static_expiry - 0.5)


async def test_the_loop_measure_sees_the_rag_samples_blocking_hook(
    azure_postgres: AzurePostgresStandIn, azure_token_registry: TokenRegistry
) -> None:
    """The measure above can fail: a connect hook calling a sync credential on the loop's thread
    (Azure-Samples/rag-postgres-openai-python#13) leaves no loop turn inside the call."""
    sqlalchemy = pytest.importorskip("sqlalchemy")
    from sqlalchemy.ext.asyncio import create_async_engine

    credential = PostgresCredential(azure_token_registry, delay=DELAY)
    url = sqlalchemy.URL.create(
        "postgresql+asyncpg", username=azure_postgres.default_user, host="127.0.0.1", port=azure_postgres.port
    )
    engine = create_async_engine(url, connect_args={"ssl": azure_postgres.ssl_context(), "database": "postgres"})

    @sqlalchemy.event.listens_for(engine.sync_engine, "do_connect")
    def update_password_token(dialect: Any, conn_rec: Any, cargs: Any, cparams: dict[str, Any]) -> None:
        cparams["password"] = credential.get_token("https://ossrdbms-aad.database.windows.net/.default").token

    ticker = LoopTicker()
    ticker.start()
    await asyncio.sleep(0.05)
    async with engine.connect() as conn:
        assert (await conn.execute(sqlalchemy.text("select 1"))).scalar_one() == 1
    await asyncio.sleep(0.05)
    await ticker.stop()
    await engine.dispose()
    ((start, end),) = credential.intervals
    assert ticker.during(start, end) == 0  # the loop stood still for the whole call
