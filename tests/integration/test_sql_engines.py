"""Azure SQL through the clients that carry the token: SQLAlchemy's real `mssql+pyodbc` dialect
with the `do_connect` recipe of docs/sql.md, and mssql-python's `token_provider=`.

No SQL Server runs here, and no ODBC driver loads: pyodbc is replaced by a DB-API module that
only records its connect arguments (`fake_dbapi/pyodbc.py`), so what is tested is what each
new connection is handed, a packed token that is valid when it connects; mssql-python is
real up to its driver, which fails to connect after asking our credential for its token.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest
from sqlalchemy import create_engine, event, text
from sqlalchemy.pool import NullPool

from azure_ad_token_auth import CachedCredential
from azure_ad_token_auth.sql import SQL_SCOPE, odbc_attrs, pack_token
from azure_ad_token_auth.testing import FakeCredential, TokenRegistry
from conftest import wait_until
from integration.fake_dbapi import pyodbc as fake_pyodbc

SERVER = "myserver.database.usgovcloudapi.net"
URL = f"mssql+pyodbc://@{SERVER}/app?driver=ODBC+Driver+18+for+SQL+Server"


@pytest.fixture
def dbapi() -> Iterator[ModuleType]:
    fake_pyodbc.connects.clear()
    yield fake_pyodbc
    fake_pyodbc.connects.clear()


def _token(kwargs: dict[str, Any]) -> str:
    packed = kwargs["attrs_before"][1256]
    assert int.from_bytes(packed[:4], "little") == len(packed) - 4
    return bytes(packed[4:]).decode("utf-16-le")


def _expired_on_arrival(registry: TokenRegistry, dbapi: ModuleType) -> list[float]:
    """For each connection that carried an expired token, how long it had expired."""
    late = []
    for when, _args, kwargs in dbapi.connects:
        expires_on = registry.expires_on(_token(kwargs))
        assert expires_on is not None, "a token the registry never issued"
        if expires_on <= when:
            late.append(when - expires_on)
    return late


def test_every_new_connection_gets_a_valid_token_over_an_hour_of_renewals(clock, dbapi: ModuleType) -> None:
    registry = TokenRegistry()
    fake = FakeCredential(registry=registry, lifetime=600)  # 10-minute tokens: 6 lifetimes in the hour
    credential = CachedCredential(fake)
    engine = create_engine(URL, module=dbapi, poolclass=NullPool)  # NullPool: every checkout connects

    # The recipe of docs/sql.md.
    @event.listens_for(engine, "do_connect")
    def provide_token(dialect: Any, conn_rec: Any, cargs: list[str], cparams: dict[str, Any]) -> None:
        cargs[0] = cargs[0].replace(";Trusted_Connection=Yes", "")
        cparams["attrs_before"] = odbc_attrs(credential, server=SERVER)

    def newest() -> bool:  # the credential has answered, and the cache serves its answer
        return len(fake.tokens) == fake.calls and odbc_attrs(credential, server=SERVER)[1256] == pack_token(
            fake.tokens[-1]
        )

    for _minute in range(60):
        with engine.connect() as connection:
            assert connection.execute(text("SELECT 1")).scalar() == "1"
        wait_until(newest)  # a renewal the connection began (in the background) has landed
        clock.shift(60)
    assert len(dbapi.connects) == 60
    assert _expired_on_arrival(registry, dbapi) == []
    assert {args[0] for _, args, _ in dbapi.connects} == {
        f"DRIVER={{ODBC Driver 18 for SQL Server}};Server={SERVER};Database=app"
    }
    # One credential call per renewal (300 s before expiry: every 5 minutes), not one per connection.
    assert fake.calls == 12
    assert len({_token(kwargs) for _, _, kwargs in dbapi.connects}) == fake.calls


def test_control_a_token_computed_once_at_startup_expires_under_later_connections(clock, dbapi: ModuleType) -> None:
    """What sqlalchemy/sqlalchemy#6031 users hit: the check above is able to fail."""
    registry = TokenRegistry()
    fake = FakeCredential(registry=registry, lifetime=600)
    engine = create_engine(
        URL, module=dbapi, poolclass=NullPool, connect_args={"attrs_before": odbc_attrs(fake, server=SERVER)}
    )
    for _minute in range(15):
        with engine.connect():
            pass
        clock.shift(60)
    assert len(_expired_on_arrival(registry, dbapi)) == 5  # minutes 10 to 14
    assert fake.calls == 1


def test_pooled_engines_in_threads_share_one_token(dbapi: ModuleType) -> None:
    registry = TokenRegistry()
    fake = FakeCredential(registry=registry, delay=0.2)
    engine = create_engine(URL, module=dbapi, pool_size=16, max_overflow=0)

    @event.listens_for(engine, "do_connect")
    def provide_token(dialect: Any, conn_rec: Any, cargs: list[str], cparams: dict[str, Any]) -> None:
        cparams["attrs_before"] = odbc_attrs(fake, server=SERVER)  # a raw credential: its cache is held

    barrier = threading.Barrier(16)

    def work() -> None:
        barrier.wait()
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
            time.sleep(0.05)  # hold it, so the pool opens 16

    threads = [threading.Thread(target=work) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(dbapi.connects) == 16 and fake.calls == 1
    assert {_token(kwargs) for _, _, kwargs in dbapi.connects} == {fake.tokens[0]}


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class _Scoped(FakeCredential):
    def __init__(self) -> None:
        super().__init__(registry=TokenRegistry())
        self.scopes: list[tuple[str, ...]] = []

    def get_token_info(self, *scopes: str, options: Any = None) -> Any:
        self.scopes.append(scopes)
        return super().get_token_info(*scopes, options=options)


def test_mssql_python_takes_cached_credential_as_its_token_provider() -> None:
    mssql_python = pytest.importorskip("mssql_python")
    fake = _Scoped()
    credential = CachedCredential(fake)
    connection_string = f"Server=tcp:127.0.0.1,{_closed_port()};Database=app;Encrypt=yes"
    for _ in range(3):  # each connect asks its token_provider, then its driver fails (no server)
        with pytest.raises(mssql_python.OperationalError):
            mssql_python.connect(connection_string, token_provider=credential, timeout=1)
    assert fake.scopes == [(SQL_SCOPE,)]  # mssql-python's get_token(scope), answered from the cache after
    assert fake.calls == 1


def test_sqlalchemy_mssqlpython_dialect_passes_the_token_provider_to_each_connection() -> None:
    pytest.importorskip("mssql_python")
    pytest.importorskip("sqlalchemy.dialects.mssql.mssqlpython", reason="SQLAlchemy >= 2.1 has the dialect")
    fake = _Scoped()
    engine = create_engine(
        f"mssql+mssqlpython://@127.0.0.1:{_closed_port()}/app",
        connect_args={"token_provider": CachedCredential(fake), "timeout": 1},
        poolclass=NullPool,
    )
    for _ in range(2):
        with pytest.raises(Exception, match="(?i)driver|connect"):
            engine.connect()
    assert fake.scopes == [(SQL_SCOPE,)] and fake.calls == 1
