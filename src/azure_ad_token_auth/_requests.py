"""`AzureADTokenAuth`: the requests adapter (and the cookbook's `TokenRefresh`)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from time import time as _now
from typing import Any

import requests
from requests.cookies import extract_cookies_to_jar

from ._adapter import AdapterBase
from ._policy import claims_from_challenge

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
    adapters; `scopes` one string or a sequence. Keyword options (`refresh_margin`,
    `background_refresh`, `retry_backoff`, `timeout`, `jitter`, `tenant_id`,
    `enable_cae`) configure the cache it creates; see `TokenCache`.

    - A 401 to a request that carried the token drops that token and resends the
      request once with a new one (with the claims of a CAE challenge), provided the
      body can be replayed; the 401 is kept in `response.history`.
    - Plain http is refused except to loopback hosts, unless `allow_http=True`.
    - With `allowed_hosts` (patterns such as `"*.openai.azure.com"`), other hosts get no
      token.
    """

    @functools.cached_property
    def _hook(self) -> _Hook:
        return self._on_response  # bound once, not per request

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        url = r.url or ""
        # https with no host list, the common case, needs no look-up (urllib3 has
        # lowercased the scheme of a prepared URL).
        if not (self._https_fast_path and url.startswith("https://")) and not self._policy.allows_url(url):
            return r
        # `TokenCache.get_header()`'s fast path, inlined: this runs on every request.
        entry = self.cache.current
        r.headers["Authorization"] = (
            entry.header if entry is not None and _now() < entry.refresh_at else self.cache.get_header()
        )
        body = r.body
        if body is None or body.__class__ is bytes or body.__class__ is str:
            r.hooks["response"].append(self._hook)
        else:
            r.hooks["response"].append(self._stream_hook(body))
        return r

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
        sent = request.headers.get("Authorization", "")
        # Only a request that carried our token: after a cross-host redirect requests has
        # stripped it, and that host must not get one from us.
        if not sent.startswith("Bearer "):
            return r
        rejected = sent[7:]
        claims = claims_from_challenge(r.headers.get("WWW-Authenticate"))
        if not self.cache.invalidate(rejected, claims):
            return r
        # Even when the body cannot be replayed the token was dropped, so the caller's
        # next request gets a fresh one; this one goes back as it is rather than be
        # resent with an empty body.
        if not _replayable:
            return r
        token = self.cache.get_token()
        if token == rejected:  # the credential handed back the same token: no use resending
            return r
        if _position is not None:
            request.body.seek(_position)  # type: ignore[union-attr]
        # Drain and close the 401 so its connection returns to the pool.
        r.content  # noqa: B018
        r.close()
        prep = request.copy()
        extract_cookies_to_jar(prep._cookies, request, r.raw)  # type: ignore[attr-defined,no-untyped-call]
        prep.prepare_cookies(prep._cookies)  # type: ignore[attr-defined]
        prep.headers["Authorization"] = "Bearer " + token
        retried: requests.Response = r.connection.send(prep, **kwargs)
        retried.history.append(r)
        retried.request = prep
        return retried


TokenRefresh = AzureADTokenAuth
"""The name used by Microsoft's Azure OpenAI cookbook: `TokenRefresh(credential, [scope])`."""
