"""The identity key: what makes two caches' tokens interchangeable, from what the library knows.

Never from a credential's private state: azure-identity renames its attributes between
releases, and a key built from one that moved would give two identities one key. Two
sources only:

- `shared_cache_identity=`: a name the caller gives; every process giving it shares.
- the default credential the library creates itself (`credential=None`:
  `DefaultAzureCredential()` with no arguments). Which identity it answers for is a
  function of what it reads, which the library may read too (`DefaultIdentity`): the
  environment variables that choose and configure its credentials, the home and the
  developer tools' configuration directories, who is signed in to those tools (the
  files they keep it in, `_SIGN_IN_FILES`), the azure-identity release (its chain's
  members and their order), and the host: a VM's managed identity (IMDS) is the VM's,
  which no variable names, and a `shared_cache` directory on a network filesystem is
  seen by several hosts. Secrets: a client secret or password only as set or not (it chooses a
  credential; another value of it is the same identity's); a managed-identity endpoint's
  secret (`IDENTITY_HEADER`, `MSI_SECRET`) by its value, since one local token service
  (Service Fabric's: one endpoint per node) answers each application by the secret it
  sends. A value is never written: only its HMAC keyed by the store's own salt
  (`TokenStore.salt`, readable by this user alone), which nobody else can compute or test;
  so are the host's id and the sign-in files' contents.

A credential the caller passes has no key unless named: its cache does not share.
"""

from __future__ import annotations

import errno
import hashlib
import hmac
import importlib.metadata
import json
import os
import socket
import stat
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["DefaultIdentity", "StoreKey", "key_digest", "keyed_hash"]

# Environment variables `DefaultAzureCredential()` reads to choose and configure its
# credentials (environment, workload identity, managed identity, the developer tools).
_IDENTITY_ENV = (
    "AZURE_CLIENT_ID",
    "AZURE_TENANT_ID",
    "AZURE_USERNAME",
    "AZURE_CLIENT_CERTIFICATE_PATH",
    "AZURE_FEDERATED_TOKEN_FILE",
    "AZURE_AUTHORITY_HOST",
    "AZURE_REGIONAL_AUTHORITY_NAME",
    "AZURE_TOKEN_CREDENTIALS",
    "AZURE_IDENTITY_DISABLE_MULTITENANTAUTH",
    "AZURE_POD_IDENTITY_AUTHORITY_HOST",
    "AZURE_KUBERNETES_TOKEN_PROXY",
    "IDENTITY_ENDPOINT",
    "IDENTITY_SERVER_THUMBPRINT",
    "IMDS_ENDPOINT",
    "MSI_ENDPOINT",
    "MSI_RES_ID",
)
# Secrets whose being set chooses the credential (a client secret makes it the
# environment's service principal): another value is the same identity's, so only
# whether they are set goes in.
_SECRET_ENV = ("AZURE_CLIENT_SECRET", "AZURE_CLIENT_CERTIFICATE_PASSWORD", "AZURE_PASSWORD")
# Secrets whose value chooses the identity: a local token service shared by several
# applications (Service Fabric's, one per node) answers each by the secret it sends.
_CHOOSING_SECRET_ENV = ("IDENTITY_HEADER", "MSI_SECRET")
# The developer tools' signed-in accounts: the Azure CLI's and azd's configuration
# directories (a variable, else a default under home); PowerShell, VS Code and the shared
# MSAL cache keep theirs under the home directory itself.
_CONFIG_DIRS = (("AZURE_CONFIG_DIR", "~/.azure"), ("AZD_CONFIG_DIR", "~/.azd"))
# The files that say who is signed in to each developer tool of the chain, by the
# directory they are in (0: the CLI's, 1: azd's, 2: home). `az login` and `az account
# set` rewrite the CLI's profile (accounts, the default subscription and its tenant) and
# `az cloud set` its config; azd keeps the current user in auth.json (config.json before);
# Azure PowerShell its default context; VS Code's Azure extension its account record (read
# by VisualStudioCodeCredential); the shared MSAL cache (SharedTokenCacheCredential) its
# accounts. Not the CLI's own token cache: it changes with every token it renews, while
# the profile changes only when the account does.
_SIGN_IN_FILES = (
    (0, "azureProfile.json"),
    (0, "clouds.config"),
    (0, "config"),
    (1, "auth.json"),
    (1, "config.json"),
    (2, ".Azure/AzureRmContext.json"),
    (2, ".azure/ms-azuretools.vscode-azureresourcegroups/authRecord.json"),
    (2, ".Azure/ms-azuretools.vscode-azureresourcegroups/authRecord.json"),
    (2, ".IdentityService/msal.cache"),
    (2, ".IdentityService/msal.cache.nocae"),
    (2, ".IdentityService/msal.cache.cae"),
)
# A sign-in file larger than this is known by its inode, size and modification time (any
# rewrite changes the key) instead of its content: the key is read at each renewal.
_MAX_HASHED = 256 * 1024
# The host: systemd's (or D-Bus's) machine id, where there is one, with the host name (a
# container copied from an image may share the image's machine id; its host name is its
# own). systemd asks that the id be used only through a keyed hash: it is.
_MACHINE_ID_FILES = ("/etc/machine-id", "/var/lib/dbus/machine-id")


class StoreKey:
    """What makes two caches' tokens interchangeable: `parts` (written into each record,
    and compared by the reader) and `digest`, their hash (in the record's file name).

    `identity`: the name `shared_cache_identity=` gave, or for the default credential the
    library creates, what `DefaultIdentity.parts()` read.
    """

    def __init__(
        self, scopes: Sequence[str], tenant_id: str | None, enable_cae: bool, identity: str | Mapping[str, Any]
    ) -> None:
        parts: dict[str, Any] = {"scopes": sorted(scopes), "tenant_id": tenant_id, "cae": bool(enable_cae)}
        if isinstance(identity, str):
            parts["identity"] = identity
        else:
            parts["default_credential"] = dict(identity)
        self.parts: dict[str, Any] = json.loads(json.dumps(parts))  # as a reader gets it back from JSON
        self.digest = key_digest(self.parts)


class DefaultIdentity:
    """What decides which identity `DefaultAzureCredential()` answers for.

    The environment, the directories and the host are read on the first `parts()` and
    kept: the credential reads them once, when it is made (a variable changed later does
    not change whom it answers for). Who is signed in to the developer tools is read at
    every `parts()`, each renewal: the tools read it at each token request, so after `az
    login` as another account even a running process renews under the new account's key.
    """

    def __init__(self) -> None:
        self._fixed: dict[str, Any] | None = None
        self._secrets: dict[str, str] = {}
        self._host = ""
        self._sign_in: list[str] = []

    def parts(self, salt: bytes) -> dict[str, Any]:
        """The key's parts, what must not be written as its `keyed_hash` under `salt`."""
        if self._fixed is None:
            self._read_once()
        assert self._fixed is not None
        return {
            **self._fixed,
            "chosen_by": {name: keyed_hash(salt, value) for name, value in self._secrets.items()},
            "host": keyed_hash(salt, self._host),
            "signed_in": {path: sign for path in self._sign_in if (sign := _signature(path, salt)) is not None},
        }

    def _read_once(self) -> None:
        try:
            release = importlib.metadata.version("azure-identity")
        except importlib.metadata.PackageNotFoundError:
            release = None
        environ = os.environ
        home = os.path.realpath(os.path.expanduser("~"))
        config_dirs = [os.path.realpath(os.path.expanduser(environ.get(v) or d)) for v, d in _CONFIG_DIRS]
        self._secrets = {name: environ[name] for name in _CHOOSING_SECRET_ENV if environ.get(name)}
        self._host = f"{_machine_id()}\0{socket.gethostname()}"
        self._sign_in = [os.path.join([*config_dirs, home][where], name) for where, name in _SIGN_IN_FILES]
        self._fixed = {
            "env": {name: environ[name] for name in _IDENTITY_ENV if name in environ},
            "secrets_set": [name for name in _SECRET_ENV if environ.get(name)],
            "home": home,
            "config_dirs": config_dirs,
            "azure_identity": release,
        }


def _signature(path: str, salt: bytes) -> str | None:
    """What a sign-in file holds, as a `keyed_hash` of its content (of its inode, size and
    modification time past `_MAX_HASHED`); None if there is none. Never blocks: a FIFO is
    opened without waiting and named as what it is."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        return f"unreadable ({errno.errorcode.get(exc.errno or 0, exc.errno)})"
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return "not a regular file"
        if info.st_size > _MAX_HASHED:
            return keyed_hash(salt, f"{info.st_dev}:{info.st_ino}:{info.st_size}:{info.st_mtime_ns}")
        try:
            return keyed_hash(salt, handle.read(_MAX_HASHED))
        except OSError as exc:
            return f"unreadable ({errno.errorcode.get(exc.errno or 0, exc.errno)})"


def _machine_id() -> str:
    for path in _MACHINE_ID_FILES:
        try:
            with open(path, encoding="ascii", errors="replace") as handle:
                machine_id = handle.read(64).strip()
        except OSError:
            continue
        if machine_id:
            return machine_id
    return ""


def keyed_hash(salt: bytes, value: str | bytes) -> str:
    """HMAC-SHA256 of `value` keyed by the store's `salt`, 32 hex digits: equal for equal
    values in one store, and neither computable nor testable without the salt."""
    data = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value
    return hmac.new(salt, data, hashlib.sha256).hexdigest()[:32]


def key_digest(parts: object) -> str:
    """The hash of a key's parts that names its files: the sweep recomputes it from a
    record's own `key` to prove the record is the store's."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]
