"""The realtime (websocket) handshake's token with the real openai >= 1 clients, against a loopback
websocket server that records each handshake."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from azure_ad_token_auth import install_openai_session, token_provider
from azure_ad_token_auth.testing import AzureOpenAIStandIn, FakeCredential
from openai_helpers import (
    API_VERSION,
    openai,
    openai_settings,  # noqa: F401 - the fixture every test uses
    refused,
)

pytestmark = [pytest.mark.openai1, pytest.mark.usefixtures("openai_settings")]


@pytest.fixture
def fake(cred: FakeCredential) -> FakeCredential:
    return cred


@pytest.fixture
def stand_in(server: AzureOpenAIStandIn) -> AzureOpenAIStandIn:
    return server


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
