"""The contenders: each sets `Authorization: Bearer ...` on a `requests.PreparedRequest`.

- floor: assigns a fixed header and nothing else;
- `AzureADTokenAuth` (this library's requests adapter);
- `token_provider(cred)()` + header assignment (this library, for openai);
- azure-identity's `get_bearer_token_provider(cred, scope)()` + header assignment;
- cookbook `TokenRefresh`: the `requests.auth.AuthBase` of Microsoft's Azure OpenAI cookbook,
  re-implemented below exactly as published (no lock).
"""

from __future__ import annotations

import inspect
import itertools
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import requests
from azure.core.credentials import AccessTokenInfo
from azure.identity import get_bearer_token_provider

try:
    import azure_ad_token_auth as lib
except ImportError:  # run from a checkout without the package installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import azure_ad_token_auth as lib

import functools

from azure_ad_token_auth.testing import AsyncFakeCredential, FakeCredential

from ._base import gc_paused, interleaved, perf_ns

__all__ = [
    "ADAPTER",
    "AZID",
    "BODY",
    "COLUMNS",
    "COOKBOOK",
    "ENDPOINT",
    "FIXED",
    "FLOOR",
    "PROVIDER",
    "SCOPE",
    "TOKEN_LENGTH",
    "URL",
    "Auth",
    "CookbookTokenRefresh",
    "FakeCredential",
    "as_openai_asks",
    "endpoint_option",
    "fake_async_credential",
    "fake_credential",
    "floor_auth",
    "lib",
    "make",
    "per_call_ns",
    "per_call_samples",
    "prepared",
]

SCOPE = "https://cognitiveservices.azure.com/.default"
URL = "https://example.openai.azure.com/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21"
BODY = b'{"messages":[{"role":"user","content":"Tell me a joke"}],"max_tokens":16}'
TOKEN_LENGTH = 1_500  # about the size of an Entra ID access token
FIXED = "Bearer " + "x" * TOKEN_LENGTH

Auth = Callable[[requests.PreparedRequest], Any]

# Where the providers are told requests go (checked when they are made; no request is sent).
ENDPOINT = "https://res.openai.azure.com"
FLOOR, ADAPTER, PROVIDER, AZID, COOKBOOK = "floor", "adapter", "provider", "azid", "cookbook"
COLUMNS = {
    FLOOR: "Floor: fixed header",
    ADAPTER: "`AzureADTokenAuth`",
    PROVIDER: "`token_provider`¹",
    AZID: "azure-identity `get_bearer_token_provider`¹",
    COOKBOOK: "cookbook `TokenRefresh`",
}

_serial = itertools.count(1)


def _full_size_token(lifetime: float) -> Callable[[], AccessTokenInfo]:
    """Tokens as long as real ones: header building copies them, and they go on the wire."""

    def mint() -> AccessTokenInfo:
        serial = f"{next(_serial):012d}"
        return AccessTokenInfo(serial + "x" * (TOKEN_LENGTH - len(serial)), int(time.time() + lifetime))

    return mint


def fake_credential(delay: float = 0.0, lifetime: float = 3600.0) -> FakeCredential:
    """A counting credential (`.calls`) that takes `delay` seconds per call and never caches."""
    return FakeCredential(lifetime=lifetime, delay=delay, result=_full_size_token(lifetime))


def fake_async_credential(delay: float = 0.0, lifetime: float = 3600.0) -> AsyncFakeCredential:
    return AsyncFakeCredential(lifetime=lifetime, delay=delay, result=_full_size_token(lifetime))


class CookbookTokenRefresh(requests.auth.AuthBase):
    """Microsoft's Azure OpenAI cookbook `TokenRefresh`, as published (no lock)."""

    def __init__(self, credential: Any, scopes: Sequence[str]) -> None:
        self.credential = credential
        self.scopes = scopes
        self.cached_token: Any = None

    def __call__(self, req: requests.PreparedRequest) -> requests.PreparedRequest:
        if not self.cached_token or self.cached_token.expires_on - time.time() < 300:
            self.cached_token = self.credential.get_token(*self.scopes)
        req.headers["Authorization"] = f"Bearer {self.cached_token.token}"
        return req


def floor_auth(req: requests.PreparedRequest) -> requests.PreparedRequest:
    req.headers["Authorization"] = FIXED
    return req


def as_openai_asks(provider: Callable[[], str]) -> Callable[[], Any]:
    """`provider` called as openai >= 1 calls it, from `AzureOpenAI._get_azure_ad_token` of a
    client holding it (without openai: `provider` itself)."""
    try:
        from openai import AzureOpenAI
    except ImportError:
        return provider
    client = AzureOpenAI(azure_endpoint=ENDPOINT, api_version="2024-10-21", azure_ad_token_provider=provider)
    return client._get_azure_ad_token


def provider_auth(provider: Callable[[], str]) -> Auth:
    ask = as_openai_asks(provider)

    def auth(req: requests.PreparedRequest) -> requests.PreparedRequest:
        req.headers["Authorization"] = "Bearer " + ask()
        return req

    return auth


def endpoint_option(library: ModuleType) -> dict[str, str]:
    """`endpoint=` for the providers of a library that takes it (a baseline may predate it)."""
    return {"endpoint": ENDPOINT} if "endpoint" in inspect.signature(library.token_provider).parameters else {}


def make(kind: str, credential: Any, library: ModuleType = lib, *, allow_http: bool = False) -> Auth:
    """A fresh contender (cold cache) drawing tokens from `credential`; `library` is this
    checkout's package or a baseline copy of it. `allow_http`: the adapter's, for plain-http rows."""
    if kind == FLOOR:
        return floor_auth
    if kind == ADAPTER:
        return library.AzureADTokenAuth(credential, SCOPE, allow_http=allow_http)  # type: ignore[no-any-return]
    if kind == PROVIDER:
        return provider_auth(library.token_provider(credential, SCOPE, **endpoint_option(library)))
    if kind == AZID:
        return provider_auth(get_bearer_token_provider(credential, SCOPE))
    if kind == COOKBOOK:
        return CookbookTokenRefresh(credential, [SCOPE])
    raise ValueError(kind)


def prepared(url: str = URL) -> requests.PreparedRequest:
    return requests.Request("POST", url, data=BODY, headers={"Content-Type": "application/json"}).prepare()


def per_call_ns(auth: Auth, calls: int, url: str = URL) -> float:
    """Mean ns per call of `auth` on one prepared request. Every contender, the floor included,
    clears `request.hooks["response"]` after each call (the adapter appends its 401 hook there),
    so all pay the same bookkeeping."""
    req = prepared(url)
    clear = req.hooks["response"].clear
    with gc_paused():
        start = perf_ns()
        for _ in range(calls):
            auth(req)
            clear()
        elapsed = perf_ns() - start
    return elapsed / calls


def per_call_samples(auths: Mapping[str, Auth], calls: int, rounds: int) -> dict[str, list[float]]:
    """Warm each auth up (filling its cache), then `per_call_ns` of each in interleaved rounds."""
    for auth in auths.values():
        per_call_ns(auth, calls // 10)
    return interleaved({name: functools.partial(per_call_ns, auth, calls) for name, auth in auths.items()}, rounds)
