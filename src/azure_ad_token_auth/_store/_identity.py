"""The identity key: what makes two caches' tokens interchangeable, from what the library knows.

Never from a credential's private state: azure-identity renames its attributes between
releases, and a key built from one that moved would give two identities one key. Two
sources only:

- `shared_cache_identity=`: a name the caller gives; every process giving it shares.
- the default credential the library creates itself (`credential=None`:
  `DefaultAzureCredential()` with no arguments). Which identity it answers for is a
  function of what it reads, which the library may read too: the environment variables
  that choose and configure its credentials (secrets only as set or not: they choose a
  credential, they do not name an identity), the developer tools' sign-in state under the
  home and configuration directories, and the azure-identity release (its chain's members
  and their order).

A credential the caller passes has no key unless named: its cache does not share.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
from collections.abc import Sequence
from typing import Any

__all__ = ["StoreKey", "default_identity", "key_digest"]

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
# Secrets: whether they are set chooses the credential (a client secret makes it the
# environment's service principal); their values are not an identity, and stay out.
_SECRET_ENV = (
    "AZURE_CLIENT_SECRET",
    "AZURE_CLIENT_CERTIFICATE_PASSWORD",
    "AZURE_PASSWORD",
    "IDENTITY_HEADER",
    "MSI_SECRET",
)
# The developer tools' signed-in accounts: the Azure CLI's and azd's configuration
# directories (a variable, else a default under home); PowerShell, VS Code and the shared
# MSAL cache keep theirs under the home directory itself.
_CONFIG_DIRS = (("AZURE_CONFIG_DIR", "~/.azure"), ("AZD_CONFIG_DIR", "~/.azd"))


class StoreKey:
    """What makes two caches' tokens interchangeable: `parts` (written into each record,
    and compared by the reader) and `digest`, their hash (in the record's file name).

    `identity`: the name `shared_cache_identity=` gave; None for the default credential
    the library creates, keyed by `default_identity()`.
    """

    def __init__(self, scopes: Sequence[str], tenant_id: str | None, enable_cae: bool, identity: str | None) -> None:
        parts: dict[str, Any] = {"scopes": sorted(scopes), "tenant_id": tenant_id, "cae": bool(enable_cae)}
        if identity is not None:
            parts["identity"] = identity
        else:
            parts["default_credential"] = default_identity()
        self.parts: dict[str, Any] = json.loads(json.dumps(parts))  # as a reader gets it back from JSON
        self.digest = key_digest(self.parts)


def default_identity() -> dict[str, Any]:
    """What decides which identity `DefaultAzureCredential()` answers for, read now."""
    try:
        release = importlib.metadata.version("azure-identity")
    except importlib.metadata.PackageNotFoundError:
        release = None
    return {
        "env": {name: os.environ[name] for name in _IDENTITY_ENV if name in os.environ},
        "secrets_set": [name for name in _SECRET_ENV if os.environ.get(name)],
        "home": os.path.realpath(os.path.expanduser("~")),
        "config_dirs": [os.path.realpath(os.path.expanduser(os.environ.get(v) or d)) for v, d in _CONFIG_DIRS],
        "azure_identity": release,
    }


def key_digest(parts: object) -> str:
    """The hash of a key's parts that names its files: the sweep recomputes it from a
    record's own `key` to prove the record is the store's."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]
