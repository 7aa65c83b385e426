"""The caches adapters and providers share, one per (credential, scopes, settings).

A `CachedCredential` handed to any of them (or to another one, or to `odbc_attrs`) stands
for its own credential and options (`CacheBacked`, `unwrap`): it means the same caches,
never a second cache stacked on the first.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping, MutableMapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from ._cache import TokenCache
from ._clouds import DEFAULT_SCOPE
from ._errors import ConfigurationError, UsageError
from ._forks import fork_safe_lock
from ._keep_fresh import keep_fresh
from ._prefetch import prefetch
from ._scopes import normalize_scopes
from ._settings import CACHE_OPTION_NAMES, CacheOptions, CacheSettings, check_option_names

if TYPE_CHECKING:
    from ._credential import Credential

__all__ = [
    "SCOPE_NOT_GIVEN",
    "CacheBacked",
    "CacheOptions",
    "is_default_scope",
    "resolve_cache",
    "unwrap",
]


class _DefaultScope(str):
    """The default scope as adapters' signature default: equal to `DEFAULT_SCOPE`, but
    marked, so `resolve_cache` tells a scope left out from one spelled out."""


SCOPE_NOT_GIVEN: str = _DefaultScope(DEFAULT_SCOPE)
"""`scopes=`'s default where no scope given means "the endpoint's cloud's" (`is_default_scope`)."""


def is_default_scope(scopes: object) -> bool:
    """Whether `scopes` is the signature default, i.e. the caller gave none (then the
    scope may follow the endpoint's cloud)."""
    return isinstance(scopes, _DefaultScope)


class CacheBacked:
    """An object that stands for the shared caches of `credential` and cache `options`:
    the base of `CachedCredential` and `AsyncCachedCredential`."""

    def __init__(self, credential: Any, options: Mapping[str, Any]) -> None:
        self._credential = credential
        self._options = dict(options)

    @property
    def credential(self) -> Any:
        """The wrapped credential; None for the default (`DefaultAzureCredential`, one per
        process and scope, shared with every adapter and provider made without a credential)."""
        return self._credential

    @property
    def options(self) -> dict[str, Any]:
        """The cache options this was made with (a copy)."""
        return dict(self._options)


def unwrap(credential: object, options: Mapping[str, Any], caller: str) -> tuple[Any, dict[str, Any]]:
    """(credential, options) of the caches `credential` stands for: a `CacheBacked` means its
    own credential and options (options beside it are a `UsageError`: they configure its
    caches), anything else itself and `options`."""
    if isinstance(credential, CacheBacked):
        if options:
            raise UsageError(
                f"{caller}() got options {sorted(options)} with a {type(credential).__name__}: options "
                "configure its caches; give them to the one you pass"
            )
        return credential.credential, credential.options
    return credential, dict(options)


# Caches made by adapters and providers, shared per (credential, scopes, options), so
# that a requests auth and an openai provider built apart still make one credential
# call per renewal. For a credential passed in, the cache lives while an adapter uses
# it (the cache holds its credential, so a table keyed weakly by the credential would
# keep both forever). The default credential's caches live as long as the process, so
# that even `auth=AzureADTokenAuth()` written per request reuses one token; except
# those asked for unpinned (a tenant a service's challenge chose: their number is the
# service's to decide), shared only while something holds them.
_SHARED_LOCK = fork_safe_lock()
_DEFAULT_CACHES: dict[tuple[Any, ...], TokenCache] = {}
_DEFAULT_UNPINNED: weakref.WeakValueDictionary[tuple[Any, ...], TokenCache] = weakref.WeakValueDictionary()
_CREDENTIAL_CACHES: weakref.WeakValueDictionary[tuple[Any, ...], TokenCache] = weakref.WeakValueDictionary()


def resolve_cache(
    credential: Credential | TokenCache | None,
    scopes: str | Sequence[str],
    options: CacheOptions,
    caller: str,
    *,
    pinned: bool = True,
) -> TokenCache:
    """The cache an adapter should use: the one passed in, or the shared one for its settings.

    `caller` names the function the application called, for errors about its options.
    `pinned=False`: a default-credential cache the registry does not keep for the process
    (the caller holds it; shared while anyone does); one already pinned is still shared.
    """
    check_option_names(options, caller, CACHE_OPTION_NAMES)
    credential, unwrapped = unwrap(credential, options, caller)
    options = cast("CacheOptions", unwrapped)
    if isinstance(credential, TokenCache):
        if options:
            raise UsageError(
                f"options {sorted(options)} configure a new cache; pass them to the TokenCache you are sharing instead"
            )
        wanted = normalize_scopes(scopes)
        if not isinstance(scopes, _DefaultScope) and wanted != credential.scopes:
            raise ConfigurationError(
                f"scopes {list(wanted)} differ from the shared TokenCache's {list(credential.scopes)}"
            )
        return credential
    settings = CacheSettings(**options)
    # keep_fresh and prefetch act on a cache rather than make a different one: an
    # adapter asking for them gets the shared cache of its other settings, with them on.
    key: tuple[Any, ...] = (normalize_scopes(scopes), settings.cache_key())
    with _SHARED_LOCK:
        if credential is None:
            cache = _DEFAULT_CACHES.get(key) or _DEFAULT_UNPINNED.get(key)
            table: MutableMapping[tuple[Any, ...], TokenCache] = _DEFAULT_CACHES if pinned else _DEFAULT_UNPINNED
            if cache is not None and pinned:
                _DEFAULT_CACHES[key] = cache  # asked for unpinned first: kept for the process from now on
        else:
            # id() is safe here: the cache holds its credential, so while the entry
            # exists the credential is alive and its id is not reused.
            table, key = _CREDENTIAL_CACHES, (id(credential), *key)
            cache = table.get(key)
        if cache is None:
            cache = table[key] = TokenCache(credential, scopes, **options)
            return cache
    if settings.keep_fresh:
        keep_fresh(cache)
    if settings.prefetch:
        prefetch(cache)
    return cache
