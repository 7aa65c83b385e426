"""The realtime (websocket) handshake's token with the real openai >= 1 clients, against a loopback
websocket server over TLS that records each handshake.

openai derives the handshake's URL from the client's endpoint with the scheme `wss`: from an
endpoint a provider has checked, the token goes only over TLS, to that endpoint's host.
"""

from __future__ import annotations

import logging
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


# The stand-in refuses every handshake (403). On a loaded machine the client may see the TLS
# connection end before it reads that answer, which websockets reports as "no close frame": either
# way nothing follows the handshake, and the tests check what the handshake carried.
REFUSED = r"403|no close frame received or sent"


class WebSocketStandIn:
    """A loopback websocket server over TLS that records each handshake's headers and refuses it (403)."""

    def __init__(self, tls: bool = True) -> None:
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

        self._server = serve(
            lambda ws: None, "127.0.0.1", 0, process_request=process_request, ssl=context if tls else None
        )
        self.port = self._server.socket.getsockname()[1]
        self.endpoint = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
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
    with pytest.raises(Exception, match=REFUSED):
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
    with pytest.raises(Exception, match=REFUSED):
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
    with pytest.raises(Exception, match=REFUSED):
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
    with pytest.raises(Exception, match=REFUSED):
        realtime_connect(client, websocket_stand_in.trust)
    ((_, headers),) = websocket_stand_in.handshakes
    assert headers["authorization"] == "Bearer " + credential.tokens[0]


@pytest.fixture
def other_websocket_servers(no_proxy_env: pytest.MonkeyPatch) -> Iterator[tuple[WebSocketStandIn, WebSocketStandIn]]:
    """Two more recording websocket servers: one over TLS, one in clear."""
    pytest.importorskip("websockets.sync.server", reason="realtime needs the websockets package")
    servers = (WebSocketStandIn(), WebSocketStandIn(tls=False))
    yield servers
    for server in servers:
        server.close()


def _copies_elsewhere(servers: tuple[WebSocketStandIn, WebSocketStandIn]) -> list[tuple[dict[str, Any], str]]:
    """`with_options` arguments sending the realtime handshake elsewhere, and the refusal each gets."""
    tls, plain = servers
    return [
        ({"base_url": tls.endpoint + "/openai"}, "not in allowed_hosts"),
        ({"websocket_base_url": f"wss://127.0.0.1:{tls.port}/openai"}, "not in allowed_hosts"),
        ({"websocket_base_url": f"ws://127.0.0.1:{plain.port}/openai"}, "over plain ws: use wss"),
    ]


@needs_realtime
@pytest.mark.skipif(not hasattr(openai, "DefaultHttpxClient"), reason="azure_openai_client needs openai >= 1.17")
def test_a_copy_of_azure_openai_client_sending_the_handshake_elsewhere_is_refused(
    websocket_stand_in: WebSocketStandIn, other_websocket_servers: tuple[WebSocketStandIn, WebSocketStandIn]
) -> None:
    """The handshake bypasses the `http_client`'s auth: `copy()` / `with_options()` check the copy's URLs."""
    from azure_ad_token_auth import InsecureTransportError, UsageError, azure_openai_client

    credential = FakeCredential()
    client = azure_openai_client(websocket_stand_in.endpoint, api_version=API_VERSION, credential=credential)
    for options, refusal in _copies_elsewhere(other_websocket_servers):
        for copy in (client.with_options, client.copy):
            with pytest.raises(InsecureTransportError, match=refusal):
                realtime_connect(copy(**options), websocket_stand_in.trust)
    with pytest.raises(UsageError, match="keeps its http_client"):
        client.with_options(http_client=openai.DefaultHttpxClient())
    assert [server.handshakes for server in other_websocket_servers] == [[], []]
    # A copy to the endpoint itself still carries the token, over TLS, and is checked in turn.
    copied = client.with_options(websocket_base_url=f"wss://127.0.0.1:{websocket_stand_in.port}/openai", max_retries=1)
    with pytest.raises(Exception, match=REFUSED):
        realtime_connect(copied, websocket_stand_in.trust)
    ((_, headers),) = websocket_stand_in.handshakes
    assert headers["authorization"] == "Bearer " + credential.tokens[0]
    with pytest.raises(InsecureTransportError, match="not in allowed_hosts"):
        copied.with_options(base_url=other_websocket_servers[0].endpoint)


@needs_realtime
@pytest.mark.skipif(not hasattr(openai, "DefaultHttpxClient"), reason="azure_openai_client needs openai >= 1.17")
@pytest.mark.parametrize("make", ["azure_openai_client", "async_azure_openai_client"])
def test_assigning_a_url_that_sends_the_handshake_elsewhere_is_refused_and_undone(
    websocket_stand_in: WebSocketStandIn, other_websocket_servers: tuple[WebSocketStandIn, WebSocketStandIn], make: str
) -> None:
    """`client.websocket_base_url = "ws://..."` / `client.base_url = ...` (openai's public setter)
    move the handshake as a copy does: refused, the client's URLs as they were, nothing sent."""
    import azure_ad_token_auth
    from azure_ad_token_auth import InsecureTransportError

    credential = FakeCredential()
    client = getattr(azure_ad_token_auth, make)(
        websocket_stand_in.endpoint, api_version=API_VERSION, credential=credential
    )
    urls = (str(client.base_url), str(client.websocket_base_url))
    for options, refusal in _copies_elsewhere(other_websocket_servers):
        ((name, value),) = options.items()
        with pytest.raises(InsecureTransportError, match=refusal):
            setattr(client, name, value)
        assert (str(client.base_url), str(client.websocket_base_url)) == urls
    if make == "azure_openai_client":
        with pytest.raises(Exception, match=REFUSED):  # still to the endpoint, the stand-in's answer
            realtime_connect(client, websocket_stand_in.trust)
        assert len(websocket_stand_in.handshakes) == 1
    assert [server.handshakes for server in other_websocket_servers] == [[], []]
    client.websocket_base_url = f"wss://127.0.0.1:{websocket_stand_in.port}/openai"  # the endpoint's host: allowed
    assert str(client.websocket_base_url).startswith("wss://127.0.0.1")


@needs_realtime
@pytest.mark.skipif(not hasattr(openai, "DefaultHttpxClient"), reason="azure_openai_client needs openai >= 1.17")
async def test_a_copy_of_async_azure_openai_client_sending_the_handshake_elsewhere_is_refused(
    websocket_stand_in: WebSocketStandIn, other_websocket_servers: tuple[WebSocketStandIn, WebSocketStandIn]
) -> None:
    pytest.importorskip("websockets.asyncio.client", reason="async realtime needs websockets >= 13")
    from azure_ad_token_auth import InsecureTransportError, async_azure_openai_client

    credential = FakeCredential()
    client = async_azure_openai_client(websocket_stand_in.endpoint, api_version=API_VERSION, credential=credential)
    for options, refusal in _copies_elsewhere(other_websocket_servers):
        with pytest.raises(InsecureTransportError, match=refusal):
            await async_realtime_connect(client.with_options(**options), websocket_stand_in.trust)
    assert [server.handshakes for server in other_websocket_servers] == [[], []]
    assert credential.calls == 0


@needs_realtime
@pytest.mark.parametrize("made_by", ["token_provider", "install_openai_session"])
def test_websockets_debug_logs_of_the_handshake_show_no_token(
    websocket_stand_in: WebSocketStandIn, caplog: pytest.LogCaptureFixture, made_by: str
) -> None:
    """websockets logs each handshake header at DEBUG on `websockets.client`; the providers
    put `CredentialHeaderFilter` on that logger when they are made."""
    caplog.set_level(logging.DEBUG, logger="websockets.client")
    credential = FakeCredential()
    endpoint = websocket_stand_in.endpoint
    if made_by == "token_provider":
        client: Any = openai.AzureOpenAI(
            azure_endpoint=endpoint,
            api_version=API_VERSION,
            azure_ad_token_provider=token_provider(credential, endpoint=endpoint),
        )
    else:
        install_openai_session(credential)
        openai.azure_endpoint = endpoint
        openai.api_version = API_VERSION
        client = openai
    with pytest.raises(Exception, match=REFUSED):
        realtime_connect(client, websocket_stand_in.trust)
    ((_, headers),) = websocket_stand_in.handshakes
    assert headers["authorization"] == "Bearer " + credential.tokens[0]  # the token did go, over TLS
    logged = [record.getMessage() for record in caplog.records if record.name == "websockets.client"]
    assert "> Authorization: <hidden>" in logged
    assert not [line for line in logged if credential.tokens[0] in line]


def test_the_credential_header_filter_on_a_logger_of_your_own(caplog: pytest.LogCaptureFixture) -> None:
    from azure_ad_token_auth import CredentialHeaderFilter

    logger = logging.getLogger("tests.my-websocket-logger")
    logger.addFilter(CredentialHeaderFilter())
    caplog.set_level(logging.DEBUG, logger=logger.name)
    token = "eyJ0eXAi.SECRET.sig"

    class Headers(dict[str, str]):
        pass

    try:
        logger.debug("> %s: %s", "api-key", "s3cr3t")
        logger.debug("> %s: %s", "Content-Type", "application/json")
        logger.debug("sent %r", "Bearer " + token)
        logger.debug("header Authorization: Bearer " + token)
        # However a record spells the header: dict arguments, bytes, one string, a mapping,
        # a no-break space, the name with its colon.
        logger.debug("> %(k)s: %(v)s", {"k": "Authorization", "v": "Bearer " + token})
        logger.debug("> %s: %s", b"Authorization", ("Bearer " + token).encode())
        logger.debug("> %s", "api-key: " + token)
        logger.debug("headers %s", Headers(Authorization="Bearer " + token))
        logger.debug("> %s: %s", "Authorization", "Bearer\u00a0" + token)
        logger.debug("> %s: %s", "authorization:", "Bearer " + token)
    finally:
        logger.filters.clear()
    assert [record.getMessage() for record in caplog.records] == [
        "> api-key: <hidden>",
        "> Content-Type: application/json",
        "sent 'Bearer <hidden>'",
        "header Authorization: <hidden>",
        "> Authorization: <hidden>",
        "> b'Authorization': b'<hidden>'",
        "> api-key: <hidden>",
        "headers {'Authorization': '<hidden>'}",
        "> Authorization: <hidden>",
        "> authorization:: <hidden>",
    ]
