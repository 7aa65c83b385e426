"""The identity key: what makes two caches' tokens interchangeable.

The only code in the package that reads azure-identity's private attributes. A
credential's identity is read exactly or not at all: only azure-identity's own classes
(not subclasses an application wrote), and everything they wrap, are described; any
other credential raises `UnreadableIdentityFault`, and its cache does not share unless
`shared_cache_identity=` names the identity.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from typing import Any

__all__ = ["StoreKey", "UnreadableIdentityFault", "key_digest"]

# Environment variables that choose which identity azure-identity's credentials use.
_IDENTITY_ENV = (
    "AZURE_CLIENT_ID",
    "AZURE_TENANT_ID",
    "AZURE_USERNAME",
    "AZURE_CLIENT_CERTIFICATE_PATH",
    "AZURE_FEDERATED_TOKEN_FILE",
    "AZURE_AUTHORITY_HOST",
    "AZURE_CONFIG_DIR",
    "AZD_CONFIG_DIR",
    "IDENTITY_ENDPOINT",
    "MSI_ENDPOINT",
    "MSI_RES_ID",
)
_IDENTITY_ATTRS = (
    "client_id",
    "_client_id",
    "tenant_id",
    "_tenant_id",
    "subscription",
    "managed_identity_client_id",
    "_username",
    "_home_account_id",
    "_authority",
    "_token_file_path",
    "_service_connection_id",
)
# Where azure-identity keeps the rest: a managed identity's client / object / resource id
# in `_settings`, `_config` or (async) `_identity_config`; a client assertion credential's (workload identity's)
# client id and tenant in its `_client`; AzurePipelinesCredential's in the assertion
# credential it wraps; an interactive credential's signed-in user in its `_auth_record`.
_IDENTITY_DICTS = ("_settings", "_config", "_identity_config")
# The user a delegated credential acts for: OnBehalfOfCredential's user assertion,
# AuthorizationCodeCredential's code. Secrets, so only their hash goes in the key.
_USER_ATTRS = ("_assertion", "_authorization_code")
_INNER = ("_credential", "_client", "_client_assertion_credential", "_auth_record", "_broker_credential")
# The command-line tools' signed-in account lives in a per-user configuration directory;
# VS Code's sign-in record and the shared MSAL cache in the home directory.
_CONFIG_DIRS = {
    "AzureCliCredential": ("AZURE_CONFIG_DIR", "~/.azure"),
    "AzureDeveloperCliCredential": ("AZD_CONFIG_DIR", "~/.azd"),
    "AzurePowerShellCredential": (None, "~/.Azure"),
    "VisualStudioCodeCredential": (None, "~/.azure"),
    "SharedTokenCacheCredential": (None, "~/.IdentityService"),
}
# Credentials whose user is whoever signs in, unless an AuthenticationRecord names them.
_SIGNED_IN_LATER = ("InteractiveBrowserCredential", "DeviceCodeCredential")
_MAX_DEPTH = 6


class UnreadableIdentityFault(Exception):
    """The library cannot tell which identity a credential answers for; names its class."""


class StoreKey:
    """What makes two caches' tokens interchangeable: `parts` (written into each record,
    and compared by the reader) and `digest`, their hash (the record's file name)."""

    def __init__(
        self,
        credential: Any,
        scopes: Sequence[str],
        tenant_id: str | None,
        enable_cae: bool,
        identity: str | None = None,
    ) -> None:
        parts: dict[str, Any] = {
            "scopes": sorted(scopes),
            "tenant_id": tenant_id,
            "cae": bool(enable_cae),
        }
        if identity is not None:
            parts["identity"] = identity
        else:
            parts["credential"] = _describe(credential, 0)
        self.parts: dict[str, Any] = json.loads(json.dumps(parts))  # as a reader gets it back from JSON
        self.digest = key_digest(self.parts)


def key_digest(parts: object) -> str:
    """The hash of a key's parts that names its files: the sweep recomputes it from a
    record's own `key` to prove the record is the store's."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]


def _class_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _describe(credential: Any, depth: int) -> dict[str, Any]:
    """Class and identity attributes of an azure-identity credential and of what it wraps."""
    cls = type(credential)
    if cls.__module__ != "azure.identity" and not cls.__module__.startswith("azure.identity."):
        raise UnreadableIdentityFault(_class_name(cls))
    if depth > _MAX_DEPTH:
        raise UnreadableIdentityFault(f"{_class_name(cls)} (nested too deep)")
    if cls.__name__ in _SIGNED_IN_LATER and getattr(credential, "_auth_record", None) is None:
        raise UnreadableIdentityFault(f"{_class_name(cls)} without an authentication_record")
    described: dict[str, Any] = {"class": _class_name(cls)}
    for name in _IDENTITY_ATTRS:
        value = getattr(credential, name, None)
        if isinstance(value, str):
            described[name.lstrip("_")] = value
    for name in _IDENTITY_DICTS:
        value = getattr(credential, name, None)
        if isinstance(value, dict):
            described[name.lstrip("_")] = _plain(value)
    for name in _USER_ATTRS:
        value = getattr(credential, name, None)
        if isinstance(value, str):
            described[name.lstrip("_")] = hashlib.sha256(value.encode()).hexdigest()
    if cls.__name__ in _CONFIG_DIRS:
        variable, default = _CONFIG_DIRS[cls.__name__]
        chosen = (os.environ.get(variable) if variable else None) or default
        described["config_dir"] = os.path.realpath(os.path.expanduser(chosen))
    inner = [*(getattr(credential, n, None) for n in _INNER), *(getattr(credential, "credentials", None) or ())]
    nested = [_describe(c, depth + 1) for c in inner if c is not None]
    if nested:
        described["inner"] = nested
    if depth == 0:
        described["env"] = {name: os.environ[name] for name in _IDENTITY_ENV if name in os.environ}
    return described


def _plain(settings: dict[Any, Any]) -> dict[str, Any]:
    """The strings (and dicts of them) in `settings`: the same in every process."""
    return {
        str(k): _plain(v) if isinstance(v, dict) else v
        for k, v in settings.items()
        if isinstance(v, (str, dict)) or v is None
    }
