"""The providers under the real drivers, against Azure's token check on loopback.

psycopg (sync and async), psycopg_pool (sync and async, callable `kwargs`), asyncpg (a
callable password, and its pool), SQLAlchemy (sync and async engines, psycopg and asyncpg
dialects): each connects through `AzurePostgresStandIn` to a real PostgreSQL server, with
tokens from azure-identity's real `ManagedIdentityCredential` (the loopback managed-identity
endpoint shares the stand-in's registry). The identity endpoint counts the credential calls.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from typing import Any

import pytest
from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

from azure_ad_token_auth import UsageError
from azure_ad_token_auth.postgres import async_password_provider, password_provider
from azure_ad_token_auth.testing import AzurePostgresStandIn, ManagedIdentityEndpoint

psycopg = pytest.importorskip("psycopg")

THREADS, COROUTINES, QUERIES = 32, 64, 4


@pytest.fixture
def azure(
    azure_postgres: AzurePostgresStandIn, azure_managed_identity: ManagedIdentityEndpoint
) -> AzurePostgresStandIn:
    """The stand-in, with the environment pointing azure-identity at the managed-identity endpoint."""
    return azure_postgres


def _all_accepted(azure: AzurePostgresStandIn, at_least: int) -> None:
    assert [r.reason for r in azure.records if r.outcome == "rejected"] == []
    assert azure.accepted >= at_least


def _in_threads(work: Any, count: int = THREADS) -> list[Any]:
    results: list[Any] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(count)

    def run() -> None:
        barrier.wait()
        try:
            results.append(work())
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    return results


# -- psycopg ------------------------------------------------------------------------------


def test_psycopg_connects_with_the_token_as_password(
    azure: AzurePostgresStandIn, azure_managed_identity: ManagedIdentityEndpoint
) -> None:
    password = password_provider(ManagedIdentityCredential(), host=azure.host_name)
    for _ in range(3):
        with psycopg.connect(azure.conninfo(), password=password()) as conn:
            assert conn.execute("select current_user").fetchone() == (azure.default_user,)
    _all_accepted(azure, 3)
    assert azure_managed_identity.calls == 1
    assert azure_managed_identity.last_resource == azure.audience


async def test_psycopg_async_connects_with_the_async_provider(
    azure: AzurePostgresStandIn, azure_managed_identity: ManagedIdentityEndpoint
) -> None:
    apassword = async_password_provider(DefaultAzureCredential(), host=azure.host_name)

    async def query() -> Any:
        async with await psycopg.AsyncConnection.connect(azure.conninfo(), password=await apassword()) as conn:
            return await (await conn.execute("select current_user")).fetchone()

    assert await asyncio.gather(*(query() for _ in range(8))) == [(azure.default_user,)] * 8
    _all_accepted(azure, 8)
    assert azure_managed_identity.calls == 1


def test_a_token_for_another_cloud_is_refused_by_the_server(azure: AzurePostgresStandIn) -> None:
    # A US Government server's scope, on a public-cloud server: Azure refuses the audience.
    password = password_provider(ManagedIdentityCredential(), host="myserver.postgres.database.usgovcloudapi.net")
    with pytest.raises(psycopg.OperationalError, match="28P01|password authentication failed") as caught:
        psycopg.connect(azure.conninfo(), password=password())
    assert "ossrdbms-aad.database.usgovcloudapi.net" in str(caught.value)
    assert azure.accepted == 0


# -- psycopg_pool -------------------------------------------------------------------------


def test_psycopg_pool_asks_the_provider_per_new_connection_from_many_threads(
    azure: AzurePostgresStandIn, azure_managed_identity: ManagedIdentityEndpoint
) -> None:
    pool_module = pytest.importorskip("psycopg_pool")
    password = password_provider(ManagedIdentityCredential(), host=azure.host_name)
    with pool_module.ConnectionPool(
        azure.conninfo(), kwargs=lambda: {"password": password()}, min_size=2, max_size=8, open=True
    ) as pool:

        def work() -> int:
            total = 0
            for _ in range(QUERIES):
                with pool.connection() as conn:
                    total += conn.execute("select 1").fetchone()[0]
            return total

        assert sum(_in_threads(work)) == THREADS * QUERIES
    _all_accepted(azure, 2)
    assert azure_managed_identity.calls == 1


async def test_async_psycopg_pool_awaits_the_provider_per_new_connection(
    azure: AzurePostgresStandIn, azure_managed_identity: ManagedIdentityEndpoint
) -> None:
    pool_module = pytest.importorskip("psycopg_pool")
    apassword = async_password_provider(ManagedIdentityCredential(), host=azure.host_name)

    async def kwargs() -> dict[str, str]:
        return {"password": await apassword()}

    async with pool_module.AsyncConnectionPool(
        azure.conninfo(), kwargs=kwargs, min_size=2, max_size=8, open=False
    ) as pool:

        async def work() -> int:
            async with pool.connection() as conn:
                return (await (await conn.execute("select 1")).fetchone())[0]

        assert sum(await asyncio.gather(*(work() for _ in range(COROUTINES)))) == COROUTINES
    _all_accepted(azure, 2)
    assert azure_managed_identity.calls == 1


# -- asyncpg ------------------------------------------------------------------------------


async def test_asyncpg_awaits_the_provider_as_its_password_for_each_pooled_connection(
    azure: AzurePostgresStandIn, azure_managed_identity: ManagedIdentityEndpoint
) -> None:
    asyncpg = pytest.importorskip("asyncpg")
    apassword = async_password_provider(ManagedIdentityCredential(), host=azure.host_name)
    options = {"host": "127.0.0.1", "port": azure.port, "user": azure.default_user, "database": "postgres"}
    conn = await asyncpg.connect(**options, ssl=azure.ssl_context(), password=apassword)
    assert await conn.fetchval("select current_user") == azure.default_user
    await conn.close()
    async with asyncpg.create_pool(**options, ssl=azure.ssl_context(), password=apassword, min_size=4) as pool:
        values = await asyncio.gather(*(pool.fetchval("select 1") for _ in range(COROUTINES)))
    assert values == [1] * COROUTINES
    _all_accepted(azure, 5)
    assert azure_managed_identity.calls == 1


# -- SQLAlchemy ---------------------------------------------------------------------------


def _psycopg_url(azure: AzurePostgresStandIn, driver: str = "psycopg") -> Any:
    sqlalchemy = pytest.importorskip("sqlalchemy")
    query = {"hostaddr": "127.0.0.1", "sslmode": "verify-full", "sslrootcert": azure.ca_path}
    return sqlalchemy.URL.create(
        f"postgresql+{driver}",
        username=azure.default_user,
        host=azure.host_name,
        port=azure.port,
        database="postgres",
        query=query,
    )


def test_sqlalchemy_engine_sets_the_password_in_do_connect(
    azure: AzurePostgresStandIn, azure_managed_identity: ManagedIdentityEndpoint
) -> None:
    sqlalchemy = pytest.importorskip("sqlalchemy")
    password = password_provider(ManagedIdentityCredential(), host=azure.host_name)
    engine = sqlalchemy.create_engine(_psycopg_url(azure), pool_size=4, max_overflow=4)

    @sqlalchemy.event.listens_for(engine, "do_connect")
    def provide_token(dialect: Any, conn_rec: Any, cargs: Any, cparams: dict[str, Any]) -> None:
        cparams["password"] = password()

    def work() -> int:
        with engine.connect() as conn:
            return int(conn.execute(sqlalchemy.text("select 1")).scalar_one())

    assert sum(_in_threads(work)) == THREADS
    engine.dispose()
    _all_accepted(azure, 1)
    assert azure_managed_identity.calls == 1


async def test_sqlalchemy_async_engine_on_asyncpg_takes_the_async_provider_in_do_connect(
    azure: AzurePostgresStandIn, azure_managed_identity: ManagedIdentityEndpoint
) -> None:
    sqlalchemy = pytest.importorskip("sqlalchemy")
    pytest.importorskip("asyncpg")
    from sqlalchemy.ext.asyncio import create_async_engine

    apassword = async_password_provider(ManagedIdentityCredential(), host=azure.host_name)
    url = sqlalchemy.URL.create(
        "postgresql+asyncpg", username=azure.default_user, host="127.0.0.1", port=azure.port, database="postgres"
    )
    engine = create_async_engine(url, connect_args={"ssl": azure.ssl_context()}, pool_size=4)

    @sqlalchemy.event.listens_for(engine.sync_engine, "do_connect")
    def provide_token(dialect: Any, conn_rec: Any, cargs: Any, cparams: dict[str, Any]) -> None:
        cparams["password"] = apassword  # asyncpg awaits it: the loop never waits for the credential

    async def work() -> int:
        async with engine.connect() as conn:
            return int((await conn.execute(sqlalchemy.text("select 1"))).scalar_one())

    assert sum(await asyncio.gather(*(work() for _ in range(COROUTINES)))) == COROUTINES
    await engine.dispose()
    _all_accepted(azure, 1)
    assert azure_managed_identity.calls == 1


async def test_sqlalchemy_async_engine_on_psycopg_connects_through_async_creator(
    azure: AzurePostgresStandIn, azure_managed_identity: ManagedIdentityEndpoint
) -> None:
    sqlalchemy = pytest.importorskip("sqlalchemy")
    from sqlalchemy.ext.asyncio import create_async_engine

    apassword = async_password_provider(ManagedIdentityCredential(), host=azure.host_name)

    async def connect() -> Any:
        return await psycopg.AsyncConnection.connect(azure.conninfo(), password=await apassword())

    engine = create_async_engine("postgresql+psycopg://", async_creator=connect, pool_size=4)

    async def work() -> int:
        async with engine.connect() as conn:
            return int((await conn.execute(sqlalchemy.text("select 1"))).scalar_one())

    assert sum(await asyncio.gather(*(work() for _ in range(COROUTINES)))) == COROUTINES
    await engine.dispose()
    _all_accepted(azure, 1)
    assert azure_managed_identity.calls == 1


async def test_sqlalchemy_async_engine_on_psycopg_in_do_connect_needs_a_token_held(
    azure: AzurePostgresStandIn, azure_managed_identity: ManagedIdentityEndpoint
) -> None:
    sqlalchemy = pytest.importorskip("sqlalchemy")
    from sqlalchemy.ext.asyncio import create_async_engine

    credential = ManagedIdentityCredential()
    password = password_provider(credential, host=azure.host_name)
    apassword = async_password_provider(credential, host=azure.host_name)  # the same cache
    engine = create_async_engine(_psycopg_url(azure), pool_size=4)

    @sqlalchemy.event.listens_for(engine.sync_engine, "do_connect")
    def provide_token(dialect: Any, conn_rec: Any, cargs: Any, cparams: dict[str, Any]) -> None:
        cparams["password"] = password()  # on the loop's thread: answers from the cache, never waits

    async def work() -> int:
        async with engine.connect() as conn:
            return int((await conn.execute(sqlalchemy.text("select 1"))).scalar_one())

    with pytest.raises(UsageError, match="async_password_provider"):
        await work()  # nothing held yet: refused rather than blocking the loop; nothing sent
    assert azure.records == []
    await apassword()  # what the docs say to do at start-up
    assert sum(await asyncio.gather(*(work() for _ in range(COROUTINES)))) == COROUTINES
    await engine.dispose()
    _all_accepted(azure, 1)
    assert azure_managed_identity.calls == 1


# -- cancelling a query -----------------------------------------------------------------------


def test_psycopg_cancels_a_running_query_through_the_stand_in(
    azure: AzurePostgresStandIn, azure_managed_identity: ManagedIdentityEndpoint
) -> None:
    if psycopg.pq.version() < 170000:
        pytest.skip("libpq < 17 cancels with PQcancel, which holds the GIL: it cannot reach an in-process stand-in")
    password = password_provider(ManagedIdentityCredential(), host=azure.host_name)
    with psycopg.connect(azure.conninfo(), password=password()) as conn:
        # cancel_safe: libpq >= 17 sends the cancel request inside TLS. (The legacy cancel() holds
        # the GIL while libpq waits for the server, so it cannot reach a stand-in in its own process.)
        timer = threading.Timer(0.3, conn.cancel_safe)
        timer.start()
        with pytest.raises(psycopg.errors.QueryCanceled):
            conn.execute("select pg_sleep(30)")
        timer.join()
        conn.rollback()
        assert conn.execute("select 1").fetchone() == (1,)
    assert azure.cancels == 1


async def test_asyncpg_cancels_a_running_query_through_the_stand_in(
    azure: AzurePostgresStandIn, azure_managed_identity: ManagedIdentityEndpoint
) -> None:
    asyncpg = pytest.importorskip("asyncpg")
    apassword = async_password_provider(ManagedIdentityCredential(), host=azure.host_name)
    conn = await asyncpg.connect(
        host="127.0.0.1",
        port=azure.port,
        user=azure.default_user,
        database="postgres",
        ssl=azure.ssl_context(),
        password=apassword,
    )
    query = asyncio.ensure_future(conn.fetchval("select pg_sleep(30)"))
    await asyncio.sleep(0.3)
    query.cancel()  # asyncpg sends a cancel request on a new (TLS) connection
    with pytest.raises(asyncio.CancelledError):
        await query
    assert await asyncio.wait_for(conn.fetchval("select 1"), 10) == 1  # the server stopped sleeping
    await conn.close()
    assert azure.cancels == 1


def test_large_results_and_parameters_cross_the_splice_intact(
    azure: AzurePostgresStandIn, azure_managed_identity: ManagedIdentityEndpoint
) -> None:
    password = password_provider(ManagedIdentityCredential(), host=azure.host_name)
    big = "ab" * 4_000_000  # 8 MB each way: both sides' buffers fill, and reading pauses and resumes
    with psycopg.connect(azure.conninfo(), password=password()) as conn:
        assert conn.execute("select md5(%s), length(%s)", (big, big)).fetchone() == (
            hashlib.md5(big.encode()).hexdigest(),
            len(big),
        )
        (echoed,) = conn.execute("select repeat('ab', 4000000)").fetchone()
    assert echoed == big
