"""A stand-in for mssql-python's `connect` that only records what it was given, for the
examples in docs/sql.md (no SQL Server runs in the suite).

It asks a `token_provider` exactly as mssql-python does, `get_token(scope)` with the public
cloud's database scope (tests/integration/test_sql_engines.py checks that against the real
package), and packs the answer the same way. `connects` lists `(time, connection_str, kwargs)`.
"""

from __future__ import annotations

import struct
import time
from typing import Any

SCOPE = "https://database.windows.net/.default"  # mssql_python.auth._SQL_SCOPE
connects: list[tuple[float, str, dict[str, Any]]] = []


class Connection:
    def close(self) -> None:
        pass


def connect(
    connection_str: str = "",
    autocommit: bool = False,
    attrs_before: dict[int, Any] | None = None,
    timeout: int = 0,
    token_provider: Any = None,
    **kwargs: Any,
) -> Connection:
    attrs = dict(attrs_before or {})
    if token_provider is not None:
        token = token_provider.get_token(SCOPE).token.encode("utf-16-le")
        attrs[1256] = struct.pack(f"<I{len(token)}s", len(token), token)
    connects.append((time.time(), connection_str, {"attrs_before": attrs}))
    return Connection()
