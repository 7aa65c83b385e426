"""Which caches share a token through the store: a key from what the library knows itself.

No credential's private state is read (a renamed attribute would give two identities one
key): the default credential the library makes (`credential=None`) shares by what it
reads from the environment; a credential passed in shares only under
`shared_cache_identity=`; and a process never takes a stored token issued to another
identity than the one its own credential's tokens name.
"""

from __future__ import annotations

import fcntl
import importlib.metadata
import json
import logging
import os
import socket
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from azure.core.credentials import AccessTokenInfo

from azure_ad_token_auth import DEFAULT_SCOPE, TokenCache
from azure_ad_token_auth._store import StoreKey, TokenStore
from azure_ad_token_auth._store._identity import DefaultIdentity, keyed_hash
from azure_ad_token_auth._store._names import lock_name
from azure_ad_token_auth.testing import (
    FakeAzureCli,
    FakeCredential,
    ImdsEndpoint,
    ManagedIdentityEndpoint,
    TokenRegistry,
    patched_environ,
)
from conftest import join_renewals


def _store_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "shared token" in r.getMessage()]


# -- the default credential the library makes shares by itself ------------------------------


def test_the_default_credential_shares_without_a_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each cache makes its own `DefaultAzureCredential()`: one request to the identity
    endpoint for both. A process whose environment names another identity (a user-assigned
    managed identity's client id) gets a key, and a token, of its own."""
    with ManagedIdentityEndpoint() as endpoint, endpoint.patched_env():
        first, second = TokenCache(shared_cache=tmp_path / "s"), TokenCache(shared_cache=tmp_path / "s")
        token = first.get_token()
        assert second.get_token() == token and endpoint.calls == 1
        monkeypatch.setenv("AZURE_CLIENT_ID", "another-app")
        assert TokenCache(shared_cache=tmp_path / "s").get_token() != token
        assert [r["query"].get("client_id") for r in endpoint.requests] == [None, "another-app"]


@pytest.fixture
def bare_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Callable[[], str]:
    """No identity variable from the machine; the default credential's key, as a function."""
    for name in list(os.environ):
        if name.startswith(("AZURE_", "IDENTITY_", "MSI_", "IMDS_", "AZD_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return lambda: StoreKey(["s"], None, False, DefaultIdentity().parts(SALT)).digest


SALT = bytes(range(32))  # a store's salt (random in a real one)
CHOICE = "AZURE_TOKEN_CREDENTIALS"  # which of DefaultAzureCredential's credentials answers


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("AZURE_CLIENT_ID", "app"),
        ("AZURE_TENANT_ID", "contoso"),
        ("AZURE_USERNAME", "alice@contoso.test"),
        ("AZURE_FEDERATED_TOKEN_FILE", "/var/run/secrets/token"),
        ("AZURE_TOKEN_CREDENTIALS", "dev"),
        ("IDENTITY_ENDPOINT", "http://127.0.0.1:9/msi"),
        ("AZURE_CONFIG_DIR", "/home/a/.azure"),
        ("AZD_CONFIG_DIR", "/home/a/.azd"),
        ("HOME", "/home/b"),  # PowerShell's, VS Code's and the shared MSAL cache's sign-in live under it
    ],
)
def test_the_default_credentials_key_follows_what_it_reads(
    bare_environment: Callable[[], str], monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    key = bare_environment
    before = key()
    assert key() == before
    monkeypatch.setenv(name, value)
    assert key() != before


def test_a_secret_chooses_the_credential_but_its_value_stays_out_of_the_key(
    bare_environment: Callable[[], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    key = bare_environment
    without = key()
    monkeypatch.setenv("AZURE_CLIENT_SECRET", "first-secret")
    with_secret = key()
    monkeypatch.setenv("AZURE_CLIENT_SECRET", "rotated-secret")
    assert without != with_secret == key()
    assert "rotated-secret" not in json.dumps(StoreKey(["s"], None, False, DefaultIdentity().parts(SALT)).parts)
    # A name replaces the environment altogether.
    named = StoreKey(["s"], None, False, "orders-app").digest
    monkeypatch.setenv("AZURE_CLIENT_ID", "x")
    assert StoreKey(["s"], None, False, "orders-app").digest == named


@pytest.mark.parametrize(
    "path",
    [
        ".azure/azureProfile.json",  # az login, az account set
        ".azure/clouds.config",
        ".azure/config",  # az cloud set
        ".azd/auth.json",  # azd auth login
        ".azd/config.json",
        ".Azure/AzureRmContext.json",  # Connect-AzAccount, Set-AzContext
        ".azure/ms-azuretools.vscode-azureresourcegroups/authRecord.json",  # VS Code's Azure sign-in
        ".Azure/ms-azuretools.vscode-azureresourcegroups/authRecord.json",
        ".IdentityService/msal.cache",  # the shared MSAL cache's accounts
        ".IdentityService/msal.cache.nocae",
        ".IdentityService/msal.cache.cae",
    ],
)
def test_the_default_credentials_key_follows_who_is_signed_in_to_each_developer_tool(
    bare_environment: Callable[[], str], tmp_path: Path, path: str
) -> None:
    """Each file a developer tool of the chain keeps its signed-in account in: the key follows
    its content (the same content rewritten is the same key), which is never written as is."""
    key = bare_environment
    signed_out = key()
    account = tmp_path / "home" / path
    account.parent.mkdir(parents=True, exist_ok=True)
    account.write_text('{"user": "alice@contoso.test"}')
    alice = key()
    account.write_text('{"user": "alice@contoso.test"}')
    assert signed_out != alice == key()
    account.write_text('{"user": "bob@fabrikam.test"}')
    assert key() not in (signed_out, alice)
    assert "fabrikam" not in json.dumps(DefaultIdentity().parts(SALT))


def test_sign_in_files_are_read_where_the_tools_keep_them_without_ever_blocking(
    bare_environment: Callable[[], str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`AZURE_CONFIG_DIR` moves the CLI's profile; a large file is known by its inode, size and
    modification time; a FIFO where a file belongs is named, never opened in a way that waits."""
    key = bare_environment
    monkeypatch.setenv("AZURE_CONFIG_DIR", str(tmp_path / "az"))
    (tmp_path / "az").mkdir()
    before = key()
    (tmp_path / "home" / ".azure").mkdir(parents=True)
    (tmp_path / "home" / ".azure" / "azureProfile.json").write_text("{}")
    assert key() == before  # not where this CLI looks
    profile = tmp_path / "az" / "azureProfile.json"
    profile.write_bytes(b" " * 300_000)
    large = key()
    assert large != before
    os.utime(profile, ns=(1, 1))
    assert key() != large
    profile.unlink()
    os.mkfifo(profile)
    assert key() not in (before, large)  # answered at once: the FIFO was not waited on


@pytest.mark.parametrize("name", ["IDENTITY_HEADER", "MSI_SECRET"])
def test_a_managed_identity_secret_chooses_the_identity_by_its_value_keyed_by_the_store_s_salt(
    bare_environment: Callable[[], str], monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """Each value its own key, and the key holds an HMAC keyed by the store's salt, never the
    value: another salt (another store, or another user who cannot read this one's) gives
    another hash, so the hash cannot be computed or tested without the salt."""
    key = bare_environment
    monkeypatch.setenv(name, "secret-of-app-a")
    app_a = key()
    assert key() == app_a
    monkeypatch.setenv(name, "secret-of-app-b")
    assert key() != app_a
    parts = json.dumps(StoreKey(["s"], None, False, DefaultIdentity().parts(SALT)).parts)
    assert "secret-of-app" not in parts
    assert keyed_hash(SALT, "secret-of-app-b") in parts
    assert keyed_hash(bytes(32), "secret-of-app-b") not in parts


def test_processes_an_identity_endpoint_answers_by_their_secret_each_get_their_own_token(tmp_path: Path) -> None:
    """Service Fabric's token service: one `IDENTITY_ENDPOINT` per node, and the secret each
    application sends (`IDENTITY_HEADER`) chooses its identity. The key held only whether the
    secret was set: the second application's processes got the first one's token from the
    store and never asked the endpoint. The secret is written nowhere in the store."""
    store = tmp_path / "s"
    with ManagedIdentityEndpoint(secret="secret-of-app-a") as endpoint:
        with endpoint.patched_env():
            app_a = TokenCache(shared_cache=store).get_token()
        endpoint.secret = "secret-of-app-b"  # the endpoint now answers app B (the stand-in knows one secret)
        with endpoint.patched_env():
            app_b = TokenCache(shared_cache=store).get_token()
            assert TokenCache(shared_cache=store).get_token() == app_b  # app B's processes share
    assert app_b != app_a and endpoint.calls == 2
    join_renewals()
    for path in store.iterdir():
        assert b"secret-of-app" not in path.read_bytes(), path.name
    salt = store / "aadta-salt"
    assert stat.S_IMODE(salt.stat().st_mode) == 0o600 and len(salt.read_bytes()) == 32


def test_another_host_gets_its_own_key_and_its_machine_id_is_never_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A `shared_cache` directory on a network filesystem, seen by two VMs whose
    system-assigned identities (IMDS) differ: nothing in their environment tells them apart,
    so the key holds the host (machine id and host name, as a keyed hash). Here the second
    host is this one under another host name."""
    store = tmp_path / "s"
    with ImdsEndpoint() as imds, imds.patched_env():
        first_vm = TokenCache(shared_cache=store).get_token()
        assert TokenCache(shared_cache=store).get_token() == first_vm  # one host's processes share
        monkeypatch.setattr(socket, "gethostname", lambda: "another-vm")
        assert TokenCache(shared_cache=store).get_token() != first_vm
    assert imds.calls == 2
    join_renewals()
    written = b"".join(path.read_bytes() for path in store.iterdir())
    machine_id = Path("/etc/machine-id").read_bytes().strip() if Path("/etc/machine-id").is_file() else b""
    assert b"another-vm" not in written and (not machine_id or machine_id not in written)


@pytest.mark.skipif(
    tuple(int(part) for part in importlib.metadata.version("azure-identity").split(".")[:2]) < (1, 24),
    reason="DefaultAzureCredential honours AZURE_TOKEN_CREDENTIALS=<credential> from azure-identity 1.24: "
    "before, it asks the IMDS endpoint first",
)
def test_after_az_login_as_another_account_processes_get_that_account_s_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The key held the CLI's configuration directory's path, not who is signed in there:
    after `az login` as another account (or `az account set` to another tenant) a new
    process was served the previous account's token without running `az`. The real
    `DefaultAzureCredential` (its CLI credential) and a fake `az`."""
    home = tmp_path / "home"
    profile = home / ".azure" / "azureProfile.json"
    profile.parent.mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("AZURE_CONFIG_DIR", raising=False)
    store = tmp_path / "s"

    def az_login(user: str, tenant: str) -> None:  # what `az login` writes, in short
        subscription = {"id": "sub-1", "tenantId": tenant, "isDefault": True, "user": {"name": user, "type": "user"}}
        profile.write_text(json.dumps({"subscriptions": [subscription]}))

    with FakeAzureCli(tenant="tenant-of-alice") as az, patched_environ(az.env(), {CHOICE: "AzureCliCredential"}):
        az_login("alice@contoso.test", "tenant-of-alice")
        first_process = TokenCache(shared_cache=store)
        alice = first_process.get_token()
        az.tenant = "tenant-of-bob"  # the fake az answers for bob from now on
        az_login("bob@fabrikam.test", "tenant-of-bob")
        bob = TokenCache(shared_cache=store).get_token()
        assert bob != alice and az.calls == 2
        assert TokenCache(shared_cache=store).get_token() == bob and az.calls == 2  # bob's processes share
        # The process that began as alice renews under bob's key (its credential runs az as
        # bob now): it takes bob's stored token, and says nothing of another identity.
        with caplog.at_level(logging.WARNING):
            assert first_process.invalidate(alice)
            assert first_process.get_token() == bob and az.calls == 2
    assert _store_warnings(caplog) == []


@pytest.mark.parametrize("size", [0, 16, 33])
def test_a_salt_the_store_did_not_make_turns_the_store_off_for_the_default_credential(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, size: int
) -> None:
    """A salt file of another size (truncated, or not the store's) is not used: its keys would
    not be the ones the other processes compute. One WARNING naming the file, per-process
    tokens, and the request succeeds; a named identity, which needs no salt, still shares."""
    store = tmp_path / "s"
    TokenStore(store).handle()
    (store / "aadta-salt").write_bytes(b"x" * size)
    (store / "aadta-salt").chmod(0o600)
    with ManagedIdentityEndpoint() as endpoint, endpoint.patched_env(), caplog.at_level(logging.WARNING):
        first, second = TokenCache(shared_cache=store), TokenCache(shared_cache=store)
        assert first.get_token() != second.get_token() and endpoint.calls == 2
    warnings = _store_warnings(caplog)
    assert len(warnings) == 2 and all("aadta-salt" in w and "remove it" in w for w in warnings)
    named = FakeCredential()
    TokenCache(FakeCredential(), shared_cache=store, shared_cache_identity="app").get_token()
    TokenCache(named, shared_cache=store, shared_cache_identity="app").get_token()
    assert named.calls == 0


# -- a credential passed in shares only under a name -----------------------------------------


def _passed_in() -> list[Callable[[], object]]:
    import azure.identity
    import azure.identity.aio

    return [
        FakeCredential,
        azure.identity.DefaultAzureCredential,  # made by the caller: its arguments are unknown
        lambda: azure.identity.ManagedIdentityCredential(client_id="app-a"),
        lambda: azure.identity.ClientSecretCredential("t", "app", "secret"),
        lambda: azure.identity.OnBehalfOfCredential("t", "app", client_secret="s", user_assertion="user-a.jwt"),
        azure.identity.AzureCliCredential,
        lambda: azure.identity.aio.ManagedIdentityCredential(client_id="app-a"),
    ]


@pytest.mark.parametrize(
    "make", range(7), ids=["own-class", "default", "managed", "secret", "on-behalf-of", "cli", "async-managed"]
)
def test_a_credential_passed_in_does_not_share_without_a_name(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch, make: int
) -> None:
    """Which identity a credential the caller made answers for can only be read from its
    private state: main did (so a renamed attribute would have given two identities one
    key). It keeps a per-process cache, with one WARNING naming the fix."""
    monkeypatch.setenv("IDENTITY_ENDPOINT", "http://127.0.0.1:9/msi")  # nothing is asked: a credential made
    monkeypatch.setenv("IDENTITY_HEADER", "h")
    if make == 6:
        pytest.importorskip("aiohttp", reason="azure.identity.aio's managed identity needs aiohttp's transport")
    credential = _passed_in()[make]()
    with caplog.at_level(logging.WARNING):
        TokenCache(credential, shared_cache=tmp_path / "s")  # type: ignore[arg-type]
    (warning,) = _store_warnings(caplog)
    assert type(credential).__name__ in warning and "shared_cache_identity=" in warning


def test_caches_on_credentials_passed_in_keep_their_own_tokens_one_warning_each(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first, second = FakeCredential(), FakeCredential()
    with caplog.at_level(logging.WARNING):
        a = TokenCache(first, shared_cache=tmp_path / "s")
        b = TokenCache(second, shared_cache=tmp_path / "s")
        a.invalidate(a.get_token())
        a.get_token()
        b.get_token()
    assert (first.calls, second.calls) == (2, 1)
    assert not (tmp_path / "s").exists()
    assert len(_store_warnings(caplog)) == 2  # one per cache


def test_named_identity_shares_whatever_the_credential(tmp_path: Path) -> None:
    first, second = FakeCredential(), FakeCredential()
    token = TokenCache(first, shared_cache=tmp_path / "s", shared_cache_identity="app").get_token()
    assert TokenCache(second, shared_cache=tmp_path / "s", shared_cache_identity="app").get_token() == token
    assert second.calls == 0


@pytest.mark.parametrize("name", ["", " ", "\t\n"], ids=["empty", "space", "whitespace"])
def test_a_name_that_names_nothing_is_refused_at_construction(tmp_path: Path, name: str) -> None:
    """`shared_cache_identity=os.environ.get("APP_IDENTITY", "")` with the variable unset:
    accepted, every credential given it shared one key, and a cache with no token of its own
    yet was served another identity's token."""
    from azure_ad_token_auth import AzureADTokenAuth, ConfigurationError

    credential = FakeCredential()
    for make in (TokenCache, AzureADTokenAuth):
        with pytest.raises(ConfigurationError, match="shared_cache_identity=") as info:
            make(credential, shared_cache=tmp_path / "s", shared_cache_identity=name)
        assert "client id" in str(info.value) and "leave it out" in str(info.value)
    assert credential.calls == 0 and not (tmp_path / "s").exists()


def test_two_user_assigned_identities_share_each_under_its_own_name(tmp_path: Path) -> None:
    from azure.identity import ManagedIdentityCredential

    def cache(client_id: str) -> TokenCache:
        credential = ManagedIdentityCredential(client_id=client_id)
        return TokenCache(credential, shared_cache=tmp_path / "s", shared_cache_identity=client_id)

    with ManagedIdentityEndpoint() as endpoint, endpoint.patched_env():
        a, again, b = cache("app-a").get_token(), cache("app-a").get_token(), cache("app-b").get_token()
        asked_for = [r["query"].get("client_id") for r in endpoint.requests]
    assert a == again != b and asked_for == ["app-a", "app-b"]


# -- a stored token issued to another identity is refused ---------------------------------------


def _issued_to(subject: str) -> tuple[FakeCredential, list[str]]:
    """A credential whose JWT-shaped tokens name `subject` as their object id (`oid`)."""
    registry, tokens = TokenRegistry(), []

    def answer() -> AccessTokenInfo:
        token, expires_on = registry.issue(3600, subject=subject)
        tokens.append(token)
        return AccessTokenInfo(token, expires_on)

    return FakeCredential(result=answer), tokens


def test_a_stored_token_issued_to_another_identity_is_never_taken_once_this_process_has_its_own(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """One name given to two identities (a slip the key cannot see): a process that has a
    token of its own credential's compares the identity claims (tenant, object, app) of a
    stored one with its own, refuses another identity's, stops sharing with one WARNING,
    and never writes its own token where the other identity's processes would take it."""
    store = tmp_path / "s"
    alice_credential, alice_tokens = _issued_to("alice")
    bob_credential, bob_tokens = _issued_to("bob")
    alice = TokenCache(alice_credential, shared_cache=store, shared_cache_identity="app", timeout=0.4)
    bob = TokenCache(bob_credential, shared_cache=store, shared_cache_identity="app", timeout=0.4)
    TokenStore(store).handle()  # the directory, for the lock file below
    key = StoreKey([DEFAULT_SCOPE], None, False, "app")
    held = os.open(store / lock_name(key.digest), os.O_CREAT | os.O_RDONLY, 0o600)
    fcntl.flock(held, fcntl.LOCK_EX)  # another process mid-renewal: each calls its own credential
    try:
        first_alice, first_bob = alice.get_token(), bob.get_token()
    finally:
        os.close(held)
    assert alice.invalidate(first_alice)
    stored = alice.get_token()  # renewed, and stored for the others
    assert stored == alice_tokens[-1]
    with caplog.at_level(logging.WARNING):
        assert bob.invalidate(first_bob)
        assert bob.get_token() == bob_tokens[-1] != stored  # alice's token refused
    (warning,) = _store_warnings(caplog)
    assert "another identity" in warning and "shared_cache_identity=" in warning
    (record,) = store.glob("*.json")
    assert json.loads(record.read_text())["token"] == stored  # bob's token was not written there
    newcomer = FakeCredential()  # alice's identity, new: takes her token, no call
    assert TokenCache(newcomer, shared_cache=store, shared_cache_identity="app").get_token() == stored
    assert newcomer.calls == 0 and len(bob_tokens) == 2
