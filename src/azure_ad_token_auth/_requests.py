"""`AzureADTokenAuth`: the requests adapter (and the cookbook's `TokenRefresh`)."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from time import time as _now
from typing import Any

import requests

from ._adapter import AdapterBase, origin_prefix
from ._cache import TokenCache
from ._clouds import scope_depends_on_path
from ._flow import REPLAYABLE, TOKEN, Invalidate, Response, challenge_flow, drop_authorization, send_token

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

    @functools.cached_property
    def _hook(self) -> _Hook:
        return self._on_response  # bound once, not per request

    @functools.cached_property
    def _fast(self) -> tuple[str, TokenCache, _Hook]:
        """(prefix, cache, hook): a URL starting with `prefix` gets a token from `cache`, no
        questions asked, and `hook` (the 401 hook, bound once) on its response.

        `"https://"` when every https URL gets the default cache's token; otherwise the
        last origin that was given a token (`_slow_cache`), or a prefix no URL has.
        """
        prefix = "https://" if self._https_anywhere and not self._follows_cloud else "\0"
        return (prefix, self.cache, self._hook)

    def __call__(self, r: requests.PreparedRequest, _handler: object = None) -> requests.PreparedRequest:
        # `bearer_flow`'s first steps, inlined: a generator per request costs more than
        # this whole method (benchmarks/bench.py). The 401 steps are `challenge_flow`'s.
        # `_handler`: aiohttp calls a middleware with two arguments; its request's URL
        # is no str either, so it takes the wrong-client path below.
        url = r.url
        prefix, cache, hook = self._fast
        try:
            fast = url.startswith(prefix)  # type: ignore[union-attr]
        except AttributeError:  # no URL yet, or another client's request (httpx's, aiohttp's URL is no str)
            if not isinstance(r, requests.PreparedRequest):
                raise self._wrong_client(r) from None
            url, fast = "", False
        if not fast:
            found = self._slow_cache(url or "")
            if found is None:
                drop_authorization(r.headers)
                return r
            cache = found
        # `TokenCache.get_header()`'s fast path, inlined: this runs on every request.
        entry = cache.current
        r.headers["Authorization"] = (
            entry.header if entry is not None and _now() < entry.refresh_at else cache.get_header()
        )
        body = r.body
        if body is None or body.__class__ is bytes or body.__class__ is str:
            r.hooks["response"].append(hook)
        else:
            r.hooks["response"].append(self._stream_hook(body))
        return r

    def _slow_cache(self, url: str) -> TokenCache | None:
        """The cache for `url` if it may get a token (None if not); remembers its origin in `_fast`."""
        if not self._policy.allows_url(url):
            return None
        cache = self.cache_for(url)
        # The policy's answer depends on the origin alone, and so does the scope unless the
        # path picks it (a Foundry project): the next request there takes the fast path.
        prefix = origin_prefix(url) if self._fast[0] != "https://" and not scope_depends_on_path(url) else None
        if prefix is not None:
            self._fast = (prefix, cache, self._hook)
        return cache

    def _stream_hook(self, body: Any) -> _Hook:
        """A 401 hook for a file-like or iterator body: rewind it, or give up on resending."""
        try:
            position: int | None = body.tell() if callable(getattr(body, "seek", None)) else None
        except (OSError, ValueError, AttributeError):
            position = None  # a pipe, socket or closed file: cannot seek back

        def hook(r: requests.Response, **kwargs: Any) -> requests.Response:
            return self._on_response(r, _position=position, _replayable=position is not None, **kwargs)

        return hook

    def _on_response(
        self, r: requests.Response, *, _position: int | None = None, _replayable: bool = True, **kwargs: Any
    ) -> requests.Response:
        if r.status_code != 401:
            return r
        request = r.request
        # requests applies the auth last and a redirect hop copies the header or strips
        # it, so a Bearer header on the request that got the 401 is the one we attached.
        # The cache the token came from: the scope is a function of the host, and
        # requests keeps the header only on redirects to the same host.
        cache = self.cache_for(request.url or "")
        flow = challenge_flow(request, _response(r), _ours(request.headers.get("Authorization")))
        try:
            step = next(flow)
            while step is not request:
                if step is TOKEN:
                    step = send_token(flow, cache.get_header)
                elif step is REPLAYABLE:
                    step = flow.send(_replayable)
                else:
                    assert isinstance(step, Invalidate)
                    step = flow.send(cache.invalidate(step.token, step.claims))
        except StopIteration:
            return r
        except BaseException:
            _release(r)  # a streamed 401 would otherwise hold its connection for ever
            raise
        if _position is not None:
            request.body.seek(_position)
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


TokenRefresh = AzureADTokenAuth
"""The name used by Microsoft's Azure OpenAI cookbook: `TokenRefresh(credential, [scope])`."""
