"""What the openai >= 1 test modules share: the openai under test, its module settings
snapshot, the request helpers and the refusal check.

Importing this module skips the importing test module unless openai >= 1 is installed.
"""

from __future__ import annotations

import contextlib
import importlib
import re
import ssl
from collections.abc import Iterator
from typing import Any

import pytest

from azure_ad_token_auth import uninstall_openai_session
from azure_ad_token_auth.testing import AsyncFakeCredential, AzureOpenAIStandIn, FakeCredential, TokenRegistry

openai: Any = pytest.importorskip("openai")
if int(openai.__version__.split(".")[0]) < 1:
    pytest.skip(f"needs openai >= 1, found {openai.__version__}", allow_module_level=True)

OPENAI_VERSION = tuple(int(part) for part in re.findall(r"\d+", openai.__version__)[:2])
# openai < 1.106 sends a callable api_key's repr as the key.
needs_callable_api_key = pytest.mark.skipif(OPENAI_VERSION < (1, 106), reason="callable api_key needs openai >= 1.106")

# Verified on 1.55.3 (the `lowest` session) and later; on 1.7 a copy made with
# `with_options(base_url=...)` escapes the check and a 401 is not resent.
needs_module_client_hooks = pytest.mark.skipif(
    OPENAI_VERSION < (1, 55), reason="the module client's per-request checks need openai >= 1.55.3"
)

API_VERSION = "2024-06-01"
MESSAGES = [{"role": "user", "content": "The food was delicious and the waiter"}]
# Settings openai reads from the environment when its own are unset.
OPENAI_ENV = (
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "AZURE_OPENAI_API_KEY",
    "AZURE_OPENAI_AD_TOKEN",
    "AZURE_OPENAI_ENDPOINT",
    "OPENAI_API_VERSION",
    "OPENAI_API_TYPE",
)

KINDS = [AsyncFakeCredential, FakeCredential]
KIND_IDS = ["async-credential", "sync-credential"]

GOVERNMENT = "https://cognitiveservices.azure.us/.default"
CHINA = "https://cognitiveservices.azure.cn/.default"
PUBLIC = "https://cognitiveservices.azure.com/.default"


@contextlib.contextmanager
def refused(match: str) -> Iterator[None]:
    """Our refusal, raised as is (openai 1.7, 3.x) or wrapped in APIConnectionError (1.x, 2.x)."""
    from azure_ad_token_auth import InsecureTransportError

    with pytest.raises((InsecureTransportError, openai.APIConnectionError)) as caught:
        yield
    error = caught.value if isinstance(caught.value, InsecureTransportError) else caught.value.__cause__
    assert isinstance(error, InsecureTransportError), caught.value
    assert re.search(match, str(error)), str(error)


@pytest.fixture
def openai_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """openai's module settings at their defaults, and no module client, before and after.

    openai builds its module client once, on first use, and starts another only through its
    private `_reset_client()`: a new run of its `__init__` (`importlib.reload`) gives each test
    a fresh module state by public means.
    """
    for name in OPENAI_ENV:
        monkeypatch.delenv(name, raising=False)
    importlib.reload(openai)
    yield
    uninstall_openai_session()
    importlib.reload(openai)


def seen_tokens(stand_in: AzureOpenAIStandIn) -> set[tuple[str, str | None]]:
    return {(r.token_status, r.token_fingerprint) for r in stand_in.requests}


def module_chat() -> Any:
    return openai.chat.completions.create(model="gpt-4o", messages=MESSAGES)


def openai_httpx() -> Any:
    """The httpx package this openai sends with (httpx2 from openai 3.0), told by the base
    class of `openai.DefaultHttpxClient` (openai < 1.17 has none, and uses httpx)."""
    default = getattr(openai, "DefaultHttpxClient", None)
    bases = {klass.__module__.partition(".")[0] for klass in getattr(default, "__mro__", ())}
    return importlib.import_module("httpx2" if "httpx2" in bases else "httpx")


def through(proxy_url: str, *, asynchronous: bool = False) -> Any:
    """An http client of the package this openai uses, sending everything through `proxy_url`."""
    http = openai_httpx()
    client = http.AsyncClient if asynchronous else http.Client
    try:
        return client(proxy=proxy_url)
    except TypeError:  # httpx < 0.26
        return client(proxies=proxy_url)


class ScopeRecorder(FakeCredential):
    """A FakeCredential that remembers the scopes of each call."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.asked: list[tuple[str, ...]] = []

    def get_token_info(self, *scopes: str, options: Any = None) -> Any:
        self.asked.append(scopes)
        return super().get_token_info(*scopes, options=options)


@contextlib.contextmanager
def tls_stand_in(registry: TokenRegistry) -> Iterator[tuple[AzureOpenAIStandIn, ssl.SSLContext]]:
    """An `AzureOpenAIStandIn` serving https (the kit's throwaway CA), and a client context trusting it."""
    pytest.importorskip("trustme")
    with AzureOpenAIStandIn(registry=registry) as stand_in:
        yield stand_in, stand_in.ssl_context()
