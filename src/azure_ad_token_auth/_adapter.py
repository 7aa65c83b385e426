"""What every adapter holds: its token caches, the rule for where the token may go, and what
the drivers (`_drivers`) ask of its HTTP client's requests and responses."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from ._cache import TokenCache
from ._clouds import scope_depends_on_path, scope_for_url
from ._errors import WrongClientError
from ._flow import Response
from ._policy import HostPolicy
from ._registry import SCOPE_NOT_GIVEN, is_default_scope, resolve_cache
from ._settings import CacheOptions

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ._credential import Credential

__all__ = ["AdapterBase", "Fast", "origin_prefix"]

Fast = tuple[str, TokenCache, "Callable[..., Any] | None"]
"""`AdapterBase._fast`: (prefix, cache, response hook)."""

# The adapter for each HTTP client, named in the error for an adapter handed another client's request.
_ADAPTER_FOR = {
    "requests": "azure_ad_token_auth.AzureADTokenAuth (session.auth = AzureADTokenAuth(...))",
    "httpx": "azure_ad_token_auth.httpx.AzureADHttpxAuth (httpx.Client(auth=AzureADHttpxAuth(...)))",
    "httpx2": "azure_ad_token_auth.httpx2.AzureADHttpxAuth (httpx2.Client(auth=AzureADHttpxAuth(...)))",
    "aiohttp": (
        "azure_ad_token_auth.aiohttp.AzureADClientMiddleware "
        "(aiohttp.ClientSession(middlewares=(middleware,), trace_configs=[middleware.trace_config]))"
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

    A subclass says what its client's requests and responses look like to the drivers:
    `_read`, `_replayable`, and for requests `_url_text`, `_response_hook`, `_stream_hook`.
    """

    _client: ClassVar[str]
    """The HTTP client this adapter is for (a key of `_ADAPTER_FOR`)."""
    _refuse_elsewhere: ClassVar[bool] = False
    """True: a request the token may not go to (outside `allowed_hosts`) is refused with
    `InsecureTransportError`, not sent without it (openai's `http_client` auth: openai has
    put the token on the request already)."""

    def __init__(
        self,
        credential: Credential | TokenCache | None = None,
        scopes: str | Sequence[str] = SCOPE_NOT_GIVEN,
        *,
        allow_http: bool = False,
        allowed_hosts: Iterable[str] | None = None,
        **options: Unpack[CacheOptions],
    ) -> None:
        self.cache = resolve_cache(credential, scopes, options, type(self).__name__)
        """The `TokenCache` for the default scope (or the scopes given, or the cache passed in)."""
        self._policy = HostPolicy(allow_http, allowed_hosts)
        self._follows_cloud = is_default_scope(scopes) and not isinstance(credential, TokenCache)
        self._credential = credential
        self._options: CacheOptions = options
        self._caches: dict[str, TokenCache] = {self.cache.scopes[0]: self.cache}

    @property
    def policy(self) -> HostPolicy:
        """Where the token may go (`HostPolicy.check_url(url)` raises where it may not)."""
        return self._policy

    def cache_for(self, url: str) -> TokenCache:
        """The cache whose tokens go to `url`: `cache`, unless the scope follows the cloud."""
        if not self._follows_cloud:
            return self.cache
        scope = scope_for_url(url)
        found = self._caches.get(scope)
        if found is None:
            # The registry gives every adapter with these settings the same cache.
            found = self._caches.setdefault(
                scope, resolve_cache(self._credential, scope, self._options, type(self).__name__)
            )
        return found

    # -- what the drivers read (`_drivers`) ----------------------------------------------

    @functools.cached_property
    def _fast(self) -> Fast:
        """(prefix, cache, hook): a URL starting with `prefix` gets a token from `cache`, no
        questions asked, and `hook` (requests' 401 hook, bound once; None for the others).

        `"https://"` when every https URL gets the default cache's token; otherwise the
        last origin `_route` gave a token to, or a prefix no URL has. Replaced whole, read
        without a lock.
        """
        prefix = "https://" if self._policy.https_anywhere and not self._follows_cloud else "\0"
        return (prefix, self.cache, self._response_hook)

    def _route(self, request: Any, url: object) -> TokenCache | None:
        """The per-request path past `_fast`: the cache for `url`, or None where the token
        does not go (`HostPolicy.allows_url`, which raises where it may not go in clear).
        The answer depends on the origin alone, and so does the scope unless the path picks
        it (a Foundry project): the origin becomes `_fast`'s prefix."""
        text = url if isinstance(url, str) else self._url_text(request)
        if not self._policy.allows_url(text):
            if self._refuse_elsewhere:
                self._policy.check_url(text)  # raises: outside allowed_hosts
            return None
        cache = self.cache_for(text)
        prefix, _, hook = self._fast
        if prefix != "https://" and not scope_depends_on_path(text):
            origin = origin_prefix(text)
            if origin is not None:
                self._fast = (origin, cache, hook)
        return cache

    def _url_text(self, request: Any) -> str:
        """The URL of a request whose `url` is no `str` (httpx's, aiohttp's URL objects)."""
        return str(request.url)

    @property
    def _response_hook(self) -> Callable[..., Any] | None:
        """requests: the hook its response goes to (the auth sees no response). None: the
        client hands the response back to the driver (httpx's auth flow, aiohttp's handler)."""
        return None

    def _stream_hook(self, body: Any) -> Callable[..., Any]:
        """requests: the response hook for a body read from a stream (`_response_hook`'s clients only)."""
        raise NotImplementedError

    def _read(self, request: Any, response: Any) -> Response:
        """What the 401 flow reads of the client's `response` to `request`."""
        raise NotImplementedError

    def _replayable(self, request: Any) -> bool:
        """Whether `request`'s body can be sent again."""
        raise NotImplementedError

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
