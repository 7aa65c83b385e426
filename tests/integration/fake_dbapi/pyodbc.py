"""A DB-API 2.0 module that stands in for pyodbc and only records how it was asked to connect.

No SQL Server runs in the suite: this lets SQLAlchemy's real `mssql+pyodbc` dialect (and the
examples in docs/sql.md) open "connections" whose connect arguments, `attrs_before` with the
packed access token among them, a test then inspects. Every query answers one row, which is
all the dialect's first-connect checks need. `connects` lists `(time, args, kwargs)`.
"""

from __future__ import annotations

import threading
import time
from typing import Any

version = "5.2.0"
apilevel = "2.0"
threadsafety = 1
paramstyle = "qmark"
pooling = True
SQL_DBMS_VER = 18
SQL_DRIVER_NAME = 6

connects: list[tuple[float, tuple[Any, ...], dict[str, Any]]] = []
_lock = threading.Lock()


class Error(Exception):
    pass


class Warning(Exception):  # the DB-API names it so
    pass


class InterfaceError(Error):
    pass


class DatabaseError(Error):
    pass


class DataError(DatabaseError):
    pass


class OperationalError(DatabaseError):
    pass


class IntegrityError(DatabaseError):
    pass


class InternalError(DatabaseError):
    pass


class ProgrammingError(DatabaseError):
    pass


class NotSupportedError(DatabaseError):
    pass


class Cursor:
    description: list[tuple[Any, ...]] | None = None
    rowcount = -1
    arraysize = 1

    def __init__(self) -> None:
        self._rows: list[tuple[Any, ...]] = []

    def execute(self, operation: str, *parameters: Any) -> Cursor:
        self.description = [("value", str, None, None, None, None, True)]
        self._rows = [("1",)]
        return self

    def fetchone(self) -> tuple[Any, ...] | None:
        return self._rows.pop(0) if self._rows else None

    def fetchall(self) -> list[tuple[Any, ...]]:
        rows, self._rows = self._rows, []
        return rows

    def fetchmany(self, size: int = 1) -> list[tuple[Any, ...]]:
        rows, self._rows = self._rows[:size], self._rows[size:]
        return rows

    def close(self) -> None:
        pass


class Connection:
    autocommit = False

    def cursor(self) -> Cursor:
        return Cursor()

    def getinfo(self, kind: int) -> str:
        return "16.00.1000" if kind == SQL_DBMS_VER else "msodbcsql18.so"

    def commit(self) -> None:
        pass

    def rollback(self) -> None:
        pass

    def close(self) -> None:
        pass

    def add_output_converter(self, *args: Any) -> None:
        pass

    def setdecoding(self, *args: Any, **kwargs: Any) -> None:
        pass

    def setencoding(self, *args: Any, **kwargs: Any) -> None:
        pass


def connect(*args: Any, **kwargs: Any) -> Connection:
    with _lock:
        connects.append((time.time(), args, kwargs))
    return Connection()
