"""What every adapter holds: its token caches, and the rule for where the token may go."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, ClassVar

from ._cache import TokenCache
from ._clouds import scope_depends_on_path, scope_for_url
from ._errors import WrongClientError
from ._policy import HostPolicy
from ._registry import DEFAULT_SCOPE, is_default_scope, resolve_cache
from ._settings import CacheOptions

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ._credential import Credential

__all__ = ["AdapterBase", "origin_prefix"]

# The adapter for each HTTP client, named in the error for an adapter handed another client's request.
_ADAPTER_FOR = {
    "requests": "azure_ad_token_auth.AzureADTokenAuth (session.auth = AzureADTokenAuth(...))",
    "httpx": "azure_ad_token_auth.httpx.AzureADHttpxAuth (httpx.Client(auth=AzureADHttpxAuth(...)))",
    "httpx2": "azure_ad_token_auth.httpx2.AzureADHttpxAuth (httpx2.Client(auth=AzureADHttpxAuth(...)))",
    "aiohttp": (
        "azure_ad_token_auth.aiohttp.AzureADClientMiddleware "
        "(aiohttp.ClientSession(middlewares=(AzureADClientMiddleware(...),)))"
    ),
}


def origin_prefix(url: str) -> str | None:
    """`scheme://authority/` of `url`, or None when the URL has no path to end it.

    Every URL that starts with the prefix has the same authority, so per-origin decisions
    can be remembered by `url.startswith(prefix)`.
    """
    start = url.find("//")
    end = url.find("/", start + 2) if start >= 0 else -1
    if end < 0 or "?" in url[:end] or "#" in url[:end]:
        return None
    return url[: end + 1]


class AdapterBase:
    """Common construction of the requests, httpx and aiohttp adapters.

    `credential` is any azure-core credential or a `TokenCache` to share; keyword
    options configure the cache (see `TokenCache`). `allow_http` and `allowed_hosts`
    set the `HostPolicy`.

    With `scopes` left out (and no `TokenCache` passed), each request's scope follows
    its host's cloud (`_clouds.scope_for_url`): one shared cache per scope. `cache` is
    the default scope's cache (public cloud, and every host no rule knows).
    """

    _client: ClassVar[str]
    """The HTTP client this adapter is for (a key of `_ADAPTER_FOR`)."""

    def __init__(
        self,
        credential: Credential | TokenCache | None = None,
        scopes: str | Sequence[str] = DEFAULT_SCOPE,
        *,
        allow_http: bool = False,
        allowed_hosts: Iterable[str] | None = None,
        **options: Unpack[CacheOptions],
    ) -> None:
        self.cache = resolve_cache(credential, scopes, options, type(self).__name__)
        """The `TokenCache` for the default scope (or the scopes given, or the cache passed in)."""
        self._policy = HostPolicy(allow_http, allowed_hosts)
        # `HostPolicy.allows_url`'s own first test, hoisted for the requests adapter's
        # per-request path: with no host list an https URL needs no look-up.
        self._https_anywhere = self._policy.https_anywhere
        self._follows_cloud = is_default_scope(scopes) and not isinstance(credential, TokenCache)
        self._credential = credential
        self._options: CacheOptions = options
        self._caches: dict[str, TokenCache] = {self.cache.scopes[0]: self.cache}
        # (prefix, cache): the cache of the last origin looked up. Replaced whole, read
        # without a lock. The prefix "" matches every URL: the scopes do not vary.
        self._last: tuple[str, TokenCache] = ("\0" if self._follows_cloud else "", self.cache)

    @property
    def policy(self) -> HostPolicy:
        """Where the token may go (`HostPolicy.check_url(url)` raises where it may not)."""
        return self._policy

    def cache_for(self, url: str) -> TokenCache:
        """The cache whose tokens go to `url`: `cache`, unless the scope follows the cloud."""
        prefix, cache = self._last
        if url.startswith(prefix):
            return cache
        scope = scope_for_url(url)
        found = self._caches.get(scope)
        if found is None:
            # The registry gives every adapter with these settings the same cache.
            found = self._caches.setdefault(
                scope, resolve_cache(self._credential, scope, self._options, type(self).__name__)
            )
        origin = origin_prefix(url)
        if origin is not None and not scope_depends_on_path(url):  # a Foundry host: its projects' scope differs
            self._last = (origin, found)
        return found

    def _wrong_client(self, request: object) -> WrongClientError:
        """The error for another HTTP client's request (raised before anything is sent)."""
        client = type(request).__module__.split(".")[0]
        use = _ADAPTER_FOR.get(client)
        mine = f"{type(self).__name__} is the {self._client} adapter"
        if use is None:
            return WrongClientError(
                f"{mine}; it was given a {type(request).__qualname__}, not a {self._client} request"
            )
        article = "an" if client[:1] in "aehiou" else "a"  # "an httpx request", "an aiohttp request"
        return WrongClientError(f"{mine}, but it was given {article} {client} request: for {client}, use {use}")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.cache!r}>"
