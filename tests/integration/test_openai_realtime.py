"""The realtime (websocket) handshake's token with the real openai >= 1 clients, against a loopback
websocket server over TLS that records each handshake.

openai derives the handshake's URL from the client's endpoint with the scheme `wss`: from an
endpoint a provider has checked, the token goes only over TLS, to that endpoint's host.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from azure_ad_token_auth import async_token_provider, install_openai_session, token_provider
from azure_ad_token_auth.testing import FakeCredential
from openai_helpers import (
    API_VERSION,
    openai,
    openai_settings,  # noqa: F401 - the fixture every test uses
)

pytestmark = [pytest.mark.openai1, pytest.mark.usefixtures("openai_settings")]


class WebSocketStandIn:
    """A loopback websocket server over TLS that records each handshake's headers and refuses it (403)."""

    def __init__(self) -> None:
        from websockets.sync.server import serve

        trustme = pytest.importorskip("trustme")
        ca = trustme.CA()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1").configure_cert(context)
        self.trust = ssl.create_default_context()
        ca.configure_trust(self.trust)
        self.handshakes: list[tuple[str, dict[str, str]]] = []

        def process_request(connection: Any, request: Any) -> Any:
            self.handshakes.append((request.path, {k.lower(): v for k, v in request.headers.raw_items()}))
            return connection.respond(403, "stand-in: handshake recorded\n")

        self._server = serve(lambda ws: None, "127.0.0.1", 0, process_request=process_request, ssl=context)
        self.endpoint = f"https://127.0.0.1:{self._server.socket.getsockname()[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._thread.join(5)


@pytest.fixture
def websocket_stand_in(no_proxy_env: pytest.MonkeyPatch) -> Iterator[WebSocketStandIn]:
    pytest.importorskip("websockets.sync.server", reason="realtime needs the websockets package")
    server = WebSocketStandIn()
    yield server
    server.close()


def _realtime(client: Any) -> Any:
    return getattr(client, "realtime", None) or client.beta.realtime


def realtime_connect(client: Any, trust: ssl.SSLContext) -> None:
    with _realtime(client).connect(model="gpt-4o-realtime-preview", websocket_connection_options={"ssl": trust}):
        pass


async def async_realtime_connect(client: Any, trust: ssl.SSLContext) -> None:
    async with _realtime(client).connect(model="gpt-4o-realtime-preview", websocket_connection_options={"ssl": trust}):
        pass


def _has_realtime() -> bool:
    import importlib.util

    names = ("openai.resources.realtime", "openai.resources.beta.realtime")
    return any(importlib.util.find_spec(name) is not None for name in names)


needs_realtime = pytest.mark.skipif(not _has_realtime(), reason="no realtime API in this openai")


@needs_realtime
def test_a_providers_token_goes_over_tls_to_the_endpoint_it_checked(websocket_stand_in: WebSocketStandIn) -> None:
    credential = FakeCredential()
    endpoint = websocket_stand_in.endpoint
    client = openai.AzureOpenAI(
        azure_endpoint=endpoint,
        api_version=API_VERSION,
        azure_ad_token_provider=token_provider(credential, endpoint=endpoint),
    )
    with pytest.raises(Exception, match="403"):
        realtime_connect(client, websocket_stand_in.trust)
    ((path, headers),) = websocket_stand_in.handshakes  # the server speaks TLS only
    assert path.startswith("/openai/realtime?")
    assert headers["authorization"] == "Bearer " + credential.tokens[0]


@needs_realtime
async def test_an_async_providers_token_goes_over_tls_to_the_endpoint_it_checked(
    websocket_stand_in: WebSocketStandIn,
) -> None:
    pytest.importorskip("websockets.asyncio.client", reason="async realtime needs websockets >= 13")
    credential = FakeCredential()
    endpoint = websocket_stand_in.endpoint
    client = openai.AsyncAzureOpenAI(
        azure_endpoint=endpoint,
        api_version=API_VERSION,
        azure_ad_token_provider=async_token_provider(credential, endpoint=endpoint),
    )
    with pytest.raises(Exception, match="403"):
        await async_realtime_connect(client, websocket_stand_in.trust)
    ((_, headers),) = websocket_stand_in.handshakes
    assert headers["authorization"] == "Bearer " + credential.tokens[0]


@needs_realtime
def test_the_module_clients_token_goes_over_tls_to_the_configured_endpoint(
    websocket_stand_in: WebSocketStandIn,
) -> None:
    credential = FakeCredential()
    install_openai_session(credential)
    openai.azure_endpoint = websocket_stand_in.endpoint
    openai.api_version = API_VERSION
    with pytest.raises(Exception, match="403"):
        realtime_connect(openai, websocket_stand_in.trust)
    ((_, headers),) = websocket_stand_in.handshakes
    assert headers["authorization"] == "Bearer " + credential.tokens[0]
    assert credential.calls == 1


@needs_realtime
@pytest.mark.skipif(not hasattr(openai, "DefaultHttpxClient"), reason="azure_openai_client needs openai >= 1.17")
def test_azure_openai_clients_token_goes_over_tls_to_its_endpoint(websocket_stand_in: WebSocketStandIn) -> None:
    from azure_ad_token_auth import azure_openai_client

    credential = FakeCredential()
    client = azure_openai_client(websocket_stand_in.endpoint, api_version=API_VERSION, credential=credential)
    with pytest.raises(Exception, match="403"):
        realtime_connect(client, websocket_stand_in.trust)
    ((_, headers),) = websocket_stand_in.handshakes
    assert headers["authorization"] == "Bearer " + credential.tokens[0]
