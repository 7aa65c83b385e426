"""`azure_ad_token_auth.sql`: the packed access token against the ODBC driver's spec, the
scope by server, and `odbc_attrs` over the shared caches. (No SQL Server runs here: what
the driver does with the struct is not tested; see docs/sql.md.)"""

from __future__ import annotations

import asyncio
import gc
import re
import struct
import subprocess
import sys
import traceback
import weakref
from typing import Any

import azure.identity.aio
import pytest
from azure.core.credentials import AccessTokenInfo

from azure_ad_token_auth import (
    AsyncCachedCredential,
    CachedCredential,
    ConfigurationError,
    InvalidTokenError,
    TokenCache,
    UsageError,
)
from azure_ad_token_auth.sql import (
    SQL_COPT_SS_ACCESS_TOKEN,
    SQL_SCOPE,
    PackedToken,
    async_odbc_attrs,
    odbc_attrs,
    pack_token,
    scope_for_server,
)
from azure_ad_token_auth.testing import AsyncFakeCredential, FakeCredential, TokenRegistry
from conftest import assert_no_token_in

REDIS = "https://redis.azure.com/.default"

GOVERNMENT = "https://database.usgovcloudapi.net/.default"
CHINA = "https://database.chinacloudapi.cn/.default"


class Scoped(FakeCredential):
    """Records the scopes each call asked for."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(registry=TokenRegistry(), **kwargs)
        self.scopes: list[tuple[str, ...]] = []

    def get_token_info(self, *scopes: str, options: Any = None) -> AccessTokenInfo:
        self.scopes.append(scopes)
        return super().get_token_info(*scopes, options=options)


@pytest.fixture
def jwt() -> str:
    return TokenRegistry().issue(3600)[0]


def test_the_packed_token_is_its_utf16le_byte_length_then_the_token_utf16le(jwt: str) -> None:
    packed = pack_token(jwt)
    # The ODBC driver's ACCESSTOKEN: a little-endian DWORD byte count, then the UTF-16-LE
    # characters; for ASCII each character is its byte followed by a zero byte.
    expected_body = b"".join(bytes((ord(c), 0)) for c in jwt)
    assert bytes(packed) == struct.pack("<I", 2 * len(jwt)) + expected_body
    assert int.from_bytes(packed[:4], "little") == len(packed) - 4 == 2 * len(jwt)
    assert type(packed) is PackedToken and isinstance(packed, bytes)


def test_the_packed_token_never_shows_the_token(jwt: str) -> None:
    attrs = {SQL_COPT_SS_ACCESS_TOKEN: pack_token(jwt)}
    shown = repr(attrs) + str(attrs[SQL_COPT_SS_ACCESS_TOKEN]) + f"{attrs}"
    assert "PackedToken of token" in shown and str(2 * len(jwt) + 4) in shown
    assert_no_token_in(shown, [jwt, jwt[:20]])
    assert jwt.encode("utf-16-le")[:40] not in shown.encode()


@pytest.mark.parametrize(
    ("token", "message"),
    [
        ("", "too short"),
        ("a.b.c", "too short"),
        ("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.c2lnbmF0dXJlLXBhcnQ-tokén", "other than visible ASCII"),
        ("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.c2lnbmF0dXJlLXBhcnQ\n", "other than visible ASCII"),
        ("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.c2lnbmF0dXJl\x00LXBhcnQ", "other than visible ASCII"),
        ("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0 c2lnbmF0dXJlLXBhcnQ", "other than visible ASCII"),
        ("eyJhbGciOiJub25lIn0eyJzdWIiOiJ4In0c2lnbmF0dXJlLXBhcnQ", "is not a JWT"),
        ("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.", "is not a JWT"),
        ("bm90IGpzb24gYXQgYWxs.eyJzdWIiOiJ4In0.c2lnbmF0dXJlLXBhcnQ", "header is not a JSON object"),
        ("WzEsMiwzXQ.eyJzdWIiOiJ4In0.c2lnbmF0dXJlLXBhcnQtbG9uZw", "header is not a JSON object"),
    ],
)
def test_anything_but_a_jwt_of_visible_ascii_is_refused_before_the_driver(token: str, message: str) -> None:
    with pytest.raises(InvalidTokenError, match=message) as info:
        pack_token(token)
    assert info.value.__traceback__ is not None
    below_the_test = info.value.__traceback__.tb_next  # the test's own frame holds `token`, of course
    rendered = "".join(
        traceback.TracebackException(type(info.value), info.value, below_the_test, capture_locals=True).format()
    )
    assert "pack_token" in rendered
    if token:
        assert token not in rendered  # not in the message, nor in any frame's locals


def test_pack_token_takes_a_str_only(jwt: str) -> None:
    with pytest.raises(TypeError, match="takes the access token as str, not bytes"):
        pack_token(jwt.encode())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("server", "scope"),
    [
        ("myserver.database.windows.net", SQL_SCOPE),
        ("tcp:myserver.database.windows.net,1433", SQL_SCOPE),
        ("TCP:MyServer.Database.UsGovCloudApi.Net,1433", GOVERNMENT),
        ("myserver.database.chinacloudapi.cn\\instance", CHINA),
        (" np:myserver.database.usgovcloudapi.net ", GOVERNMENT),
        ("10.0.0.5,1433", SQL_SCOPE),  # a host no rule knows: the public cloud's scope
        ("[::1],1433", SQL_SCOPE),
        ("sql.contoso.internal", SQL_SCOPE),
        ("x.database.usgovcloudapi.net:1433", GOVERNMENT),  # host:port, a URL's or JDBC's habit
        ("tcp:x.database.chinacloudapi.cn:1433", CHINA),
        ("[::1]:1433", SQL_SCOPE),
        ("::1", SQL_SCOPE),
    ],
)
def test_the_scope_follows_the_servers_cloud(server: str, scope: str) -> None:
    assert scope_for_server(server) == scope


@pytest.mark.parametrize(
    ("server", "error", "message"),
    [
        ("https://myserver.database.windows.net", ConfigurationError, "is a URL; give the ODBC Server value"),
        ("tcp:,1433", ConfigurationError, "names no host"),
        (b"myserver.database.windows.net", TypeError, "server must be a str"),
        ("myserver.database.windows.net:sql", ConfigurationError, "the port after ':' is not a number"),
    ],
)
def test_a_server_that_names_no_host_is_refused(server: Any, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        scope_for_server(server)
    with pytest.raises(error, match=message):
        odbc_attrs(FakeCredential(), server=server)


@pytest.mark.parametrize(
    ("server", "cloud", "scope"),
    [
        ("ws.sql.azuresynapse.usgovcloudapi.net", "Azure Government", GOVERNMENT),  # Synapse: no documented rule
        ("tcp:ws.sql.azuresynapse.usgovcloudapi.net:1433", "Azure Government", GOVERNMENT),
        ("sqlvm.chinacloudapp.cn,1433", "Azure China", CHINA),  # SQL Server on a VM
        ("ws.sql.azuresynapse.azure.cn", "Azure China", CHINA),
    ],
)
def test_a_sovereign_cloud_host_no_rule_knows_is_refused_never_given_the_public_scope(
    server: str, cloud: str, scope: str
) -> None:
    message = rf"is in {cloud}, but not an Azure SQL host .* pass scopes= \(.*scopes='{re.escape(scope)}'\)"
    with pytest.raises(ConfigurationError, match=message):
        scope_for_server(server)
    fake = Scoped()
    with pytest.raises(ConfigurationError, match=message):
        odbc_attrs(fake, server=server)
    assert fake.scopes == []  # nothing asked
    odbc_attrs(fake, scope, server=server)  # scopes= given: that scope, no guess needed
    assert fake.scopes == [(scope,)]


def test_odbc_attrs_packs_the_cached_token_for_the_servers_cloud() -> None:
    fake = Scoped()
    attrs = odbc_attrs(fake, server="tcp:myserver.database.usgovcloudapi.net,1433")
    assert list(attrs) == [1256] and attrs[1256] == pack_token(fake.tokens[0])
    for _ in range(100):  # a connection each: one credential call for all
        assert odbc_attrs(fake, server="myserver.database.usgovcloudapi.net") == attrs
    assert fake.scopes == [(GOVERNMENT,)]
    odbc_attrs(fake)  # neither server nor scopes: the public cloud's
    odbc_attrs(fake, "https://database.windows.net//.default")  # scopes win
    assert fake.scopes == [(GOVERNMENT,), (SQL_SCOPE,), ("https://database.windows.net//.default",)]


def test_odbc_attrs_shares_the_caches_of_cached_credential_and_the_adapters() -> None:
    fake = Scoped()
    credential = CachedCredential(fake)
    token = credential.get_token(SQL_SCOPE).token
    assert odbc_attrs(fake)[1256] == odbc_attrs(credential)[1256] == pack_token(token)
    assert odbc_attrs(TokenCache(Scoped(), SQL_SCOPE), server="x.database.windows.net")[1256] != pack_token(token)
    assert fake.calls == 1


def test_odbc_attrs_on_a_token_cache_of_another_scope_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="differ from the shared TokenCache"):
        odbc_attrs(TokenCache(Scoped(), SQL_SCOPE), server="x.database.usgovcloudapi.net")
    openai = Scoped()
    for call in (
        lambda: odbc_attrs(TokenCache(openai, "https://cognitiveservices.azure.com/.default")),  # no server: SQL_SCOPE
        lambda: asyncio.run(async_odbc_attrs(TokenCache(openai, "https://redis.azure.com/.default"))),
    ):
        with pytest.raises(ConfigurationError, match="differ from the shared TokenCache"):
            call()
    for scope, service in (("https://ossrdbms-aad.database.windows.net/.default", "postgres"), (REDIS, "redis")):
        with pytest.raises(ConfigurationError, match=f"that scope is for {service}, not Azure SQL"):
            odbc_attrs(openai, scope)
    assert openai.calls == 0  # refused when called, before the credential
    assert odbc_attrs(TokenCache(openai, SQL_SCOPE))[1256] == pack_token(openai.tokens[0])  # its own scope: served


def test_misuse_of_odbc_attrs_is_refused_naming_the_fix() -> None:
    with pytest.raises(UsageError, match=r"odbc_attrs\(\) got an unexpected keyword argument 'servr'"):
        odbc_attrs(Scoped(), servr="x")  # type: ignore[call-arg]
    for wrapped in (TokenCache(AsyncFakeCredential()), AsyncCachedCredential(AsyncFakeCredential())):
        with pytest.raises(TypeError, match="AsyncFakeCredential is async"):
            odbc_attrs(wrapped)
    with pytest.raises(UsageError, match="give them to the one you pass"):
        odbc_attrs(CachedCredential(Scoped()), timeout=5)
    pytest.importorskip("aiohttp")  # azure.identity.aio's credentials are made with its transport
    with pytest.raises(TypeError, match=r"use azure\.identity\.ManagedIdentityCredential, or await async_odbc_attrs"):
        odbc_attrs(azure.identity.aio.ManagedIdentityCredential())


def test_a_token_that_is_no_jwt_is_refused_naming_the_credential_not_the_token() -> None:
    fake = FakeCredential()  # opaque tokens: "fake-1-..."
    with pytest.raises(InvalidTokenError, match=r"^FakeCredential gave a token for \['https://database") as info:
        odbc_attrs(fake)
    assert_no_token_in(str(info.value), fake.tokens)


async def test_async_odbc_attrs_takes_async_and_sync_credentials_and_never_blocks_the_loop() -> None:
    registry = TokenRegistry()
    aio = AsyncFakeCredential(registry=registry)
    assert (await async_odbc_attrs(aio, server="x.database.windows.net"))[1256] == pack_token(aio.tokens[0])
    slow = FakeCredential(registry=registry, delay=0.3)
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while slow.calls == 0 or not slow.tokens:
            ticks += 1
            await asyncio.sleep(0.01)

    attrs, _ = await asyncio.gather(async_odbc_attrs(slow), tick())
    assert attrs[1256] == pack_token(slow.tokens[0]) and ticks >= 10  # the loop ran meanwhile


def test_a_credential_made_per_connection_is_not_kept_alive_for_ever() -> None:
    first = Scoped()
    odbc_attrs(first)
    alive = weakref.ref(first)
    del first
    for _ in range(16):  # the caches of the 16 credentials used last are held, no more
        odbc_attrs(Scoped())
    gc.collect()
    assert alive() is None


def test_the_module_needs_neither_pyodbc_nor_mssql_python() -> None:
    code = (
        "import sys\n"
        "sys.modules['pyodbc'] = sys.modules['mssql_python'] = None  # importing either raises\n"
        "from azure_ad_token_auth.sql import odbc_attrs\n"
        "from azure_ad_token_auth.testing import FakeCredential, TokenRegistry\n"
        "print(sorted(odbc_attrs(FakeCredential(registry=TokenRegistry()))))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout) == (0, "[1256]\n"), result.stderr
