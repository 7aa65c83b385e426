"""Pointing azure-identity at loopback stand-ins through environment variables, and back."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from typing import Final

from .._store import ENV_VAR as _SHARED_CACHE_ENV
from ._http import LOOPBACK

__all__ = ["STEERING_ENV", "environ_updated", "patched_environ"]

STEERING_ENV: Final = (
    "AZURE_CLIENT_ID",
    "AZURE_TENANT_ID",
    "AZURE_CLIENT_SECRET",
    "AZURE_CLIENT_CERTIFICATE_PATH",
    "AZURE_CLIENT_CERTIFICATE_PASSWORD",
    "AZURE_CLIENT_SEND_CERTIFICATE_CHAIN",
    "AZURE_FEDERATED_TOKEN_FILE",
    "AZURE_USERNAME",
    "AZURE_PASSWORD",
    "AZURE_AUTHORITY_HOST",
    "AZURE_REGIONAL_AUTHORITY_NAME",
    "AZURE_TOKEN_CREDENTIALS",
    "MSAL_FORCE_REGION",
    "IDENTITY_ENDPOINT",
    "IDENTITY_HEADER",
    "MSI_ENDPOINT",
    "MSI_SECRET",
    "IMDS_ENDPOINT",
    "IDENTITY_SERVER_THUMBPRINT",
    "AZURE_POD_IDENTITY_AUTHORITY_HOST",
)
"""Variables that choose or steer an azure-identity credential; `patched_environ` clears those it does not set."""

_PROXY_ENV: Final = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")


@contextlib.contextmanager
def patched_environ(*settings: Mapping[str, str]) -> Iterator[dict[str, str]]:
    """Set `settings` (later mappings win) in `os.environ` for the block; restore it on exit.

    Every other variable in `STEERING_ENV` is removed meanwhile, so
    `DefaultAzureCredential` picks the credential the settings describe and nothing
    else, and so is `AZURE_AD_TOKEN_AUTH_SHARED_CACHE` (tests would share tokens
    through the store; name it in `settings` to keep it); with a proxy configured,
    127.0.0.1 is added to `NO_PROXY`/`no_proxy`.
    Combine stand-ins in one call (`patched_environ(imds.env(), az.env())`): a
    nested call clears what the outer one set.
    """
    merged: dict[str, str] = {}
    for mapping in settings:
        merged.update(mapping)
    updates: dict[str, str | None] = dict.fromkeys((*STEERING_ENV, _SHARED_CACHE_ENV))
    updates.update(merged)
    if any(os.environ.get(name) for name in _PROXY_ENV):
        for name in ("NO_PROXY", "no_proxy"):
            current = os.environ.get(name, "")
            if LOOPBACK not in current.split(","):
                updates[name] = f"{current},{LOOPBACK}" if current else LOOPBACK
    with environ_updated(updates):
        yield merged


@contextlib.contextmanager
def environ_updated(updates: Mapping[str, str | None]) -> Iterator[None]:
    """Set (a value) or remove (None) each of `updates` in `os.environ` for the block, and
    put each back as it was on exit; other variables are left alone."""
    saved = {name: os.environ.get(name) for name in updates}
    try:
        for name, value in updates.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        yield
    finally:
        for name, old in saved.items():
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old
