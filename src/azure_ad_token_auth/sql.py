"""Azure SQL: Entra ID access tokens for pyodbc and mssql-python, from the shared caches.

```python
import pyodbc
from azure_ad_token_auth.sql import odbc_attrs

server = "<server>.database.windows.net"
connection = pyodbc.connect(f"Driver={{ODBC Driver 18 for SQL Server}};Server=tcp:{server},1433;Database=app",
                            attrs_before=odbc_attrs(server=server))
```

SQL Server reads the token once, when a connection logs in, from the pre-connect
attribute `SQL_COPT_SS_ACCESS_TOKEN` (1256): an `ACCESSTOKEN` struct, the token's byte
length as a 4-byte little-endian integer followed by the token encoded UTF-16-LE (the
ODBC driver's documented form). So every new connection needs a valid token:
`odbc_attrs()` is called per connection (a SQLAlchemy `do_connect` listener, docs/sql.md)
and answers from the cache. Malformed struct data can crash the ODBC driver
(microsoft/mssql-python#278): `pack_token` refuses anything but a JWT of visible ASCII.

mssql-python takes a credential instead (`token_provider=`): pass a `CachedCredential`.
Nothing here imports pyodbc or mssql-python.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import struct
from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

from ._cache import TokenCache, fingerprint
from ._clouds import RULES, SERVICES, SQL_SCOPE, foreign_scope, scope_for_host, sovereign_cloud
from ._credential import is_async_credential, sync_credential_name
from ._errors import ConfigurationError, ConfigurationTypeError, InvalidTokenError
from ._forks import fork_safe_lock
from ._registry import resolve_cache, unwrap
from ._settings import CacheOptions

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ._credential import Credential

__all__ = [
    "SQL_COPT_SS_ACCESS_TOKEN",
    "SQL_SCOPE",
    "PackedToken",
    "async_odbc_attrs",
    "odbc_attrs",
    "pack_token",
    "scope_for_server",
]

SQL_COPT_SS_ACCESS_TOKEN: Final = 1256
"""The ODBC driver's pre-connect attribute for an access token (msodbcsql.h)."""

# A compact JWS, as Entra ID issues access tokens: three base64url parts, none empty.
_JWT = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
# Shorter tokens crashed the driver in microsoft/mssql-python#278; no Entra token is near it.
_SHORTEST = 32
_PROTOCOLS = ("tcp:", "np:", "lpc:", "admin:")

# odbc_attrs() is a function called per connection: nothing of the caller's holds the
# cache of a credential it passes, and the registry holds those weakly, so each call
# would make a new cache and ask the credential again. The caches used last are held
# here; a bounded number, so a credential made per connection (a mistake) leaks nothing.
_HELD = 16
_RECENT: OrderedDict[int, TokenCache] = OrderedDict()
_RECENT_LOCK = fork_safe_lock()


class PackedToken(bytes):
    """The `ACCESSTOKEN` struct (`bytes`, as pyodbc and mssql-python take it) whose repr
    shows the token's fingerprint only: connect arguments end up in tracebacks' locals."""

    __slots__ = ()

    def __repr__(self) -> str:
        token = self[4:].decode("utf-16-le", "replace")
        return f"<PackedToken of token {fingerprint(token)}: {len(self)} bytes>"

    __str__ = __repr__


def _problem(token: str) -> str | None:
    """What makes `token` unfit for the driver (text without the token), or None."""
    if not token.isascii() or not token.isprintable() or " " in token:
        return "holds characters other than visible ASCII"
    if len(token) < _SHORTEST:
        return f"is {len(token)} characters long, too short to be an access token"
    if not _JWT.fullmatch(token):
        return "is not a JWT (three base64url parts separated by dots)"
    head = token.split(".", 1)[0]
    try:
        header = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    except (ValueError, binascii.Error):
        header = None
    if not isinstance(header, dict):
        return "is not a JWT (its header is not a JSON object)"
    return None


def pack_token(token: str) -> PackedToken:
    """`token` as `SQL_COPT_SS_ACCESS_TOKEN` takes it: its UTF-16-LE byte length (4 bytes,
    little-endian), then the token encoded UTF-16-LE.

    `InvalidTokenError` (never showing the token) for anything but an access token of
    visible ASCII in JWT form: other bytes can crash the ODBC driver, not fail the login.
    """
    if not isinstance(token, str):
        raise ConfigurationTypeError(f"pack_token() takes the access token as str, not {type(token).__name__}")
    problem = _problem(token)
    if problem is not None:
        del token  # no token in the raising frame's locals (error trackers render them)
        raise InvalidTokenError(
            f"the access token {problem}: not handed to the ODBC driver (it can crash on such data)"
        )
    encoded = token.encode("utf-16-le")
    return PackedToken(struct.pack("<I", len(encoded)) + encoded)


def scope_for_server(server: str) -> str:
    """The database scope of `server`'s cloud: `server` as ODBC's `Server=` takes it
    (`tcp:<name>.database.usgovcloudapi.net,1433`, `<name>.database.windows.net`), or as
    `host:port`. A host no rule knows (an alias, an on-premises server) gets `SQL_SCOPE`,
    unless it is under a sovereign cloud's domain (`*.usgovcloudapi.net`, `*.chinacloudapi.cn`,
    ...): that is refused (`ConfigurationError` naming `scopes=`), never given the public scope."""
    host = _host(server)
    scope = scope_for_host(host, "sql")
    if scope is not None:
        return scope
    cloud = sovereign_cloud(host)
    if cloud is not None:
        known = next(rule.scope for rule in RULES if rule.service == "sql" and rule.cloud == cloud)
        raise ConfigurationError(
            f"server {host!r} is in {cloud}, but not an Azure SQL host this package knows the scope of; "
            f"pass scopes= (for an Azure SQL server of {cloud}: scopes={known!r})"
        )
    return SERVICES["sql"]


def _host(server: object) -> str:
    if not isinstance(server, str):
        raise ConfigurationTypeError(f"server must be a str such as 'myserver.database.windows.net', not {server!r}")
    text = server.strip()
    if "://" in text:
        raise ConfigurationError(
            f"server={server!r} is a URL; give the ODBC Server value, such as 'tcp:myserver.database.windows.net,1433'"
        )
    if text.lower().startswith(_PROTOCOLS):
        text = text.split(":", 1)[1]
    text = text.split(",", 1)[0].split("\\", 1)[0].strip()
    if text.startswith("["):  # an IPv6 address, maybe with :port after it
        host = text[1:].split("]", 1)[0]
    elif text.count(":") == 1:  # host:port (a URL's or JDBC's habit); more colons: a bare IPv6 address
        host, port = text.split(":")
        if not port.isdigit():
            raise ConfigurationError(f"server={server!r}: the port after ':' is not a number")
    else:
        host = text
    host = host.strip()
    if not host:
        raise ConfigurationError(f"server={server!r} names no host, such as 'myserver.database.windows.net'")
    return host


def _cache(
    credential: Any,
    scopes: str | Sequence[str] | None,
    server: str | None,
    options: CacheOptions,
    caller: str,
    *,
    sync: bool,
) -> TokenCache:
    credential, wanted = unwrap(credential, options, caller)
    inner = credential.credential if isinstance(credential, TokenCache) else credential
    if sync and inner is not None and is_async_credential(inner):
        raise ConfigurationTypeError(
            f"{caller}() needs a sync credential: {type(inner).__name__} is async; use "
            f"{sync_credential_name(inner)}, or await async_odbc_attrs(...)"
        )
    if scopes is None:
        scopes = scope_for_server(server) if server is not None else SQL_SCOPE
    else:
        foreign = foreign_scope(scopes, "sql")
        if foreign is not None:
            raise ConfigurationError(
                f"{caller}(scopes={foreign[0]!r}): that scope is for {foreign[1]}, not Azure SQL; leave scopes out "
                f"(the server's cloud's, default {SQL_SCOPE!r})"
            )
    if isinstance(credential, TokenCache):  # shared: it must hold these scopes (resolve_cache refuses otherwise)
        return resolve_cache(credential, scopes, wanted, caller)  # type: ignore[arg-type]
    cache = resolve_cache(credential, scopes, wanted, caller)  # type: ignore[arg-type]
    with _RECENT_LOCK:
        _RECENT[id(cache)] = cache
        _RECENT.move_to_end(id(cache))
        while len(_RECENT) > _HELD:
            _RECENT.popitem(last=False)
    return cache


def _attrs(cache: TokenCache, token: str) -> dict[int, bytes]:
    try:
        return {SQL_COPT_SS_ACCESS_TOKEN: pack_token(token)}
    except InvalidTokenError as error:
        del token  # no token in the raising frame's locals
        source = type(cache.credential).__name__
        raise InvalidTokenError(f"{source} gave a token for {list(cache.scopes)} that {error}") from None


def odbc_attrs(
    credential: Credential | TokenCache | None = None,
    scopes: str | Sequence[str] | None = None,
    *,
    server: str | None = None,
    **options: Unpack[CacheOptions],
) -> dict[int, bytes]:
    """`{SQL_COPT_SS_ACCESS_TOKEN: <packed token>}` for pyodbc's (or mssql-python's)
    `attrs_before=`: a valid token from the shared cache, packed. Call it for each new
    connection: SQL Server checks the token only when a connection logs in.

    - `credential`: a sync azure-core credential, a `CachedCredential` (its caches), a
      `TokenCache` holding the scope below (another is a `ConfigurationError`), or None for
      the process's `DefaultAzureCredential`. An async one is refused naming its sync
      counterpart (`async_odbc_attrs` takes either).
    - `server`: the server as ODBC's `Server=` names it; the scope follows its cloud
      (`scope_for_server`). `scopes` overrides (another service's is refused); with neither,
      `SQL_SCOPE`.
    - keyword options: the cache's (`CacheOptions`).
    """
    cache = _cache(credential, scopes, server, options, "odbc_attrs", sync=True)
    return _attrs(cache, cache.get_token())


async def async_odbc_attrs(
    credential: Credential | TokenCache | None = None,
    scopes: str | Sequence[str] | None = None,
    *,
    server: str | None = None,
    **options: Unpack[CacheOptions],
) -> dict[int, bytes]:
    """`odbc_attrs` for coroutines (an `async_creator` for SQLAlchemy's async engines, or
    aioodbc): never blocks the event loop. Takes sync or async credentials."""
    cache = _cache(credential, scopes, server, options, "async_odbc_attrs", sync=False)
    return _attrs(cache, await cache.get_token_async())
