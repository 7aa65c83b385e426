"""`AzureADHttpxAuth` for httpx2 (openai 3.x's HTTP client); needs httpx2 installed."""

from __future__ import annotations

from ._extras import missing_extra

try:
    import httpx2
except ModuleNotFoundError as error:
    raise missing_extra(error, "httpx2", "azure_ad_token_auth.httpx2") from error

from ._httpx_auth import BearerAuthMixin

__all__ = ["AzureADHttpxAuth"]


class AzureADHttpxAuth(BearerAuthMixin[httpx2.Request, httpx2.Response], httpx2.Auth):
    """Sets `Authorization: Bearer <token>` on httpx2 requests, from a `TokenCache`.

    ```python
    client = httpx2.Client(auth=AzureADHttpxAuth())            # DefaultAzureCredential
    client = httpx2.AsyncClient(auth=AzureADHttpxAuth(credential))

    auth = AzureADHttpxAuth()  # openai 3.x: the 401 resend on top of the provider
    AzureOpenAI(azure_endpoint=..., api_version=..., azure_ad_token_provider=token_provider(auth.cache),
                http_client=httpx2.Client(auth=auth))
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

    _client = "httpx2"
    _replayable_stream = httpx2.ByteStream
