"""The caches adapters and providers share, one per (credential, scopes, options)."""

from __future__ import annotations

import inspect
import threading
import weakref
from collections.abc import MutableMapping, Sequence
from typing import TYPE_CHECKING, Any

from ._cache import CacheOptions, TokenCache
from ._credential import DEFAULT_SCOPE as _DEFAULT_SCOPE
from ._credential import normalize_scopes
from ._forks import reset_in_child

if TYPE_CHECKING:
    from ._credential import Credential

__all__ = ["DEFAULT_SCOPE", "CacheOptions", "forget_shared_caches", "resolve_cache", "scopes_given"]


class _DefaultScope(str):
    """The default scope as adapters' signature default: equal to `DEFAULT_SCOPE`, but
    marked, so `resolve_cache` tells a scope left out from one spelled out."""


DEFAULT_SCOPE: str = _DefaultScope(_DEFAULT_SCOPE)
"""Adapters' `scopes=` default (the public constant, marked as not given)."""


def scopes_given(scopes: object) -> bool:
    """Whether the caller gave `scopes` (False for the adapters' unspelled default)."""
    return not isinstance(scopes, _DefaultScope)


# Every option's default, so that spelling one out keys the same shared cache.
_OPTION_DEFAULTS = {
    name: parameter.default
    for name, parameter in inspect.signature(TokenCache.__init__).parameters.items()
    if parameter.kind is inspect.Parameter.KEYWORD_ONLY and name not in ("keep_fresh", "prefetch")
}

# Caches made by adapters and providers, shared per (credential, scopes, options), so
# that a requests auth and an openai provider built apart still make one credential
# call per renewal. For a credential passed in, the cache lives while an adapter uses
# it (the cache holds its credential, so a table keyed weakly by the credential would
# keep both forever). The default credential's caches live as long as the process, so
# that even `auth=AzureADTokenAuth()` written per request reuses one token.
_SHARED_LOCK = threading.Lock()
# Options that act on a cache rather than make a different one: an adapter asking for
# them gets the shared cache of its other options, with them switched on.
_ACTIONS = ("keep_fresh", "prefetch")
_DEFAULT_CACHES: dict[tuple[Any, ...], TokenCache] = {}
_CREDENTIAL_CACHES: weakref.WeakValueDictionary[tuple[Any, ...], TokenCache] = weakref.WeakValueDictionary()


def _reset_lock() -> None:
    global _SHARED_LOCK
    _SHARED_LOCK = threading.Lock()


reset_in_child(_reset_lock)


def resolve_cache(
    credential: Credential | TokenCache | None, scopes: str | Sequence[str], options: CacheOptions
) -> TokenCache:
    """The cache an adapter should use: the one passed in, or the shared one for its settings."""
    if isinstance(credential, TokenCache):
        if options:
            raise TypeError(
                f"options {sorted(options)} configure a new cache; pass them to the TokenCache you are sharing instead"
            )
        wanted = normalize_scopes(scopes)
        if scopes_given(scopes) and wanted != credential.scopes:
            raise ValueError(f"scopes {list(wanted)} differ from the shared TokenCache's {list(credential.scopes)}")
        return credential
    actions = {name: bool(options.get(name)) for name in _ACTIONS}
    rest = {name: value for name, value in options.items() if name not in _ACTIONS}
    settings = {**_OPTION_DEFAULTS, **rest}
    key: tuple[Any, ...] = (normalize_scopes(scopes), tuple(sorted(settings.items())))
    with _SHARED_LOCK:
        if credential is None:
            table: MutableMapping[tuple[Any, ...], TokenCache] = _DEFAULT_CACHES
        else:
            # id() is safe here: the cache holds its credential, so while the entry
            # exists the credential is alive and its id is not reused.
            table, key = _CREDENTIAL_CACHES, (id(credential), *key)
        cache = table.get(key)
        if cache is None:
            cache = table[key] = TokenCache(credential, scopes, **options)
            return cache
    cache._switch_on(**actions)
    return cache


def forget_shared_caches() -> None:
    """Drop the shared caches, so the next adapter starts afresh (for tests)."""
    with _SHARED_LOCK:
        _DEFAULT_CACHES.clear()
        _CREDENTIAL_CACHES.clear()
