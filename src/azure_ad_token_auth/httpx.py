"""`AzureADHttpxAuth` for httpx (`httpx.Client`, `httpx.AsyncClient`); needs httpx installed."""

from __future__ import annotations

from ._extras import missing_extra

try:
    import httpx
except ModuleNotFoundError as error:
    raise missing_extra(error, "httpx", "azure_ad_token_auth.httpx") from error

from ._httpx_auth import BearerAuthMixin

__all__ = ["AzureADHttpxAuth"]


class AzureADHttpxAuth(BearerAuthMixin[httpx.Request, httpx.Response], httpx.Auth):
    """Sets `Authorization: Bearer <token>` on httpx requests, from a `TokenCache`.

    ```python
    client = httpx.Client(auth=AzureADHttpxAuth())            # DefaultAzureCredential
    client = httpx.AsyncClient(auth=AzureADHttpxAuth(credential))
    ```

    Same arguments and rules as `azure_ad_token_auth.AzureADTokenAuth`: `credential`
    may be a `TokenCache` shared with other adapters; a 401 to our token is resent once
    with a new one (claims of a CAE challenge included) when the body is in memory; plain
    http only with `allow_http=True`; `allowed_hosts` limits who gets the token (other
    hosts get no `Authorization` header at all, not even one openai set); with `scopes`
    left out the scope follows each request's cloud. `AsyncClient` never blocks its
    event loop on the credential. `.cache` is the default scope's
    `TokenCache`, `.cache_for(url)` the one a request to `url` uses.
    """

    _client = "httpx"
    _replayable_stream = httpx.ByteStream
