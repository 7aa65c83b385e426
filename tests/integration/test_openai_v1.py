"""Token providers and `install_openai_session` with the real openai >= 1 clients, against
the loopback Azure OpenAI stand-in."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from azure_ad_token_auth import (
    async_token_provider,
    install_openai_session,
    token_provider,
    uninstall_openai_session,
)
from azure_ad_token_auth.testing import (
    AsyncFakeCredential,
    AzureOpenAIStandIn,
    FakeCredential,
    ManagedIdentityEndpoint,
    TokenRegistry,
    fingerprint,
)
from conftest import assert_no_token_in

openai: Any = pytest.importorskip("openai")
if int(openai.__version__.split(".")[0]) < 1:
    pytest.skip(f"needs openai >= 1, found {openai.__version__}", allow_module_level=True)

pytestmark = pytest.mark.openai1

OPENAI_VERSION = tuple(int(part) for part in re.findall(r"\d+", openai.__version__)[:2])
# openai < 1.106 sends a callable api_key's repr as the key.
needs_callable_api_key = pytest.mark.skipif(OPENAI_VERSION < (1, 106), reason="callable api_key needs openai >= 1.106")


# Verified on 1.55.3 (the `lowest` session) and later; on 1.7 a copy made with
# `with_options(base_url=...)` escapes the check and a 401 is not resent.
needs_module_client_hooks = pytest.mark.skipif(
    OPENAI_VERSION < (1, 55), reason="the module client's per-request checks need openai >= 1.55.3"
)


@contextlib.contextmanager
def refused(match: str) -> Iterator[None]:
    """Our refusal, raised as is (openai 1.7, 3.x) or wrapped in APIConnectionError (1.x, 2.x)."""
    from azure_ad_token_auth import InsecureTransportError

    with pytest.raises((InsecureTransportError, openai.APIConnectionError)) as caught:
        yield
    error = caught.value if isinstance(caught.value, InsecureTransportError) else caught.value.__cause__
    assert isinstance(error, InsecureTransportError), caught.value
    assert re.search(match, str(error)), str(error)


API_VERSION = "2024-06-01"
MESSAGES = [{"role": "user", "content": "The food was delicious and the waiter"}]
GLOBALS = (
    "api_key",
    "api_type",
    "azure_endpoint",
    "api_version",
    "azure_ad_token",
    "azure_ad_token_provider",
    "base_url",
    "max_retries",
    "http_client",
)
# Settings openai reads from the environment when its own are unset.
OPENAI_ENV = (
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "AZURE_OPENAI_API_KEY",
    "AZURE_OPENAI_AD_TOKEN",
    "AZURE_OPENAI_ENDPOINT",
    "OPENAI_API_VERSION",
)

KINDS = [AsyncFakeCredential, FakeCredential]
KIND_IDS = ["async-credential", "sync-credential"]


@pytest.fixture(autouse=True)
def openai_globals(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Snapshot openai's module settings; put them back (uninstalled, client reset) after."""
    for name in OPENAI_ENV:
        monkeypatch.delenv(name, raising=False)
    saved = {name: getattr(openai, name) for name in GLOBALS}
    openai._reset_client()
    yield
    uninstall_openai_session()
    for name, value in saved.items():
        setattr(openai, name, value)
    openai._reset_client()


@pytest.fixture
def fake(cred: FakeCredential) -> FakeCredential:
    return cred


@pytest.fixture
def stand_in(server: AzureOpenAIStandIn) -> AzureOpenAIStandIn:
    return server


def seen_tokens(stand_in: AzureOpenAIStandIn) -> set[tuple[str, str | None]]:
    return {(r.token_status, r.token_fingerprint) for r in stand_in.requests}


# -- AzureOpenAI / AsyncAzureOpenAI with a provider ----------------------------------------


def test_azure_openai_chat_and_completions_share_one_token(stand_in: AzureOpenAIStandIn, fake: FakeCredential) -> None:
    with openai.AzureOpenAI(
        azure_endpoint=stand_in.base_url, api_version=API_VERSION, azure_ad_token_provider=token_provider(fake)
    ) as client:
        for _ in range(25):
            chat = client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
            assert chat.choices[0].message.content == stand_in.completion
            completion = client.completions.create(model="gpt35", prompt="The food was", max_tokens=10)
            assert completion.choices[0].text == stand_in.completion
    assert fake.calls == 1
    assert stand_in.count == 50
    assert seen_tokens(stand_in) == {("valid", fingerprint(fake.tokens[0]))}
    paths = {r.path for r in stand_in.requests}
    assert paths == {"/openai/deployments/gpt-4o/chat/completions", "/openai/deployments/gpt35/completions"}


def test_openai_retries_reuse_the_cached_token(stand_in: AzureOpenAIStandIn, fake: FakeCredential) -> None:
    stand_in.fail_next(2, status=500, headers={"retry-after-ms": "1"})
    with openai.AzureOpenAI(
        azure_endpoint=stand_in.base_url,
        api_version=API_VERSION,
        azure_ad_token_provider=token_provider(fake),
        max_retries=2,
    ) as client:
        chat = client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert chat.choices[0].message.content == stand_in.completion
    assert [r.status for r in stand_in.requests] == [500, 500, 200]
    assert seen_tokens(stand_in) == {("valid", fingerprint(fake.tokens[0]))}
    assert fake.calls == 1


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
async def test_async_azure_openai_concurrent_cold_start_one_call(
    stand_in: AzureOpenAIStandIn, registry: TokenRegistry, kind: type[FakeCredential]
) -> None:
    credential = kind(registry=registry, delay=0.2)
    async with openai.AsyncAzureOpenAI(
        azure_endpoint=stand_in.base_url,
        api_version=API_VERSION,
        azure_ad_token_provider=async_token_provider(credential),
    ) as client:
        replies = await asyncio.gather(
            *(client.chat.completions.create(model="gpt-4o", messages=MESSAGES) for _ in range(50))
        )
    assert [r.choices[0].message.content for r in replies] == [stand_in.completion] * 50
    assert credential.calls == 1
    assert stand_in.count == 50
    assert seen_tokens(stand_in) == {("valid", fingerprint(credential.tokens[0]))}


# -- the v1 endpoint: OpenAI(base_url=.../openai/v1/, api_key=<callable>) ---------------------


@needs_callable_api_key
def test_openai_v1_endpoint_with_callable_api_key(stand_in: AzureOpenAIStandIn, fake: FakeCredential) -> None:
    with openai.OpenAI(base_url=stand_in.base_url + "/openai/v1/", api_key=token_provider(fake)) as client:
        for _ in range(10):
            chat = client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
            assert chat.choices[0].message.content == stand_in.completion
    assert {r.path for r in stand_in.requests} == {"/openai/v1/chat/completions"}
    assert seen_tokens(stand_in) == {("valid", fingerprint(fake.tokens[0]))}
    assert fake.calls == 1


@needs_callable_api_key
async def test_async_openai_v1_endpoint_with_async_callable_api_key(
    stand_in: AzureOpenAIStandIn, registry: TokenRegistry
) -> None:
    credential = AsyncFakeCredential(registry=registry, delay=0.1)
    async with openai.AsyncOpenAI(
        base_url=stand_in.base_url + "/openai/v1/", api_key=async_token_provider(credential)
    ) as client:
        replies = await asyncio.gather(
            *(client.completions.create(model="gpt35", prompt="The food was") for _ in range(20))
        )
    assert {r.choices[0].text for r in replies} == {stand_in.completion}
    assert {r.path for r in stand_in.requests} == {"/openai/v1/completions"}
    assert seen_tokens(stand_in) == {("valid", fingerprint(credential.tokens[0]))}
    assert credential.calls == 1


# -- the module-level client ----------------------------------------------------------------


def module_chat() -> Any:
    return openai.chat.completions.create(model="gpt-4o", messages=MESSAGES)


def test_module_client(stand_in: AzureOpenAIStandIn, fake: FakeCredential) -> None:
    install_openai_session(fake)
    openai.azure_endpoint = stand_in.base_url
    openai.api_version = API_VERSION
    for _ in range(5):
        assert module_chat().choices[0].message.content == stand_in.completion
    assert stand_in.count == 5
    assert seen_tokens(stand_in) == {("valid", fingerprint(fake.tokens[0]))}
    assert fake.calls == 1
    assert_no_token_in(repr(openai.azure_ad_token_provider), fake.tokens)


def test_module_client_refuses_plain_http_to_a_remote_host(fake: FakeCredential) -> None:
    install_openai_session(fake)
    openai.azure_endpoint = "http://example.invalid"
    openai.api_version = API_VERSION
    openai.max_retries = 0
    with refused("example.invalid"):
        module_chat()
    assert fake.calls == 0  # no token was even fetched


def test_module_client_applies_allowed_hosts(stand_in: AzureOpenAIStandIn, fake: FakeCredential) -> None:
    install_openai_session(fake, allowed_hosts=["*.openai.azure.com"])
    openai.azure_endpoint = stand_in.base_url  # loopback, but not in the list
    openai.api_version = API_VERSION
    openai.max_retries = 0
    with refused("allowed_hosts"):
        module_chat()
    assert stand_in.count == 0
    assert fake.calls == 0


@needs_module_client_hooks
def test_module_client_copies_with_another_base_url_are_checked_per_request(
    stand_in: AzureOpenAIStandIn, registry: TokenRegistry, fake: FakeCredential
) -> None:
    """`with_options(base_url=...)` copies share the module client's http client, whose auth
    applies the https rule and `allowed_hosts` to the URL each request really goes to."""
    from azure_ad_token_auth import InsecureTransportError

    install_openai_session(fake, allowed_hosts=["127.0.0.1"])
    openai.azure_endpoint = stand_in.base_url
    openai.api_version = API_VERSION
    openai.max_retries = 0
    assert module_chat().choices[0].message.content == stand_in.completion
    module_client = openai._load_client()
    for elsewhere in ("http://elsewhere.invalid/openai/", "https://elsewhere.invalid/openai/"):
        copy = module_client.with_options(base_url=elsewhere)
        with pytest.raises(Exception) as caught:
            copy.chat.completions.create(model="gpt-4o", messages=MESSAGES)
        error = caught.value if isinstance(caught.value, InsecureTransportError) else caught.value.__cause__
        assert isinstance(error, InsecureTransportError), caught.value
    with AzureOpenAIStandIn(registry=registry) as other:  # another allowed host: gets the token
        copy = module_client.with_options(base_url=other.base_url + "/openai/")
        assert copy.chat.completions.create(model="gpt-4o", messages=MESSAGES).choices
        assert [r.token_fingerprint for r in other.requests] == [fingerprint(fake.tokens[0])]
    assert fake.calls == 1


@needs_module_client_hooks
def test_module_client_resends_once_after_a_401(stand_in: AzureOpenAIStandIn, fake: FakeCredential) -> None:
    install_openai_session(fake)
    openai.azure_endpoint = stand_in.base_url
    openai.api_version = API_VERSION
    openai.max_retries = 0
    stand_in.fail_next(1, status=401)
    assert module_chat().choices[0].message.content == stand_in.completion
    assert [r.token_fingerprint for r in stand_in.requests] == [fingerprint(t) for t in fake.tokens]


@pytest.mark.skipif(
    not hasattr(openai, "DefaultHttpxClient"), reason="openai.DefaultHttpxClient is newer than this openai"
)
def test_module_client_with_the_applications_own_http_client_is_left_alone(
    stand_in: AzureOpenAIStandIn, fake: FakeCredential
) -> None:
    own = openai.DefaultHttpxClient()
    openai.http_client = own
    install_openai_session(fake)
    assert openai.http_client is own
    openai.azure_endpoint = stand_in.base_url
    openai.api_version = API_VERSION
    assert module_chat().choices[0].message.content == stand_in.completion
    assert [r.token_fingerprint for r in stand_in.requests] == [fingerprint(fake.tokens[0])]
    own.close()


def test_module_client_built_before_install_with_an_api_key(stand_in: AzureOpenAIStandIn, fake: FakeCredential) -> None:
    """Install rebuilds a client openai already made, and clears the api_key openai
    refuses alongside a provider; uninstall brings the key back."""
    openai.api_type = "azure"
    openai.azure_endpoint = stand_in.base_url
    openai.api_version = API_VERSION
    openai.api_key = "app-key"
    with pytest.raises(openai.AuthenticationError):
        module_chat()
    # openai < 2.34 also sends the key as a bearer token, which the stand-in does not know.
    assert stand_in.requests[-1].token_status in ("missing", "unknown")
    assert "api-key" in stand_in.requests[-1].headers

    install_openai_session(fake)
    assert openai.api_key is None
    assert callable(openai.azure_ad_token_provider)
    assert module_chat().choices[0].message.content == stand_in.completion
    assert stand_in.requests[-1].token_status == "valid"
    assert stand_in.requests[-1].token_fingerprint == fingerprint(fake.tokens[0])

    assert uninstall_openai_session() is True
    assert openai.api_key == "app-key"
    assert openai.azure_ad_token_provider is None
    assert openai.api_type == "azure"
    with pytest.raises(openai.AuthenticationError):
        module_chat()
    assert stand_in.requests[-1].token_status in ("missing", "unknown")
    assert fake.calls == 1


def test_install_clears_a_static_azure_ad_token_and_uninstall_restores_it(
    stand_in: AzureOpenAIStandIn, fake: FakeCredential
) -> None:
    openai.api_type = None
    openai.azure_ad_token = "static-token-from-the-app"
    install_openai_session(fake)
    assert (openai.api_type, openai.azure_ad_token, openai.api_key) == ("azure", None, None)
    openai.azure_endpoint = stand_in.base_url
    openai.api_version = API_VERSION
    module_chat()
    assert seen_tokens(stand_in) == {("valid", fingerprint(fake.tokens[0]))}
    uninstall_openai_session()
    assert openai.api_type is None
    assert openai.azure_ad_token == "static-token-from-the-app"
    assert openai.azure_ad_token_provider is None


# -- azure-identity's real credentials against the loopback managed identity ----------------


async def test_aio_managed_identity_credential_with_async_azure_openai(
    stand_in: AzureOpenAIStandIn, registry: TokenRegistry
) -> None:
    pytest.importorskip("aiohttp")
    from azure.identity.aio import ManagedIdentityCredential

    with ManagedIdentityEndpoint(registry=registry) as mi, mi.patched_env():
        credential = ManagedIdentityCredential()
        try:
            async with openai.AsyncAzureOpenAI(
                azure_endpoint=stand_in.base_url,
                api_version=API_VERSION,
                azure_ad_token_provider=async_token_provider(credential),
            ) as client:
                replies = await asyncio.gather(
                    *(client.chat.completions.create(model="gpt-4o", messages=MESSAGES) for _ in range(30))
                )
        finally:
            await credential.close()
        assert mi.calls == 1
    assert {r.choices[0].message.content for r in replies} == {stand_in.completion}
    assert stand_in.count == 30
    assert {r.token_status for r in stand_in.requests} == {"valid"}
    assert len({r.token_fingerprint for r in stand_in.requests}) == 1


def test_default_azure_credential_with_azure_openai(stand_in: AzureOpenAIStandIn, registry: TokenRegistry) -> None:
    from azure.identity import DefaultAzureCredential

    with ManagedIdentityEndpoint(registry=registry) as mi, mi.patched_env():
        credential = DefaultAzureCredential()
        try:
            client = openai.AzureOpenAI(
                azure_endpoint=stand_in.base_url,
                api_version=API_VERSION,
                azure_ad_token_provider=token_provider(credential),
            )
            with client, ThreadPoolExecutor(8) as pool:
                replies = list(
                    pool.map(lambda _: client.chat.completions.create(model="gpt-4o", messages=MESSAGES), range(24))
                )
        finally:
            credential.close()
        assert mi.calls == 1
    assert {r.choices[0].message.content for r in replies} == {stand_in.completion}
    assert stand_in.count == 24
    assert {r.token_status for r in stand_in.requests} == {"valid"}
    assert len({r.token_fingerprint for r in stand_in.requests}) == 1


def test_module_client_checks_a_base_url_set_after_install(stand_in: AzureOpenAIStandIn, fake: FakeCredential) -> None:
    install_openai_session(fake, allowed_hosts=["*.openai.azure.com"])
    openai.azure_endpoint = "https://res.openai.azure.com"
    openai.api_version = API_VERSION
    openai.max_retries = 0
    openai._load_client()  # built for the allowed endpoint...
    openai.base_url = stand_in.base_url + "/openai/"  # ...then pointed elsewhere: where it really sends
    with refused("allowed_hosts"):
        module_chat()
    assert stand_in.count == 0
    assert fake.calls == 0


# -- never a placeholder: the application's own http client, realtime (websocket) --------------


def _openai_httpx() -> Any:
    """The httpx package this openai sends with (httpx2 from openai 3.0)."""
    import importlib

    base = importlib.import_module("openai._base_client")
    return getattr(base, "httpx2", None) or importlib.import_module("httpx")


def test_module_client_with_an_http_client_set_after_install_sends_the_real_token(
    stand_in: AzureOpenAIStandIn, fake: FakeCredential
) -> None:
    """As openai's own module-client tests do: `openai.http_client = ...` after install.
    The provider hands openai the real token (it used to hand a placeholder, expecting
    our http client's auth to replace it)."""
    install_openai_session(fake)
    openai.azure_endpoint = stand_in.base_url
    openai.api_version = API_VERSION
    with _openai_httpx().Client() as own:
        openai.http_client = own
        assert module_chat().choices[0].message.content == stand_in.completion
    assert seen_tokens(stand_in) == {("valid", fingerprint(fake.tokens[0]))}
    assert fake.calls == 1


def test_module_client_with_an_http_client_set_after_install_still_refuses_plain_http_off_the_machine(
    fake: FakeCredential,
) -> None:
    install_openai_session(fake)
    openai.azure_endpoint = "http://example.invalid"
    openai.api_version = API_VERSION
    openai.max_retries = 0
    with _openai_httpx().Client() as own:
        openai.http_client = own
        with refused("example.invalid"):
            module_chat()
    assert fake.calls == 0


def test_module_client_with_an_own_http_client_that_proxies_loopback_http_is_refused(
    stand_in: AzureOpenAIStandIn, fake: FakeCredential
) -> None:
    """The application's own http client mounts a proxy for http://: the provider asks that
    client (its own `_transport_for_url`), not the environment, and refuses: the token
    for a plain-http loopback endpoint would reach the proxy in clear."""
    from proxy_helpers import Proxy  # the recording proxy on 127.0.0.2

    proxy = Proxy("http")
    httpx_module = _openai_httpx()
    install_openai_session(fake)
    openai.azure_endpoint = stand_in.base_url
    openai.api_version = API_VERSION
    openai.max_retries = 0
    try:
        with httpx_module.Client(
            mounts={"http://": httpx_module.HTTPTransport(proxy=httpx_module.Proxy(proxy.url))}
        ) as own:
            openai.http_client = own
            with refused("through a proxy"):
                module_chat()
        assert not proxy.used and fake.calls == 0 and stand_in.count == 0
    finally:
        proxy.close()


class WebSocketStandIn:
    """A loopback websocket server that records each handshake's headers and refuses it (403)."""

    def __init__(self) -> None:
        from websockets.sync.server import serve

        self.handshakes: list[dict[str, str]] = []

        def process_request(connection: Any, request: Any) -> Any:
            self.handshakes.append({k.lower(): v for k, v in request.headers.raw_items()})
            return connection.respond(403, "stand-in: handshake recorded\n")

        self._server = serve(lambda ws: None, "127.0.0.1", 0, process_request=process_request)
        self.url = f"ws://127.0.0.1:{self._server.socket.getsockname()[1]}/openai"
        import threading

        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._thread.join(5)


@pytest.fixture
def websocket_stand_in() -> Iterator[WebSocketStandIn]:
    pytest.importorskip("websockets.sync.server", reason="realtime needs the websockets package")
    server = WebSocketStandIn()
    yield server
    server.close()


def realtime_connect(client: Any) -> None:
    realtime = getattr(client, "realtime", None) or client.beta.realtime
    with realtime.connect(model="gpt-4o-realtime-preview"):
        pass


def _has_realtime() -> bool:
    import importlib.util

    names = ("openai.resources.realtime", "openai.resources.beta.realtime")
    return any(importlib.util.find_spec(name) is not None for name in names)


needs_realtime = pytest.mark.skipif(not _has_realtime(), reason="no realtime API in this openai")


@needs_realtime
def test_module_client_realtime_handshake_carries_the_real_token(
    stand_in: AzureOpenAIStandIn, fake: FakeCredential, websocket_stand_in: WebSocketStandIn
) -> None:
    install_openai_session(fake)
    openai.azure_endpoint = stand_in.base_url
    openai.api_version = API_VERSION
    client = openai._load_client().with_options(websocket_base_url=websocket_stand_in.url)
    with pytest.raises(Exception, match="403"):
        realtime_connect(client)
    (handshake,) = websocket_stand_in.handshakes
    assert handshake["authorization"] == "Bearer " + fake.tokens[0]
    assert fake.calls == 1


@needs_realtime
def test_module_client_realtime_refuses_a_plain_websocket_off_the_machine(
    stand_in: AzureOpenAIStandIn, fake: FakeCredential
) -> None:
    pytest.importorskip("websockets.sync.client", reason="realtime needs the websockets package")
    install_openai_session(fake)
    openai.azure_endpoint = stand_in.base_url
    openai.api_version = API_VERSION
    client = openai._load_client().with_options(websocket_base_url="ws://example.invalid/openai")
    with refused("example.invalid"):
        realtime_connect(client)
    assert fake.calls == 0


@needs_realtime
@pytest.mark.parametrize("variable", ["HTTPS_PROXY", "ws_proxy"])
def test_module_client_realtime_refuses_a_plain_websocket_the_websocket_client_would_proxy(
    stand_in: AzureOpenAIStandIn,
    fake: FakeCredential,
    websocket_stand_in: WebSocketStandIn,
    no_proxy_env: pytest.MonkeyPatch,
    variable: str,
) -> None:
    """websockets sends a `ws://` handshake through `ws_proxy`, else `HTTPS_PROXY`, else
    `HTTP_PROXY`: with no `HTTP_PROXY` at all, the handshake (and its token, in clear inside
    the tunnel) still goes through the proxy. The check asks websockets itself."""
    from websockets.sync.client import connect

    from proxy_helpers import Proxy  # the recording proxy on 127.0.0.2

    proxy = Proxy("http")
    no_proxy_env.setenv(variable, proxy.url)
    try:
        with pytest.raises(Exception):
            connect(websocket_stand_in.url, open_timeout=5).close()
        assert proxy.used, "websockets sends the handshake through the proxy"
        proxy.forget()
        install_openai_session(fake)
        openai.azure_endpoint = stand_in.base_url
        openai.api_version = API_VERSION
        client = openai._load_client().with_options(websocket_base_url=websocket_stand_in.url)
        with refused("through a proxy"):
            realtime_connect(client)
        assert not proxy.used and fake.calls == 0 and not websocket_stand_in.handshakes
    finally:
        proxy.close()


# -- the scope follows the configured endpoint's cloud ------------------------------------------

GOVERNMENT = "https://cognitiveservices.azure.us/.default"
CHINA = "https://cognitiveservices.azure.cn/.default"
PUBLIC = "https://cognitiveservices.azure.com/.default"


class ScopeRecorder(FakeCredential):
    """A FakeCredential that remembers the scopes of each call."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.asked: list[tuple[str, ...]] = []

    def get_token_info(self, *scopes: str, options: Any = None) -> Any:
        self.asked.append(scopes)
        return super().get_token_info(*scopes, options=options)


@pytest.mark.parametrize(
    ("endpoint", "scope"),
    [
        ("https://res.openai.azure.us", GOVERNMENT),
        ("https://res.cognitiveservices.azure.cn", CHINA),
        ("https://res.openai.azure.com", PUBLIC),
        ("https://example.test", PUBLIC),
    ],
)
def test_install_with_no_scopes_takes_the_scope_of_an_endpoint_set_after_install(endpoint: str, scope: str) -> None:
    recorder = ScopeRecorder()
    auth = install_openai_session(recorder)
    openai.azure_endpoint = endpoint  # after install: read when the token is needed
    openai.api_version = API_VERSION
    openai._load_client()
    assert openai.azure_ad_token_provider() == recorder.tokens[0]  # what openai calls; nothing is sent
    assert recorder.asked == [(scope,)]
    assert auth.cache.scopes == (scope,)


def test_install_with_no_scopes_reads_azure_openai_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", "https://res.openai.azure.us")
    recorder = ScopeRecorder()
    install_openai_session(recorder)
    openai.api_version = API_VERSION
    openai._load_client()
    openai.azure_ad_token_provider()
    assert recorder.asked == [(GOVERNMENT,)]


def test_install_with_scopes_given_keeps_them(stand_in: AzureOpenAIStandIn) -> None:
    recorder = ScopeRecorder()
    install_openai_session(recorder, "api://custom/.default")
    openai.azure_endpoint = "https://res.openai.azure.us"
    openai.api_version = API_VERSION
    openai._load_client()
    openai.azure_ad_token_provider()
    assert recorder.asked == [("api://custom/.default",)]


# -- the recommended recipe: a provider that knows its client's endpoint -------------------------


@pytest.mark.parametrize("make", [token_provider, async_token_provider], ids=["sync", "async"])
def test_provider_refuses_a_plain_http_endpoint_off_the_machine_before_anything_is_sent(
    fake: FakeCredential, make: Any
) -> None:
    from azure_ad_token_auth import InsecureTransportError

    endpoint = "http://example.invalid"
    with pytest.raises(InsecureTransportError, match="example.invalid"):
        openai.AzureOpenAI(
            azure_endpoint=endpoint, api_version=API_VERSION, azure_ad_token_provider=make(fake, endpoint=endpoint)
        )
    assert fake.calls == 0


def test_provider_reads_azure_openai_endpoint_as_openai_does(
    fake: FakeCredential, monkeypatch: pytest.MonkeyPatch
) -> None:
    from azure_ad_token_auth import InsecureTransportError

    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", "http://example.invalid")
    with pytest.raises(InsecureTransportError, match="example.invalid"):
        openai.AzureOpenAI(api_version=API_VERSION, azure_ad_token_provider=token_provider(fake))
    assert fake.calls == 0


def test_provider_refuses_plain_http_to_loopback_through_an_environment_proxy(
    stand_in: AzureOpenAIStandIn, fake: FakeCredential, monkeypatch: pytest.MonkeyPatch
) -> None:
    from azure_ad_token_auth import InsecureTransportError

    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.2:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    with pytest.raises(InsecureTransportError, match="proxy"):
        token_provider(fake, endpoint=stand_in.base_url)
    assert fake.calls == 0


def test_provider_applies_allowed_hosts_to_its_endpoint(stand_in: AzureOpenAIStandIn, fake: FakeCredential) -> None:
    from azure_ad_token_auth import InsecureTransportError

    with pytest.raises(InsecureTransportError, match="allowed_hosts"):
        token_provider(fake, endpoint=stand_in.base_url, allowed_hosts=["*.openai.azure.com"])
    with pytest.raises(ValueError, match="endpoint="):
        token_provider(fake, allowed_hosts=["*.openai.azure.com"])  # nothing to apply it to
    assert fake.calls == 0


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
async def test_the_recommended_recipe_works_against_the_loopback_stand_in(
    stand_in: AzureOpenAIStandIn, registry: TokenRegistry, kind: type[FakeCredential]
) -> None:
    credential = kind(registry=registry)
    endpoint = stand_in.base_url
    if kind is FakeCredential:
        with openai.AzureOpenAI(
            azure_endpoint=endpoint,
            api_version=API_VERSION,
            azure_ad_token_provider=token_provider(credential, endpoint=endpoint),
        ) as client:
            reply = client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    else:
        async with openai.AsyncAzureOpenAI(
            azure_endpoint=endpoint,
            api_version=API_VERSION,
            azure_ad_token_provider=async_token_provider(credential, endpoint=endpoint),
        ) as aclient:
            reply = await aclient.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert reply.choices[0].message.content == stand_in.completion
    assert seen_tokens(stand_in) == {("valid", fingerprint(credential.tokens[0]))}


@pytest.mark.parametrize(
    ("endpoint", "scope"),
    [
        ("https://res.openai.azure.us", GOVERNMENT),
        ("https://res.openai.azure.cn/", CHINA),
        ("https://res.services.ai.azure.com", PUBLIC),
    ],
)
def test_provider_with_no_scopes_takes_the_scope_of_its_endpoint(endpoint: str, scope: str) -> None:
    recorder = ScopeRecorder()
    provider = token_provider(recorder, endpoint=endpoint)
    assert provider() == recorder.tokens[0]  # nothing is sent
    assert recorder.asked == [(scope,)]
    assert token_provider(ScopeRecorder(), "api://given/.default", endpoint=endpoint).cache.scopes == (  # type: ignore[attr-defined]
        "api://given/.default",
    )


# -- the provider checks the client asking it, at every call ----------------------------------
# Off the machine is a host name sent through a recording proxy on 127.0.0.2: had the token
# been handed over, the proxy would have seen it in clear (and nothing leaves the machine).


@pytest.fixture
def far_proxy() -> Iterator[tuple[str, list[tuple[str, str, str | None]]]]:
    """A recording proxy on 127.0.0.2: `(url, what reached it)`."""
    import http.server
    import threading

    from conftest import _RecordingProxy

    server = http.server.ThreadingHTTPServer(("127.0.0.2", 0), _RecordingProxy)
    server.seen = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.2:{server.server_address[1]}", server.seen  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()


def _through(proxy_url: str, *, asynchronous: bool = False) -> Any:
    """An http client of the package this openai uses, sending everything through `proxy_url`."""
    http = _openai_httpx()
    client = http.AsyncClient if asynchronous else http.Client
    try:
        return client(proxy=proxy_url)
    except TypeError:  # httpx < 0.26
        return client(proxies=proxy_url)


OFF = "http://off-the-machine.example"


def _mismatched_endpoint(fake: FakeCredential, proxy_url: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    provider = token_provider(fake, endpoint="https://res.openai.azure.com")
    return openai.AzureOpenAI(
        azure_endpoint=OFF, api_version=API_VERSION, azure_ad_token_provider=provider, http_client=_through(proxy_url)
    )


def _no_endpoint(fake: FakeCredential, proxy_url: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    return openai.AzureOpenAI(
        azure_endpoint=OFF,
        api_version=API_VERSION,
        azure_ad_token_provider=token_provider(fake),
        http_client=_through(proxy_url),
    )


def _variable_changed_afterwards(fake: FakeCredential, proxy_url: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", "https://res.openai.azure.com")
    provider = token_provider(fake)
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", OFF)
    return openai.AzureOpenAI(
        api_version=API_VERSION, azure_ad_token_provider=provider, http_client=_through(proxy_url)
    )


def _copy_with_another_base_url(fake: FakeCredential, proxy_url: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    endpoint = "https://res.openai.azure.com"
    client = openai.AzureOpenAI(
        azure_endpoint=endpoint,
        api_version=API_VERSION,
        azure_ad_token_provider=token_provider(fake, endpoint=endpoint),
        http_client=_through(proxy_url),
    )
    return client.with_options(base_url=OFF + "/openai/")


@pytest.mark.parametrize(
    "build",
    [_mismatched_endpoint, _no_endpoint, _variable_changed_afterwards, _copy_with_another_base_url],
    ids=["endpoint-mismatch", "no-endpoint", "variable-changed", "with-options-copy"],
)
def test_provider_refuses_a_client_sending_in_clear_off_the_machine(
    fake: FakeCredential,
    far_proxy: tuple[str, list[tuple[str, str, str | None]]],
    monkeypatch: pytest.MonkeyPatch,
    build: Any,
) -> None:
    proxy_url, seen = far_proxy
    client = build(fake, proxy_url, monkeypatch)
    with refused("off-the-machine.example"):
        client.with_options(max_retries=0).chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert seen == []
    assert fake.calls == 0


@needs_callable_api_key
def test_provider_as_api_key_refuses_a_v1_client_sending_in_clear_off_the_machine(
    fake: FakeCredential, far_proxy: tuple[str, list[tuple[str, str, str | None]]]
) -> None:
    proxy_url, seen = far_proxy
    provider = token_provider(fake, endpoint="https://res.openai.azure.com")
    client = openai.OpenAI(base_url=OFF + "/openai/v1/", api_key=provider, http_client=_through(proxy_url))
    with refused("off-the-machine.example"):
        client.with_options(max_retries=0).chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert seen == []
    assert fake.calls == 0


async def test_async_provider_refuses_a_client_sending_in_clear_off_the_machine(
    registry: TokenRegistry, far_proxy: tuple[str, list[tuple[str, str, str | None]]]
) -> None:
    proxy_url, seen = far_proxy
    credential = AsyncFakeCredential(registry=registry)
    client = openai.AsyncAzureOpenAI(
        azure_endpoint=OFF,
        api_version=API_VERSION,
        azure_ad_token_provider=async_token_provider(credential, endpoint="https://res.openai.azure.com"),
        http_client=_through(proxy_url, asynchronous=True),
        max_retries=0,
    )
    with refused("off-the-machine.example"):
        await client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert seen == []
    assert credential.calls == 0


def test_provider_refuses_plain_http_to_loopback_through_the_clients_own_proxy(
    stand_in: AzureOpenAIStandIn, fake: FakeCredential, far_proxy: tuple[str, list[tuple[str, str, str | None]]]
) -> None:
    """The endpoint passes the check at construction (no proxy in the environment), but the
    client's http client sends through a proxy: the token would reach it in clear."""
    proxy_url, seen = far_proxy
    client = openai.AzureOpenAI(
        azure_endpoint=stand_in.base_url,
        api_version=API_VERSION,
        azure_ad_token_provider=token_provider(fake, endpoint=stand_in.base_url),
        http_client=_through(proxy_url),
        max_retries=0,
    )
    with refused("proxy"):
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert seen == []
    assert fake.calls == 0


def test_module_client_refuses_plain_http_to_loopback_through_the_applications_proxied_http_client(
    stand_in: AzureOpenAIStandIn, fake: FakeCredential, far_proxy: tuple[str, list[tuple[str, str, str | None]]]
) -> None:
    proxy_url, seen = far_proxy
    openai.azure_endpoint = stand_in.base_url
    openai.api_version = API_VERSION
    openai.max_retries = 0
    openai.http_client = _through(proxy_url)  # the application's own, set before install
    install_openai_session(fake)
    with refused("proxy"):
        module_chat()
    assert seen == []
    assert fake.calls == 0


@needs_callable_api_key
def test_module_provider_handed_to_another_client_checks_that_client(
    fake: FakeCredential, far_proxy: tuple[str, list[tuple[str, str, str | None]]]
) -> None:
    proxy_url, seen = far_proxy
    openai.azure_endpoint = "https://res.openai.azure.com"
    openai.api_version = API_VERSION
    install_openai_session(fake)
    client = openai.OpenAI(
        base_url=OFF + "/openai/v1/", api_key=openai.azure_ad_token_provider, http_client=_through(proxy_url)
    )
    with refused("off-the-machine.example"):
        client.with_options(max_retries=0).chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert seen == []
    assert fake.calls == 0


@needs_realtime
def test_provider_refuses_a_plain_websocket_off_the_machine(fake: FakeCredential) -> None:
    pytest.importorskip("websockets.sync.client", reason="realtime needs the websockets package")
    endpoint = "https://res.openai.azure.com"
    client = openai.AzureOpenAI(
        azure_endpoint=endpoint,
        api_version=API_VERSION,
        azure_ad_token_provider=token_provider(fake, endpoint=endpoint),
        websocket_base_url="ws://example.invalid/openai",
    )
    with refused("example.invalid"):
        realtime_connect(client)
    assert fake.calls == 0


def test_provider_refuses_plain_http_to_loopback_through_a_transport_it_cannot_read(
    stand_in: AzureOpenAIStandIn, fake: FakeCredential
) -> None:
    """A custom transport may send anywhere (a proxy among them): plain http needs allow_http."""
    http = _openai_httpx()
    sent: list[Any] = []

    def handler(request: Any) -> Any:
        sent.append(request.headers.get("Authorization"))
        return http.Response(500)

    client = openai.AzureOpenAI(
        azure_endpoint=stand_in.base_url,
        api_version=API_VERSION,
        azure_ad_token_provider=token_provider(fake, endpoint=stand_in.base_url),
        http_client=http.Client(transport=http.MockTransport(handler)),
        max_retries=0,
    )
    with refused("MockTransport"):
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert sent == []
    assert fake.calls == 0


def test_provider_with_no_endpoint_called_outside_a_client_warns_once(
    stand_in: AzureOpenAIStandIn, fake: FakeCredential, caplog: pytest.LogCaptureFixture
) -> None:
    """As litellm calls it, then hands the token on: nothing tells the provider where it goes."""
    import logging

    caplog.set_level(logging.WARNING, logger="azure_ad_token_auth")
    in_a_client = token_provider(fake)
    with openai.AzureOpenAI(
        azure_endpoint=stand_in.base_url, api_version=API_VERSION, azure_ad_token_provider=in_a_client
    ) as client:
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)  # checked: the client is known
    token_provider(fake, endpoint=stand_in.base_url)()  # checked when made
    assert caplog.records == []
    unchecked = token_provider(fake)
    assert unchecked() == unchecked() == fake.tokens[0]
    (record,) = caplog.records
    assert record.levelname == "WARNING" and "endpoint=" in record.getMessage()
    assert fake.tokens[0] not in caplog.text


def test_provider_behind_a_wrapper_still_checks_the_client_asking(
    fake: FakeCredential, far_proxy: tuple[str, list[tuple[str, str, str | None]]]
) -> None:
    """openai holds the wrapper, not the provider: the client is found by the method asking."""
    proxy_url, seen = far_proxy
    provider = token_provider(fake, endpoint="https://res.openai.azure.com")
    client = openai.AzureOpenAI(
        azure_endpoint=OFF,
        api_version=API_VERSION,
        azure_ad_token_provider=lambda: provider(),
        http_client=_through(proxy_url),
        max_retries=0,
    )
    with refused("off-the-machine.example"):
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert seen == []
    assert fake.calls == 0


async def test_async_provider_behind_an_async_wrapper_still_checks_the_client_asking(
    registry: TokenRegistry, far_proxy: tuple[str, list[tuple[str, str, str | None]]]
) -> None:
    proxy_url, seen = far_proxy
    credential = AsyncFakeCredential(registry=registry)
    provider = async_token_provider(credential, endpoint="https://res.openai.azure.com")

    async def wrapped() -> str:
        return await provider()

    client = openai.AsyncAzureOpenAI(
        azure_endpoint=OFF,
        api_version=API_VERSION,
        azure_ad_token_provider=wrapped,
        http_client=_through(proxy_url, asynchronous=True),
        max_retries=0,
    )
    with refused("off-the-machine.example"):
        await client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert seen == []
    assert credential.calls == 0


async def test_async_provider_behind_a_sync_wrapper_still_checks_the_client_asking(
    registry: TokenRegistry, far_proxy: tuple[str, list[tuple[str, str, str | None]]]
) -> None:
    """A sync wrapper around the async provider: the provider, checking when called, finds
    openai's token method one frame above the wrapper."""
    proxy_url, seen = far_proxy
    credential = AsyncFakeCredential(registry=registry)
    provider = async_token_provider(credential, endpoint="https://res.openai.azure.com")
    client = openai.AsyncAzureOpenAI(
        azure_endpoint=OFF,
        api_version=API_VERSION,
        azure_ad_token_provider=lambda: provider(),
        http_client=_through(proxy_url, asynchronous=True),
        max_retries=0,
    )
    with refused("off-the-machine.example"):
        await client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert seen == []
    assert credential.calls == 0


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_a_client_sending_over_tls_is_checked_once_and_each_other_client_again(
    fake: FakeCredential, monkeypatch: pytest.MonkeyPatch, asynchronous: bool
) -> None:
    """The per-call fast path: the client found sending only over TLS is not checked again
    while its URLs stay the same; any other client asking is."""
    from azure_ad_token_auth import InsecureTransportError, _asking

    checked: list[str] = []
    check = _asking.check_client

    def counting(client: Any, policy: Any) -> tuple[object, object, object]:
        checked.append(str(client.base_url))
        return check(client, policy)

    monkeypatch.setattr(_asking, "check_client", counting)
    endpoint = "https://res.openai.azure.com"
    if asynchronous:
        client: Any = openai.AsyncAzureOpenAI(
            azure_endpoint=endpoint, api_version=API_VERSION, azure_ad_token_provider=async_token_provider(fake)
        )
    else:
        client = openai.AzureOpenAI(
            azure_endpoint=endpoint, api_version=API_VERSION, azure_ad_token_provider=token_provider(fake)
        )

    def ask(asking: Any) -> Any:
        answer = asking._get_azure_ad_token()
        return asyncio.run(answer) if asynchronous else answer

    assert [ask(client) for _ in range(50)] == [fake.tokens[0]] * 50
    assert checked == [endpoint + "/openai/"]
    copy = client.with_options(base_url="http://elsewhere.example/openai/")
    with pytest.raises(InsecureTransportError, match="elsewhere.example"):
        ask(copy)
    assert ask(client) == fake.tokens[0]  # a refused client does not displace the one remembered
    other = client.with_options(base_url="https://other.example/openai/")
    assert ask(other) == ask(other) == fake.tokens[0]
    assert ask(client) == fake.tokens[0]  # one client is remembered: the first is checked again
    assert checked == [
        endpoint + "/openai/",
        "http://elsewhere.example/openai/",
        "https://other.example/openai/",
        endpoint + "/openai/",
    ]
    assert fake.calls == 1


@pytest.mark.parametrize("how", ["token_provider", "install_openai_session"])
def test_the_module_client_is_checked_again_when_openai_base_url_is_set_after_a_check(
    fake: FakeCredential, how: str
) -> None:
    """The module client's `base_url` is `openai.base_url` once that is set, not the URL it
    stores: a module client checked once over TLS is not remembered by that URL."""
    openai.api_version = API_VERSION
    openai.azure_endpoint = "https://res.openai.azure.com"
    if how == "token_provider":
        openai.api_type = "azure"
        openai.azure_ad_token_provider = token_provider(fake, endpoint="https://res.openai.azure.com")
    else:
        openai.http_client = _openai_httpx().Client()  # the application's own: the provider's check is what applies
        install_openai_session(fake)
    client = openai._load_client()
    assert client._get_azure_ad_token() == fake.tokens[0]
    openai.base_url = "http://evil.example/v1/"
    assert str(client._prepare_url("/chat/completions")).startswith("http://evil.example/")
    with refused("evil.example"):
        client._get_azure_ad_token()


@pytest.mark.parametrize("wrapping", ["wait_for", "ensure_future", "asyncio.run from a sync client"])
def test_async_provider_run_in_a_task_by_a_wrapper_still_checks_the_client_asking(
    fake: FakeCredential, wrapping: str
) -> None:
    """A wrapper that runs the provider's coroutine in a task: nothing on that task's stack
    shows who asked, so the provider checks when called, while openai's method is below."""
    provider = async_token_provider(fake, endpoint="https://res.openai.azure.com")
    if wrapping == "asyncio.run from a sync client":
        client: Any = openai.AzureOpenAI(
            azure_endpoint=OFF, api_version=API_VERSION, azure_ad_token_provider=lambda: asyncio.run(provider())
        )
        with refused("off-the-machine.example"):
            client._get_azure_ad_token()
    else:

        async def wrapped() -> str:
            if wrapping == "wait_for":
                return await asyncio.wait_for(provider(), 5)
            return await asyncio.ensure_future(provider())

        async def ask() -> None:
            client = openai.AsyncAzureOpenAI(
                azure_endpoint=OFF, api_version=API_VERSION, azure_ad_token_provider=wrapped
            )
            with refused("off-the-machine.example"):
                await client._get_azure_ad_token()

        asyncio.run(ask())
    assert fake.calls == 0


async def test_an_async_provider_called_outside_a_client_checks_the_client_awaiting_it(
    fake: FakeCredential,
) -> None:
    provider = async_token_provider(fake, endpoint="https://res.openai.azure.com")
    made_outside = provider()  # no client asking yet
    client = openai.AsyncAzureOpenAI(
        azure_endpoint=OFF, api_version=API_VERSION, azure_ad_token_provider=lambda: made_outside
    )
    with refused("off-the-machine.example"):
        await client._get_azure_ad_token()
    assert fake.calls == 0


def test_urls_swapped_while_a_client_is_checked_are_not_remembered(
    fake: FakeCredential, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another thread points the client elsewhere just after its check: the call racing it
    may pass, but what is remembered is what was checked, so the next call is refused."""
    from azure_ad_token_auth import _asking

    endpoint = "https://res.openai.azure.com"
    provider = token_provider(fake, endpoint=endpoint, allowed_hosts=["res.openai.azure.com"])
    client = openai.AzureOpenAI(azure_endpoint=endpoint, api_version=API_VERSION, azure_ad_token_provider=provider)
    elsewhere = type(client.base_url)("https://elsewhere.example/openai/")
    check = _asking.check_client

    def then_swapped(asking: Any, policy: Any) -> tuple[object, object, object]:
        checked = check(asking, policy)
        asking._base_url = elsewhere  # as `client.base_url = ...` in another thread, at this moment
        return checked

    monkeypatch.setattr(_asking, "check_client", then_swapped)
    assert client._get_azure_ad_token() == fake.tokens[0]  # the racing call
    monkeypatch.setattr(_asking, "check_client", check)
    with refused("allowed_hosts"):
        client._get_azure_ad_token()


@pytest.mark.parametrize("evil_endpoint", [OFF, "https://elsewhere.example"])
@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_a_client_sharing_a_checked_base_url_but_not_its_azure_endpoint_is_checked(
    fake: FakeCredential, asynchronous: bool, evil_endpoint: str
) -> None:
    """openai's `base_url` setter keeps the URL object it is given: a client pointed at
    another client's checked base URL still sends `/models` to its own endpoint."""
    endpoint = "https://res.openai.azure.com"
    make = async_token_provider if asynchronous else token_provider
    provider: Any = make(fake, endpoint=endpoint, allowed_hosts=["res.openai.azure.com"])
    kind = openai.AsyncAzureOpenAI if asynchronous else openai.AzureOpenAI
    good = kind(
        azure_endpoint=endpoint, azure_deployment="gpt-4o", api_version=API_VERSION, azure_ad_token_provider=provider
    )
    evil = kind(
        azure_endpoint=evil_endpoint,
        azure_deployment="gpt-4o",
        api_version=API_VERSION,
        azure_ad_token_provider=provider,
    )
    if not hasattr(evil, "_azure_endpoint"):
        pytest.skip("this openai sends every path to base_url")
    evil.base_url = good.base_url

    def ask(client: Any) -> Any:
        answer = client._get_azure_ad_token()
        return asyncio.run(answer) if asynchronous else answer

    assert ask(good) == fake.tokens[0]  # checked over TLS, remembered
    with refused("elsewhere.example|off-the-machine.example"):
        ask(evil)


@pytest.mark.skipif(OPENAI_VERSION < (3, 0), reason="copies keep azure_endpoint from openai 3.x")
def test_a_proxied_copy_of_a_client_with_a_loopback_http_endpoint_is_refused_after_the_direct_one(
    fake: FakeCredential,
) -> None:
    endpoint = "https://res.openai.azure.com"
    client = openai.AzureOpenAI(
        azure_endpoint="http://127.0.0.1:8080",
        azure_deployment="gpt-4o",
        api_version=API_VERSION,
        azure_ad_token_provider=token_provider(fake, endpoint=endpoint),
    )
    client.base_url = endpoint + "/openai/deployments/gpt-4o/"
    proxied = client.with_options(http_client=_openai_httpx().Client(proxy="http://proxy.invalid:3128"))
    assert client._get_azure_ad_token() == fake.tokens[0]  # loopback, no proxy: allowed
    with refused("proxy"):
        proxied._get_azure_ad_token()


@pytest.mark.parametrize("wrapper", ["six decorators", "asyncio.run of a coroutine calling it"])
def test_a_provider_any_number_of_frames_below_the_client_asking_is_checked(fake: FakeCredential, wrapper: str) -> None:
    endpoint = "https://res.openai.azure.com"
    if wrapper == "six decorators":
        wrapped: Any = token_provider(fake, endpoint=endpoint)
        for _ in range(6):
            wrapped = (lambda inner: lambda: inner())(wrapped)
    else:
        provider = async_token_provider(fake, endpoint=endpoint)

        async def get_token() -> str:
            return await provider()

        def wrapped() -> str:
            return asyncio.run(get_token())

    client = openai.AzureOpenAI(azure_endpoint=OFF, api_version=API_VERSION, azure_ad_token_provider=wrapped)
    with refused("off-the-machine.example"):
        client._get_azure_ad_token()
    assert fake.calls == 0


def test_an_azure_deployment_clients_endpoint_is_checked_as_well_as_its_base_url(fake: FakeCredential) -> None:
    """With `azure_deployment`, openai sends the paths that name no deployment (`/models`,
    `/files`) to `azure_endpoint`, whatever `base_url` says."""
    endpoint = "https://res.openai.azure.com"
    client = openai.AzureOpenAI(
        azure_endpoint=OFF,
        azure_deployment="gpt-4o",
        api_version=API_VERSION,
        azure_ad_token_provider=token_provider(fake, endpoint=endpoint),
    )
    if not hasattr(client, "_azure_endpoint"):
        pytest.skip("this openai sends every path to base_url")
    client.base_url = endpoint + "/openai/deployments/gpt-4o/"
    assert str(client._prepare_url("/models")).startswith(OFF)
    with refused("off-the-machine.example"):
        client._get_azure_ad_token()
    assert fake.calls == 0


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_provider_called_with_no_python_frame_below_serves_and_warns_once(
    fake: FakeCredential, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch, asynchronous: bool
) -> None:
    """Called from C with no Python frame below (a thread started by `_thread`, driven by C
    callables only), no client can be asking: it serves the token as outside a client."""
    import _thread
    import functools
    import itertools
    import logging
    import threading
    import time

    caplog.set_level(logging.WARNING, logger="azure_ad_token_auth")
    answers: list[str] = []
    done = threading.Event()
    if asynchronous:
        provider: Any = async_token_provider(fake)
        provider.cache.get_token()  # cached: the coroutine answers without awaiting anything

        def finished(unraisable: Any) -> None:  # the coroutine's return, as the thread's StopIteration
            answers.append(unraisable.exc_value.value)
            done.set()

        monkeypatch.setattr("sys.unraisablehook", finished)
        _thread.start_new_thread(provider().send, (None,))
    else:
        provider = token_provider(fake)
        calls = itertools.islice(iter(provider, None), 2)  # C calling the provider twice
        _thread.start_new_thread(functools.partial(answers.extend, calls), ())
        deadline = time.monotonic() + 10
        while len(answers) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        done.set()
    assert done.wait(10)
    assert answers == [fake.tokens[0]] * (1 if asynchronous else 2)
    (record,) = caplog.records
    assert "outside an openai client" in record.getMessage()


def test_provider_applies_allowed_hosts_to_the_client_asking(
    fake: FakeCredential, far_proxy: tuple[str, list[tuple[str, str, str | None]]]
) -> None:
    proxy_url, seen = far_proxy
    endpoint = "https://res.openai.azure.com"
    client = openai.AzureOpenAI(
        azure_endpoint=endpoint,
        api_version=API_VERSION,
        azure_ad_token_provider=token_provider(fake, endpoint=endpoint, allowed_hosts=["res.openai.azure.com"]),
        http_client=_through(proxy_url),
        max_retries=0,
    )
    with refused("allowed_hosts"):
        client.with_options(base_url="https://elsewhere.example/openai/").chat.completions.create(
            model="gpt-4o", messages=MESSAGES
        )
    assert seen == []  # not even a CONNECT
    assert fake.calls == 0


def test_a_client_checked_once_over_tls_is_checked_again_when_its_urls_change(fake: FakeCredential) -> None:
    """The provider remembers a client it found sending only over TLS; pointing that client
    (its base URL, its websocket URL) at plain http off the machine afterwards is still refused."""
    from azure_ad_token_auth import InsecureTransportError, token_provider

    provider = token_provider(fake, endpoint="https://res.openai.azure.com")
    client = openai.AzureOpenAI(
        azure_endpoint="https://res.openai.azure.com", api_version=API_VERSION, azure_ad_token_provider=provider
    )
    assert client._get_azure_ad_token() == fake.tokens[0]
    assert client._get_azure_ad_token() == fake.tokens[0]  # remembered: no second check needed
    client.base_url = "http://evil.example/openai/"  # type: ignore[assignment]
    with pytest.raises(InsecureTransportError, match="evil.example"):
        client._get_azure_ad_token()
    client.base_url = "https://res.openai.azure.com/openai/"  # type: ignore[assignment]
    assert client._get_azure_ad_token() == fake.tokens[0]
    if hasattr(client, "websocket_base_url"):
        client.websocket_base_url = "ws://evil.example/"
        with pytest.raises(InsecureTransportError, match="evil.example"):
            client._get_azure_ad_token()
    assert fake.calls == 1
