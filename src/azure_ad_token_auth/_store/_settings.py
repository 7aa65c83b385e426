"""Settings: which store directory `shared_cache` asks for, and the per-user default one."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from .._errors import ConfigurationError, ConfigurationTypeError

__all__ = ["ENV_VAR", "default_directory", "shared_cache_setting"]

ENV_VAR = "AZURE_AD_TOKEN_AUTH_SHARED_CACHE"


def shared_cache_setting(value: bool | str | os.PathLike[str] | None) -> Path | None:
    """The store directory the `shared_cache` option asks for, or None for no store.

    `None` defers to the `AZURE_AD_TOKEN_AUTH_SHARED_CACHE` environment variable: unset,
    empty, `0`, `false`, `no` or `off` mean no store; `1`, `true`, `yes` or `on` the
    per-user default directory; anything else is a directory path.
    """
    if value is None:
        raw = os.environ.get(ENV_VAR, "").strip()
        if raw.lower() in ("", "0", "false", "no", "off"):
            return None
        value = True if raw.lower() in ("1", "true", "yes", "on") else raw
    if value is False:
        return None
    if value is True:
        return default_directory()
    if isinstance(value, (str, os.PathLike)):
        path = Path(os.path.expanduser(os.fspath(value)))
        if not os.fspath(value):
            raise ConfigurationError("shared_cache must be True, False, None or a directory path, got ''")
        return path.absolute()
    raise ConfigurationTypeError(
        f"shared_cache must be True, False, None or a directory path, got {type(value).__name__}"
    )


def default_directory() -> Path:
    """The per-user store directory: under `XDG_RUNTIME_DIR` (a per-user tmpfs) where set."""
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or tempfile.gettempdir()
        return Path(base) / "azure-ad-token-auth"
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isabs(runtime) and os.path.isdir(runtime):
        return Path(runtime) / "azure-ad-token-auth"
    return Path(tempfile.gettempdir()) / f"azure-ad-token-auth-{os.geteuid()}"
