"""`CachedCredential` and `AsyncCachedCredential`: azure-core credentials over the shared caches.

Azure SDK clients (Storage, Key Vault, AI Search, Cosmos DB...) ask their credential for a
token through azure-core's `BearerTokenCredentialPolicy`. Each client keeps its own token;
the sync policy has no lock, so N threads on a new client make N credential calls; a
credential made per thread or per process asks each time (Azure/azure-sdk-for-python#26177,
#13387, #17787); `AzureCliCredential` caches nothing (#40636, #38912). Wrapped in a
`CachedCredential`, every client draws from this library's caches: one per (credential,
scopes, tenant, CAE), the same `TokenCache` the adapters and providers built on that
credential use (`_registry.resolve_cache`), so one credential call per token lifetime
serves them all, renewed ahead of expiry without making a caller wait.

A CAE claims challenge put to this credential (azure-core's policy calling
`get_token(..., claims=...)`) is the exception: the claims go to the wrapped credential,
never answered from the cache nor single-flighted with renewals, in a thread of their own
and bounded by `timeout` (`_claims`), and what comes back (a token, or an error) reaches
that caller only: the cache does not keep it. The cached token the service just refused is
dropped (at most once per `retry_backoff`, as a 401 does in the adapters), without the
claims: the next caller gets a fresh token, not the refused one.

A challenge an adapter meets is answered through the cache instead (`TokenCache.invalidate`
with the claims): the service refused the token the cache holds, so the token fetched with
the challenge's claims replaces it for every user of that cache, this credential's callers
included. That is one identity and one set of scopes (a cache never spans two identities):
the same principal, with the claims the service asked of it. And a credential may keep the
answer to a claims request in its own cache (azure-identity's do), so a later renewal may
bring that token too.
"""

from __future__ import annotations

import time
import weakref
from collections import OrderedDict
from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar

from azure.core.credentials import AccessToken, AccessTokenInfo

from . import _reset
from ._cache import TokenCache
from ._claims_challenge import ClaimsCalls
from ._credential import check_credential, is_async_credential, sync_credential_name
from ._errors import ConfigurationError, ConfigurationTypeError
from ._forks import fork_safe_lock
from ._keep_fresh import check_sync as check_keep_fresh
from ._registry import CacheBacked, resolve_cache, unwrap
from ._settings import CACHE_OPTION_NAMES, CacheOptions, CacheSettings, check_option_names

if TYPE_CHECKING:
    from azure.core.credentials import TokenRequestOptions
    from typing_extensions import Self, Unpack

    from ._credential import Credential
    from ._state import CachedToken

__all__ = ["AsyncCachedCredential", "CachedCredential"]

# A cache per (scopes as asked, tenant, CAE).
_Key = tuple[tuple[str, ...], str | None, bool]

# Caches for a tenant a call named, other than the one this credential was made with, are
# held at most this many, the least recently used let go: azure-core's challenge policies
# pass the tenant of a service's WWW-Authenticate, so a service decides how many there are.
_TENANTS_HELD = 16

# Every live one, for the testing kit's reset (`_forget_all`).
_LIVE: weakref.WeakSet[_CachedCredentialBase] = weakref.WeakSet()


class _CachedCredentialBase(CacheBacked):
    """What the sync and async forms share: the wrapped credential, its options, its caches."""

    _accepts_async: ClassVar[bool]

    def __init__(self, credential: Credential | None, options: Mapping[str, Any]) -> None:
        caller = type(self).__name__
        check_option_names(options, caller, CACHE_OPTION_NAMES)
        credential, wanted = unwrap(credential, options, caller)
        settings = CacheSettings(**wanted)  # checked now: a bad option fails here, not on a request
        if credential is not None:
            if isinstance(credential, TokenCache):
                raise ConfigurationTypeError(
                    f"{caller} takes a credential, not a TokenCache (which serves fixed scopes): "
                    "pass the cache's credential (cache.credential) and its options"
                )
            check_credential(credential)
            if not self._accepts_async and is_async_credential(credential):
                raise ConfigurationTypeError(
                    f"{caller} needs a sync credential: {type(credential).__name__} is async; use "
                    f"{sync_credential_name(credential)} here, or AsyncCachedCredential(...) for async clients"
                )
            if settings.keep_fresh:  # the caches come later, with the first request: refuse now
                check_keep_fresh(is_async_credential(credential))
        super().__init__(credential, wanted)
        self._tenant_id = settings.tenant_id
        self._enable_cae = settings.enable_cae
        self._caches: dict[_Key, TokenCache] = {}
        self._tenants: OrderedDict[_Key, TokenCache] = OrderedDict()  # a call's own tenant: see `_TENANTS_HELD`
        self._tenants_lock = fork_safe_lock()
        self._claims = ClaimsCalls(credential, settings.timeout, settings.tenant_id, settings.enable_cae)
        _LIVE.add(self)

    def _cache(self, scopes: tuple[str, ...], tenant_id: str | None, enable_cae: bool, method: str) -> TokenCache:
        """The shared cache for these scopes, tenant and CAE setting (remembered here, so
        the caches of a credential passed in live as long as this object; those of a
        tenant the call named, while they are among the `_TENANTS_HELD` used last)."""
        key: _Key = (scopes, tenant_id or self._tenant_id, bool(enable_cae) or self._enable_cae)
        if key[1] == self._tenant_id:
            cache = self._caches.get(key)
            if cache is None:
                cache = self._caches.setdefault(key, self._resolve(key, method, pinned=True))
            return cache
        with self._tenants_lock:
            cache = self._tenants.get(key)
            if cache is not None:
                self._tenants.move_to_end(key)
                return cache
        cache = self._resolve(key, method, pinned=False)  # not for the process's lifetime: held here
        with self._tenants_lock:
            cache = self._tenants.setdefault(key, cache)
            self._tenants.move_to_end(key)
            while len(self._tenants) > _TENANTS_HELD:
                self._tenants.popitem(last=False)
        return cache

    def _resolve(self, key: _Key, method: str, *, pinned: bool) -> TokenCache:
        if not key[0]:
            raise ConfigurationError(f'"{method}" requires at least one scope')
        options = {**self._options, "tenant_id": key[1], "enable_cae": key[2]}
        return resolve_cache(self._credential, key[0], options, type(self).__name__, pinned=pinned)  # type: ignore[arg-type]

    def _forget(self) -> None:
        # The caches stay in the registry while an adapter or another CachedCredential
        # uses them; the default credential's live as long as the process (`_registry`),
        # but for those of a tenant a call named.
        self._caches.clear()
        with self._tenants_lock:
            self._tenants.clear()

    def __repr__(self) -> str:
        wrapped = "DefaultAzureCredential (shared)" if self._credential is None else type(self._credential).__name__
        count = len(self._caches) + len(self._tenants)
        return f"<{type(self).__name__} over {wrapped}: {count} cache{'' if count == 1 else 's'}>"


def _forget_all() -> None:
    # Its caches are reset with every other (`TokenCache._forget`): only its claims calls remain.
    for credential in list(_LIVE):
        credential._claims.forget()


_reset.on_reset(_forget_all)


def _asked(options: TokenRequestOptions | None) -> tuple[str | None, str | None, bool]:
    """(claims, tenant_id, enable_cae) of `get_token_info`'s options; unknown ones are ignored."""
    asked: Mapping[str, Any] = options or {}
    return asked.get("claims"), asked.get("tenant_id"), bool(asked.get("enable_cae", False))


# The cached token with its times, by `TokenCache.get_token`'s own path: a credential
# reports `expires_on` and `refresh_on`, which the token string alone does not carry.
# `_entry_slow` renews or waits as `get_token` does and returns the entry it settled on.


def _cached_token(cache: TokenCache) -> CachedToken:
    entry = cache.current
    if entry is not None and time.time() < entry.refresh_at:
        return entry
    return cache._entry_slow()


async def _cached_token_async(cache: TokenCache) -> CachedToken:
    entry = cache.current
    if entry is not None and time.time() < entry.refresh_at:
        return entry
    return await cache._entry_slow_async()


def _info(entry: CachedToken) -> AccessTokenInfo:
    # `refresh_on` is when the cache renews the token (honestly: already past while a
    # renewal is under way); a claims answer's, when the cache would renew it.
    return AccessTokenInfo(entry.token, int(entry.expires_on), refresh_on=int(entry.refresh_at))


class CachedCredential(_CachedCredentialBase):
    """An azure-core `TokenCredential` and `SupportsTokenInfo` over this library's caches.

    ```python
    credential = CachedCredential()  # DefaultAzureCredential underneath
    blobs = BlobServiceClient("https://<account>.blob.core.windows.net", credential=credential)
    secrets = SecretClient("https://<vault>.vault.azure.net", credential)
    ```

    Give it to any Azure SDK client, or to mssql-python as `token_provider=`. Every
    client, thread and process (with `shared_cache`) then shares one token per (scopes,
    tenant, CAE): one credential call per token lifetime, renewed in the background
    ahead of expiry, `refresh_on` reported as the cache will renew. The caches are the
    ones `AzureADTokenAuth`, `token_provider()` and the others build on the same
    credential (`None`: the process's default `DefaultAzureCredential`).

    - `credential`: a sync azure-core credential; an async one (`azure.identity.aio`) is
      refused naming its sync counterpart (use `AsyncCachedCredential` for async clients).
      Another `CachedCredential` means its credential and options (the same caches).
    - keyword options: the cache's (`refresh_margin`, `background_refresh`, `timeout`,
      `tenant_id`, `enable_cae`, `shared_cache`, ...: see `CacheOptions`), checked now.
      A `tenant_id` or `enable_cae=True` asked for in a call wins over the default given
      here; the caches of tenants calls name are held 16 at most (`_TENANTS_HELD`).
    - `get_token(..., claims=...)` (a CAE challenge) goes to the wrapped credential, not
      the cache, bounded by `timeout`; the refused cached token is dropped (see
      `_cached_credential`, and `_claims`).
    - `close()` / `with`: lets go of this object's caches (it made no credential of its
      own); a credential you passed is yours to close, as it may serve other clients
      through the same caches. Unlike `ChainedTokenCredential`, it does not close it.
    """

    _accepts_async = False

    def __init__(self, credential: Credential | None = None, **options: Unpack[CacheOptions]) -> None:
        super().__init__(credential, options)

    def get_token(
        self,
        *scopes: str,
        claims: str | None = None,
        tenant_id: str | None = None,
        enable_cae: bool = False,
        **kwargs: Any,
    ) -> AccessToken:
        """A valid `AccessToken` for `scopes` (at least one), from the shared cache."""
        info = self._get(scopes, claims, tenant_id, enable_cae, "get_token")
        return AccessToken(info.token, info.expires_on)

    def get_token_info(self, *scopes: str, options: TokenRequestOptions | None = None) -> AccessTokenInfo:
        """A valid `AccessTokenInfo` for `scopes`, its `refresh_on` when the cache renews it."""
        return self._get(scopes, *_asked(options), "get_token_info")

    def _get(
        self, scopes: tuple[str, ...], claims: str | None, tenant_id: str | None, enable_cae: bool, method: str
    ) -> AccessTokenInfo:
        cache = self._cache(scopes, tenant_id, enable_cae, method)
        if not claims:
            return _info(_cached_token(cache))
        return _info(self._claims.ask(cache, scopes, claims, tenant_id, bool(enable_cae)))

    def close(self) -> None:
        """Let go of this object's caches (see the class docs); the credential is not closed."""
        self._forget()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class AsyncCachedCredential(_CachedCredentialBase):
    """`CachedCredential` for async clients (`azure.core.credentials_async`): `get_token`
    and `get_token_info` are coroutines that never block the event loop.

    ```python
    async with AsyncCachedCredential() as credential:
        blobs = BlobServiceClient("https://<account>.blob.core.windows.net", credential=credential)
    ```

    - `credential`: async (`azure.identity.aio`: awaited on the caller's loop) or sync
      (run in a worker thread, so the loop keeps running). `None` is the process's sync
      `DefaultAzureCredential`, run in a thread: it works from any event loop (an
      `azure.identity.aio` credential belongs to the loop its HTTP session was made on),
      needs no aiohttp, and shares its caches with `CachedCredential()`, the adapters and
      `async_token_provider()`.
    - options, claims, `close()` and `async with`: as `CachedCredential`.
    """

    _accepts_async = True

    def __init__(self, credential: Credential | None = None, **options: Unpack[CacheOptions]) -> None:
        super().__init__(credential, options)

    async def get_token(
        self,
        *scopes: str,
        claims: str | None = None,
        tenant_id: str | None = None,
        enable_cae: bool = False,
        **kwargs: Any,
    ) -> AccessToken:
        """A valid `AccessToken` for `scopes` (at least one), from the shared cache."""
        info = await self._get(scopes, claims, tenant_id, enable_cae, "get_token")
        return AccessToken(info.token, info.expires_on)

    async def get_token_info(self, *scopes: str, options: TokenRequestOptions | None = None) -> AccessTokenInfo:
        """A valid `AccessTokenInfo` for `scopes`, its `refresh_on` when the cache renews it."""
        return await self._get(scopes, *_asked(options), "get_token_info")

    async def _get(
        self, scopes: tuple[str, ...], claims: str | None, tenant_id: str | None, enable_cae: bool, method: str
    ) -> AccessTokenInfo:
        cache = self._cache(scopes, tenant_id, enable_cae, method)
        if not claims:
            return _info(await _cached_token_async(cache))
        return _info(await self._claims.ask_async(cache, scopes, claims, tenant_id, bool(enable_cae)))

    async def close(self) -> None:
        """Let go of this object's caches (see `CachedCredential`); the credential is not closed."""
        self._forget()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc: BaseException | None = None,
        tb: TracebackType | None = None,
    ) -> None:
        await self.close()
