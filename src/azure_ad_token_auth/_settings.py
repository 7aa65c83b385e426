"""Every cache option in one place: its name, type, default and validation.

`CacheOptions` (and `AdapterOptions`, which adds the host policy's two options) are the
keyword arguments public entry points accept, as `**options: Unpack[...]`, so a type
checker catches a misspelled option in the caller's code. `CacheSettings.from_options`
checks them at run time, naming the function the caller called, and is the frozen,
hashable value the shared caches are keyed on.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypedDict

from ._errors import ConfigurationError, UsageError
from ._timing import is_number

__all__ = [
    "ADAPTER_OPTION_NAMES",
    "CACHE_OPTION_NAMES",
    "AdapterOptions",
    "CacheOptions",
    "CacheSettings",
    "check_option_names",
]


class CacheOptions(TypedDict, total=False):
    """Keyword options of `TokenCache`, accepted by every adapter that creates one.

    - `refresh_margin`: ask for a new token once this many seconds or fewer remain
      before expiry (default 300; azure-identity's `<=`). For short-lived tokens the
      margin is capped at half the token's lifetime, so a 2-minute token is renewed
      after about one minute, not on every request. A `refresh_on` from the credential
      is honoured when it comes first, unless it cannot be right (already past when a new
      token arrives, a lifetime, after expiry, within the first quarter of the token's
      lifetime): then one WARNING, and the margin decides.
    - `background_refresh`: when a token is due for renewal but still valid, hand it out
      at once and renew in the background (default). With `False`, callers wait for the
      renewal (and still get the valid token if it fails).
    - `retry_backoff`: after a failed renewal, keep serving the valid token and wait this
      long before asking again; also the least time between two renewals forced by a 401.
    - `timeout`: the longest a caller waits for a token before `TokenAcquisitionTimeout`.
    - `jitter`: renew up to this many seconds earlier, at random, to spread a fleet's
      renewals (never later than without it).
    - `tenant_id`, `enable_cae`: passed to the credential (a CAE challenge's claims are
      always sent with `enable_cae=True`: see `CredentialBinding.options`).
    - `shared_cache`: share tokens with the other processes of this user on this host
      (one renewal at a time across them): `True` for a per-user private directory, or a
      directory path. `None` (default) follows the `AZURE_AD_TOKEN_AUTH_SHARED_CACHE`
      environment variable; `False` is off whatever it says.
    - `shared_cache_identity`: a name for the identity behind a credential you pass, the
      store's key (not empty): without it only the default credential the library makes
      itself (`credential=None`) shares, keyed by what it reads (the environment, who is
      signed in to the developer tools, the host: docs/sharing.md lists it).
    - `keep_fresh`: renew ahead of expiry even when no request comes (a daemon timer per
      cache), so a request after an idle spell never waits for the credential.
    - `prefetch`: start fetching the first token in the background now, so the first
      request waits at most for the rest of that fetch.
    """

    refresh_margin: float
    background_refresh: bool
    retry_backoff: float
    timeout: float
    jitter: float
    tenant_id: str | None
    enable_cae: bool
    shared_cache: bool | str | os.PathLike[str] | None
    shared_cache_identity: str | None
    keep_fresh: bool
    prefetch: bool


class AdapterOptions(CacheOptions, total=False):
    """Keyword options of the adapters: the cache's, and where the token may go (`HostPolicy`)."""

    allow_http: bool
    allowed_hosts: Iterable[str] | None


@dataclass(frozen=True)
class CacheSettings:
    """A cache's options, checked: frozen and hashable, the key of the shared caches.

    `ConfigurationError` (a `ValueError`) for a value out of range, `UsageError` (a
    `TypeError`) for one of the wrong type.
    """

    refresh_margin: float = 300.0
    background_refresh: bool = True
    retry_backoff: float = 30.0
    timeout: float = 60.0
    jitter: float = 0.0
    tenant_id: str | None = None
    enable_cae: bool = False
    shared_cache: bool | str | os.PathLike[str] | None = None
    shared_cache_identity: str | None = None
    keep_fresh: bool = False
    prefetch: bool = False

    def __post_init__(self) -> None:
        for name in ("refresh_margin", "retry_backoff", "timeout", "jitter"):
            value = getattr(self, name)
            if not is_number(value) or value < 0:
                raise ConfigurationError(f"{name} must be a finite number >= 0, got {value!r}")
            object.__setattr__(self, name, float(value))
        # Zero would turn "ask again later" into "ask on every request".
        if self.retry_backoff == 0 or self.timeout == 0:
            raise ConfigurationError("retry_backoff and timeout must be greater than 0")
        for name in ("background_refresh", "enable_cae", "keep_fresh", "prefetch"):
            if not isinstance(getattr(self, name), bool):
                raise UsageError(f"{name} must be True or False, got {type(getattr(self, name)).__name__}")
        for name in ("tenant_id", "shared_cache_identity"):
            if not isinstance(getattr(self, name), (str, type(None))):
                raise UsageError(f"{name} must be a string or None, got {type(getattr(self, name)).__name__}")
        if self.shared_cache_identity is not None and not self.shared_cache_identity.strip():
            # Every cache given it would share one key: say, `os.environ.get("APP_IDENTITY", "")` with
            # the variable unset, in the processes of two identities.
            raise ConfigurationError(
                f"shared_cache_identity={self.shared_cache_identity!r} names no identity: give the name of the "
                "identity behind the credential (say, its client id), the same in every process of that identity, "
                "or leave it out (None) to keep this credential's tokens to this process"
            )
        # `shared_cache` is read by the store (`shared_cache_setting`), which checks it.

    @classmethod
    def from_options(cls, options: Mapping[str, Any], caller: str) -> CacheSettings:
        """Settings from keyword options; an unknown name is a `UsageError` naming `caller`."""
        check_option_names(options, caller, CACHE_OPTION_NAMES)
        return cls(**options)

    def cache_key(self) -> CacheSettings:
        """These settings without the ones that act on a cache rather than make a different one."""
        if not (self.keep_fresh or self.prefetch):
            return self
        return dataclasses.replace(self, keep_fresh=False, prefetch=False)


CACHE_OPTION_NAMES: frozenset[str] = CacheOptions.__optional_keys__
ADAPTER_OPTION_NAMES: frozenset[str] = AdapterOptions.__optional_keys__


def check_option_names(options: Iterable[str], caller: str, allowed: frozenset[str] = ADAPTER_OPTION_NAMES) -> None:
    """`UsageError` naming `caller` (as the caller wrote it) for an option not in `allowed`."""
    for name in options:
        if name not in allowed:
            close = difflib.get_close_matches(name, sorted(allowed), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise UsageError(f"{caller}() got an unexpected keyword argument {name!r}{hint}")
