"""`AzureADTokenAuth`: the requests adapter (and the cookbook's `TokenRefresh`)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import requests
from azure.core.credentials import AccessToken

from ._adapter import AdapterBase
from ._cache import CachedToken, TokenCache
from ._drivers import attach, sync_steps
from ._errors import UsageError
from ._flow import Response
from ._registry import SCOPE_NOT_GIVEN

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ._credential import Credential
    from ._settings import CacheOptions

__all__ = ["AzureADTokenAuth", "TokenRefresh"]

_Hook = Callable[..., requests.Response]


class AzureADTokenAuth(AdapterBase, requests.auth.AuthBase):
    """Sets `Authorization: Bearer <token>` on every request, from a shared `TokenCache`.

    ```python
    session = requests.Session()
    session.auth = AzureADTokenAuth()                     # DefaultAzureCredential
    requests.get(url, auth=AzureADTokenAuth(credential))  # or per request
    ```

    `credential` may be any azure-core credential or a `TokenCache` shared with other
    adapters; `scopes` one string or a sequence. Left out, the scope follows each
    request's host: Azure Government (`*.azure.us`) and Azure China (`*.azure.cn`)
    endpoints get their cloud's Cognitive Services scope, every other host
    `DEFAULT_SCOPE` (docs/clouds.md). Keyword options (`refresh_margin`,
    `background_refresh`, `retry_backoff`, `timeout`, `jitter`, `tenant_id`,
    `enable_cae`) configure the caches it creates; see `TokenCache`. `.cache` is the
    default scope's cache (or the scopes' given, or the `TokenCache` passed in);
    `.cache_for(url)` is the one a request to `url` uses.

    - A 401 to a request that carried the token drops that token and resends the
      request once with a new one (with the claims of a CAE challenge), provided the
      body can be replayed; the 401 is kept in `response.history`.
    - Plain http is refused (`InsecureTransportError`, nothing sent) unless
      `allow_http=True`, loopback hosts included.
    - With `allowed_hosts` (patterns such as `"*.openai.azure.com"`), other hosts get no
      token, and no `Authorization` header at all (whoever set it).
    """

    _client = "requests"

    # The sync drivers' per-request path, bound as is: no call of ours in between (`_drivers`).
    # (`attach` takes any adapter as its first argument; AuthBase types it as an AuthBase.)
    __call__ = attach  # type: ignore[assignment]

    @property
    def _response_hook(self) -> _Hook:
        return self._on_response

    def _url_text(self, request: Any) -> str:
        # `attach` found no str URL: another client's request (httpx's, aiohttp's URL is no
        # str), or a requests one not prepared yet (then the policy refuses "no URL").
        if not isinstance(request, requests.PreparedRequest):
            raise self._wrong_client(request)
        return request.url or ""

    def _stream_hook(self, body: Any) -> _Hook:
        """A 401 hook for a file-like or iterator body: rewind it, or give up on resending."""
        try:
            position: int | None = body.tell() if callable(getattr(body, "seek", None)) else None
        except (OSError, ValueError, AttributeError):
            position = None  # a pipe, socket or closed file: cannot seek back

        def rewind() -> None:
            body.seek(position)

        def hook(r: requests.Response, **kwargs: Any) -> requests.Response:
            return self._on_response(r, _rewind=rewind if position is not None else None, **kwargs)

        return hook

    def _on_response(
        self, r: requests.Response, *, _rewind: Callable[[], None] | None = None, **kwargs: Any
    ) -> requests.Response:
        """The 401 steps (`_drivers.sync_steps`) for a response; `_rewind`: a streamed body's
        (absent for one in memory: a stream that cannot seek back is not resent)."""
        if r.status_code != 401:
            return r
        request = r.request
        # requests applies the auth last and a redirect hop copies the header or strips
        # it, so a Bearer header on the request that got the 401 is the one we attached.
        # The cache the token came from: the scope is a function of the host, and
        # requests keeps the header only on redirects to the same host.
        cache = self.cache_for(request.url or "")
        replayable = _rewind is not None or request.body is None or isinstance(request.body, (bytes, str))
        steps = sync_steps(cache, request, _response(r), _ours(request.headers.get("Authorization")), replayable)
        try:
            next(steps)  # the request to resend, with the new token on it
        except StopIteration:
            return r
        except BaseException:
            _release(r)  # a streamed 401 would otherwise hold its connection for ever
            raise
        if _rewind is not None:
            _rewind()
        _release(r)
        prep = request.copy()
        if r.cookies and "Cookie" not in prep.headers:
            # The 401's cookies (a load balancer's affinity) go on a resend that carried none.
            # With cookies sent, requests' own digest auth leaves that header as it was too.
            prep.prepare_cookies(r.cookies)
        # The flow put the new token on `request` itself: the redirect hops requests
        # builds next are copies of it, and must not carry the rejected token.
        retried: requests.Response = r.connection.send(prep, **kwargs)
        retried.history.append(r)
        retried.request = prep
        return retried


def _response(r: requests.Response) -> Response:
    return Response(r.status_code, r.request.headers.get("Authorization"), r.headers.get("WWW-Authenticate"))


def _ours(header: str | None) -> str | None:
    return header if header is not None and header.startswith("Bearer ") else None


def _release(r: requests.Response) -> None:
    """Read a 401 to its end and close it, so its connection goes back to the pool."""
    with contextlib.suppress(requests.RequestException, OSError):
        r.content  # noqa: B018
    r.close()


# The pasted class's attributes: readable; `cached_token = None` the one write it honours.
_FIXED = {
    "credential": "make a new TokenRefresh(credential, scopes) for another credential",
    "scopes": "make a new TokenRefresh(credential, scopes) for other scopes",
}


class TokenRefresh(AzureADTokenAuth):
    """The class Microsoft's Azure OpenAI cookbook has you paste, `TokenRefresh(credential, scopes)`,
    with its attributes: `AzureADTokenAuth` underneath (a shared, single-flight cache; 401s resent).

    - `credential`: the credential given (none given: the `DefaultAzureCredential` the library
      makes, made on first use).
    - `scopes`: the scopes, as a list (none given: `DEFAULT_SCOPE`; requests to Azure Government
      or China hosts then get their cloud's scope).
    - `cached_token`: the `AccessToken` last sent (after a 401, the one the request was resent
      with), or None before the first. `auth.cached_token = None` drops the token of the cache it
      draws from, shared with every adapter on the same credential and scopes: the next request
      asks the credential.

    Any other write to these, or to a new attribute, raises `UsageError` naming what to do.
    """

    def __init__(
        self,
        credential: Credential | TokenCache | None = None,
        scopes: str | Sequence[str] = SCOPE_NOT_GIVEN,
        *,
        allow_http: bool = False,
        allowed_hosts: Iterable[str] | None = None,
        **options: Unpack[CacheOptions],
    ) -> None:
        super().__init__(credential, scopes, allow_http=allow_http, allowed_hosts=allowed_hosts, **options)
        self._sent: CachedToken | None = None
        self._sealed = True

    @property
    def credential(self) -> Any:
        given = self._credential
        if given is None or isinstance(given, TokenCache):
            return self.cache._bound().credential
        return given

    @property
    def scopes(self) -> list[str]:
        return list(self.cache.scopes)

    @property
    def cached_token(self) -> AccessToken | None:
        sent = self._sent
        return None if sent is None else AccessToken(sent.token, int(sent.expires_on))

    @cached_token.setter
    def cached_token(self, value: None) -> None:
        if value is not None:
            raise UsageError(
                "TokenRefresh.cached_token takes only None (renew at the next request): its tokens come "
                f"from its credential, not from assignments; got {type(value).__name__}"
            )
        cache = self._cache_of(self._sent) or self.cache
        self._sent = None
        cache._drop()

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "cached_token" or name.startswith("_") or not self.__dict__.get("_sealed"):
            super().__setattr__(name, value)
            return
        fix = _FIXED.get(name, "the class keeps no attributes of yours: keep them beside it")
        raise UsageError(f"TokenRefresh.{name} cannot be set: {fix}")

    def __call__(self, r: requests.PreparedRequest, url: Any = None) -> requests.PreparedRequest:
        r = super().__call__(r, url)
        r.hooks["response"].append(self._note_sent)  # after the 401 hook: sees the request sent last
        return r

    def _note_sent(self, response: requests.Response, **kwargs: Any) -> requests.Response:
        header = response.request.headers.get("Authorization")
        sent = self._sent
        if header is not None and (sent is None or sent.header is not header):
            self._sent = self._entry_for(header) or sent
        return response

    def _caches_used(self) -> list[TokenCache]:
        return [self.cache, *self._caches.values()]

    def _entry_for(self, header: str) -> CachedToken | None:
        """The cached token whose header this is (None if each cache holds another by now)."""
        for cache in self._caches_used():
            entry = cache.current
            if entry is not None and entry.header is header:
                return entry
        return None

    def _cache_of(self, sent: CachedToken | None) -> TokenCache | None:
        for cache in self._caches_used():
            if sent is not None and cache.current is sent:
                return cache
        return None
