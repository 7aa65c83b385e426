"""The aiohttp middleware and openai 0.28's async API, with a real aiohttp client against the stand-in."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("aiohttp", minversion="3.12")
import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from azure_ad_token_auth import ConfigurationError, token_provider
from azure_ad_token_auth._openai import PLACEHOLDER_API_KEY, openai_major_version
from azure_ad_token_auth.aiohttp import AzureADClientMiddleware, client_session, openai_aiosession
from azure_ad_token_auth.testing import (
    AsyncFakeCredential,
    AzureOpenAIStandIn,
    FakeCredential,
    TokenRegistry,
    fingerprint,
)

SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.fixture
def service(https_server: AzureOpenAIStandIn) -> AzureOpenAIStandIn:
    return https_server


def trusting(service: AzureOpenAIStandIn) -> aiohttp.TCPConnector:
    """A connector trusting the https stand-ins (one CA for all): aiohttp reads no CA
    variable after its import, so the context is handed over."""
    return aiohttp.TCPConnector(ssl=service.ssl_context())


@pytest.fixture
def cred(registry: TokenRegistry) -> AsyncFakeCredential:
    return AsyncFakeCredential(registry=registry)


def completions(service: AzureOpenAIStandIn) -> str:
    return f"{service.base_url}/openai/deployments/gpt35/completions?api-version=2024-02-01"


def seen(service: AzureOpenAIStandIn) -> list[tuple[int, str, str | None]]:
    return [(r.status, r.token_status, r.token_fingerprint) for r in service.requests]


def form(multipart: bool) -> aiohttp.FormData:
    data = aiohttp.FormData()
    data.add_field("prompt", "the food was")
    if multipart:
        data.add_field("file", b"\x00\x01 binary", filename="a.bin", content_type="application/octet-stream")
    return data


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(lambda: {"data": b"raw bytes \x00\xff"}, id="bytes"),
        pytest.param(lambda: {"data": "text \u00e9"}, id="str"),
        pytest.param(lambda: {"json": {"prompt": "hi", "n": 1}}, id="json"),
        pytest.param(lambda: {"data": form(multipart=False)}, id="urlencoded-form"),
        pytest.param(lambda: {"data": form(multipart=True)}, id="multipart-form"),
        pytest.param(lambda: {"data": io.BytesIO(b"file-like " * 1000)}, id="seekable-file"),
        pytest.param(lambda: {}, id="no-body"),
    ],
)
async def test_resent_body_is_intact(service: AzureOpenAIStandIn, cred: AsyncFakeCredential, body: Any) -> None:
    service.fail_next(1, status=401)
    async with client_session(cred, connector=trusting(service)) as session:
        async with session.post(service.base_url + "/echo", **body()) as response:
            assert response.status == 200
            echoed = await response.json()
    rejected, accepted = service.requests
    assert rejected.status == 401
    assert accepted.body == rejected.body
    assert echoed["body_sha256"] == hashlib.sha256(rejected.body).hexdigest()
    assert rejected.token_fingerprint != accepted.token_fingerprint


async def test_redirects_keep_the_token_on_its_origin(
    service: AzureOpenAIStandIn, registry: TokenRegistry, cred: AsyncFakeCredential
) -> None:
    with AzureOpenAIStandIn(registry=registry) as other, AzureOpenAIStandIn(registry=registry) as third:
        service.redirect_next(service.base_url + "/echo?hop=2")  # same origin: token kept
        async with client_session(cred, connector=trusting(service)) as session:
            async with session.get(service.base_url + "/echo") as response:
                assert response.status == 200
            # Cross-origin, twice: neither other origin gets the token.
            service.redirect_next(other.base_url + "/echo")
            other.redirect_next(third.base_url + "/echo")
            async with session.get(service.base_url + "/echo") as response:
                assert response.status == 401
                assert [r.status for r in response.history] == [307, 307]
            # A redirect not followed, then a request of its own to that origin: not a hop, it gets a token.
            service.redirect_next(other.base_url + "/echo")
            async with session.get(service.base_url + "/echo", allow_redirects=False) as response:
                assert response.status == 307
            async with session.get(other.base_url + "/echo") as response:
                assert response.status == 200
        assert len(cred.tokens) == 1
        assert [r.token_status for r in service.requests] == ["valid"] * 4
        assert [r.token_status for r in other.requests] == ["missing", "valid"]
        assert [r.token_status for r in third.requests] == ["missing"]


async def test_a_redirect_back_to_the_first_origin_gets_no_token(
    service: AzureOpenAIStandIn, registry: TokenRegistry, cred: AsyncFakeCredential
) -> None:
    with AzureOpenAIStandIn(registry=registry) as other:
        service.redirect_next(other.base_url + "/echo")
        other.redirect_next(service.base_url + "/echo?back")
        async with client_session(cred, connector=trusting(service)) as session:
            async with session.get(service.base_url + "/echo") as response:
                assert response.status == 401
        assert [r.token_status for r in service.requests] == ["valid", "missing"]
        assert [r.token_status for r in other.requests] == ["missing"]


async def test_a_request_from_a_trace_hook_between_two_hops_does_not_open_the_next_hop(
    service: AzureOpenAIStandIn, registry: TokenRegistry, cred: AsyncFakeCredential
) -> None:
    """A redirect-audit hook posts through the same middleware, and its answer is a redirect
    too: the outer call's cross-origin hop still gets no token."""
    with AzureOpenAIStandIn(registry=registry) as other, AzureOpenAIStandIn(registry=registry) as audit:
        middleware = AzureADClientMiddleware(cred)
        async with client_session(middleware.cache, connector=trusting(service)) as audit_session:

            async def log_redirect(_session: Any, _context: Any, params: aiohttp.TraceRequestRedirectParams) -> None:
                audit.redirect_next(audit.base_url + "/echo?logged")
                async with audit_session.post(audit.base_url + "/echo", json={"to": str(params.url)}) as logged:
                    await logged.read()

            hooks = aiohttp.TraceConfig()
            hooks.on_request_redirect.append(log_redirect)
            service.redirect_next(other.base_url + "/echo")
            async with (
                client_session(middleware.cache, trace_configs=[hooks], connector=trusting(service)) as session,
                session.get(service.base_url + "/echo") as response,
            ):
                assert response.status == 401
        assert [r.token_status for r in service.requests] == ["valid"]
        assert [r.token_status for r in audit.requests] == ["valid", "valid"]  # its own call, on its origin
        assert [r.token_status for r in other.requests] == ["missing"]


async def test_a_session_without_the_middlewares_trace_config_is_refused(
    service: AzureOpenAIStandIn, cred: AsyncFakeCredential
) -> None:
    middleware = AzureADClientMiddleware(cred)
    async with aiohttp.ClientSession(middlewares=(middleware,), connector=trusting(service)) as session:
        with pytest.raises(ConfigurationError, match=r"trace_configs=\[middleware.trace_config\]"):
            await session.get(service.base_url + "/echo")
    assert service.requests == []
    assert cred.tokens == []


async def retry_once_on_503(
    request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
) -> aiohttp.ClientResponse:
    response = await handler(request)
    if response.status == 503:
        response.release()
        response = await handler(request)
    return response


@pytest.mark.parametrize(
    ("outer", "at_other"),
    [
        pytest.param(retry_once_on_503, [(503, "missing"), (401, "missing")], id="a retry middleware"),
        pytest.param(None, [(503, "missing")], id="another token middleware"),
    ],
)
async def test_a_middleware_before_ours_does_not_carry_the_token_across_origins(
    service: AzureOpenAIStandIn,
    registry: TokenRegistry,
    cred: AsyncFakeCredential,
    outer: Any,
    at_other: list[tuple[int, str]],
) -> None:
    if outer is None:
        outer = AzureADClientMiddleware(AsyncFakeCredential(registry=registry))
    with AzureOpenAIStandIn(registry=registry) as other:
        service.redirect_next(other.base_url + "/echo")
        other.fail_next(1, status=503)  # a retry middleware sends this hop twice
        async with aiohttp.ClientSession(
            middlewares=(outer, AzureADClientMiddleware(cred)),
            trace_configs=[AzureADClientMiddleware.trace_config],
            connector=trusting(service),
        ) as session:
            async with session.get(service.base_url + "/echo") as response:
                assert response.status == at_other[-1][0]
        assert [r.token_status for r in service.requests] == ["valid"]
        assert [(r.status, r.token_status) for r in other.requests] == at_other


async def test_a_401_to_a_header_another_middleware_replaced_is_not_ours(
    service: AzureOpenAIStandIn, cred: AsyncFakeCredential
) -> None:
    async def replace_authorization(
        request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
    ) -> aiohttp.ClientResponse:
        request.headers["Authorization"] = "Bearer not-ours"
        return await handler(request)

    async with client_session(cred, middlewares=(replace_authorization,), connector=trusting(service)) as session:
        async with session.post(completions(service), json={"prompt": "hi"}) as response:
            assert response.status == 401
    assert seen(service) == [(401, "unknown", fingerprint("not-ours"))]
    assert cred.calls == 1  # our token was not dropped: nothing renewed


class WebSocketServer:
    """A loopback aiohttp websocket server (TLS from its own throwaway CA, or plain) that records
    each handshake's `Authorization`, accepts it, and closes."""

    def __init__(self, tls: bool) -> None:
        self.tls = tls
        self.authorizations: list[str | None] = []
        self.trust: Any = None
        self._runner: Any = None

    async def __aenter__(self) -> WebSocketServer:
        from aiohttp import web

        async def handshake(request: web.Request) -> web.WebSocketResponse:
            self.authorizations.append(request.headers.get("Authorization"))
            socket = web.WebSocketResponse()
            await socket.prepare(request)
            await socket.close()
            return socket

        context = None
        if self.tls:
            trustme = pytest.importorskip("trustme")
            ca = trustme.CA()
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ca.issue_cert("127.0.0.1").configure_cert(context)
            self.trust = ssl.create_default_context()
            ca.configure_trust(self.trust)
        app = web.Application()
        app.router.add_get("/ws", handshake)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=context).start()
        return self

    @property
    def url(self) -> str:
        host, port = self._runner.addresses[0][:2]
        return f"{'wss' if self.tls else 'ws'}://{host}:{port}/ws"

    async def __aexit__(self, *exc: object) -> None:
        await self._runner.cleanup()


@pytest.mark.parametrize("tls", [True, False], ids=["wss", "ws"])
async def test_ws_connect_carries_the_token_over_wss_and_over_ws_only_with_allow_http(
    cred: AsyncFakeCredential, tls: bool
) -> None:
    """A websocket handshake is an http request: `wss` gets the https rule, `ws` plain http's."""
    from azure_ad_token_auth import InsecureTransportError

    async with WebSocketServer(tls) as server:
        if not tls:
            async with client_session(cred) as session:
                with pytest.raises(InsecureTransportError, match=r"over plain ws: use wss, or pass allow_http=True"):
                    await session.ws_connect(server.url)
            assert server.authorizations == [] and cred.calls == 0
        async with client_session(cred, allow_http=not tls) as session:
            async with session.ws_connect(server.url, ssl=server.trust if tls else True) as socket:
                assert (await socket.receive()).type == aiohttp.WSMsgType.CLOSE
    assert server.authorizations == ["Bearer " + cred.tokens[0]]


def test_package_import_does_not_need_aiohttp() -> None:
    code = "import sys, azure_ad_token_auth; print('aiohttp' in sys.modules)"
    env = dict(os.environ, PYTHONPATH=str(SRC))
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "False", result.stderr


# -- openai 0.28 (acreate goes through aiohttp) ---------------------------------------

OPENAI_GLOBALS = ("api_base", "api_version", "api_type", "api_key")


@pytest.fixture
def openai028(service: AzureOpenAIStandIn) -> Iterator[Any]:
    openai = pytest.importorskip("openai")
    if openai_major_version(openai) != 0:
        pytest.skip(f"needs openai 0.28, found {openai.__version__}")
    saved = {name: getattr(openai, name) for name in OPENAI_GLOBALS}
    openai.api_base, openai.api_version = service.base_url, "2024-02-01"
    openai.api_type, openai.api_key = "open_ai", None
    try:
        yield openai
    finally:
        for name, value in saved.items():
            setattr(openai, name, value)


@pytest.mark.openai028
async def test_openai_028_acreate_sends_our_token(
    openai028: Any, service: AzureOpenAIStandIn, cred: AsyncFakeCredential
) -> None:
    openai = openai028
    async with openai_aiosession(cred, connector=trusting(service)) as session:
        assert openai.aiosession.get() is session
        assert (openai.api_type, openai.api_key) == ("azure_ad", PLACEHOLDER_API_KEY)
        completion = await openai.Completion.acreate(deployment_id="gpt35", prompt="The food was", max_tokens=5)
        chat = await openai.ChatCompletion.acreate(
            deployment_id="gpt4o", messages=[{"role": "user", "content": "The food was"}]
        )
    assert completion.choices[0].text == service.completion
    assert chat.choices[0].message.content == service.completion
    (token,) = cred.tokens
    assert [r.path for r in service.requests] == [
        "/openai/deployments/gpt35/completions",
        "/openai/deployments/gpt4o/chat/completions",
    ]
    assert seen(service) == [(200, "valid", fingerprint(token))] * 2
    # Everything undone on exit.
    assert session.closed
    assert openai.aiosession.get() is None
    assert (openai.api_type, openai.api_key) == ("open_ai", None)


@pytest.mark.openai028
async def test_openai_028_concurrent_acreate_one_credential_call(
    openai028: Any, service: AzureOpenAIStandIn, registry: TokenRegistry
) -> None:
    openai = openai028
    credential = AsyncFakeCredential(delay=0.2, registry=registry)
    async with openai_aiosession(credential, connector=trusting(service)):
        results = await asyncio.gather(
            *(openai.Completion.acreate(deployment_id="gpt35", prompt=str(i), max_tokens=5) for i in range(50))
        )
    assert [r.choices[0].text for r in results] == [service.completion] * 50
    assert credential.calls == 1
    assert seen(service) == [(200, "valid", fingerprint(credential.tokens[0]))] * 50


@pytest.mark.openai028
async def test_openai_028_overlapping_blocks_keep_the_globals_until_the_last_exits(
    openai028: Any, service: AzureOpenAIStandIn, cred: AsyncFakeCredential
) -> None:
    openai = openai028
    outer_done = asyncio.Event()

    async def inner() -> str:
        async with openai_aiosession(cred, connector=trusting(service)):
            outer_done.set()
            await asyncio.sleep(0)  # let the outer block exit first
            result = await openai.Completion.acreate(deployment_id="gpt35", prompt="x", max_tokens=5)
            return str(result.choices[0].text)

    async with openai_aiosession(cred, connector=trusting(service)):
        task = asyncio.ensure_future(inner())
        await outer_done.wait()
    assert openai.api_key == PLACEHOLDER_API_KEY  # the inner block is still open
    assert await task == service.completion
    assert (openai.api_type, openai.api_key) == ("open_ai", None)


@pytest.mark.openai028
async def test_openai_028_a_global_the_application_changed_is_kept(openai028: Any, cred: AsyncFakeCredential) -> None:
    openai = openai028
    async with openai_aiosession(cred):
        openai.api_key = "set-by-the-app"
    assert (openai.api_type, openai.api_key) == ("open_ai", "set-by-the-app")


async def test_openai_aiosession_refuses_openai_1() -> None:
    openai = pytest.importorskip("openai")
    if openai_major_version(openai) == 0:
        pytest.skip("openai 0.28 is installed")
    with pytest.raises(RuntimeError, match="async_token_provider"):
        async with openai_aiosession(FakeCredential(), openai_module=openai):
            pass


def test_token_provider_shares_the_middleware_cache(registry: TokenRegistry) -> None:
    credential = FakeCredential(registry=registry)
    middleware = AzureADClientMiddleware(credential)
    assert token_provider(middleware.cache)() == credential.tokens[0]
    assert json.dumps(repr(middleware)).count(credential.tokens[0]) == 0


class LoopbackResolver(AbstractResolver):
    """Every host name resolves to 127.0.0.1: cloud host names reach the loopback stand-in."""

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET) -> list[ResolveResult]:
        return [{"hostname": host, "host": "127.0.0.1", "port": port, "family": socket.AF_INET, "proto": 0, "flags": 0}]

    async def close(self) -> None:
        pass


@pytest.mark.openai028
async def test_openai_028_aiosession_with_no_scopes_gives_each_request_the_scope_of_its_url(
    openai028: Any, server: AzureOpenAIStandIn, registry: TokenRegistry
) -> None:
    """api_base moved inside the block, from Azure Government to the public cloud and a Foundry
    project: each acreate's token is for its own URL's audience, not the block's first."""

    class ScopeRecorder(AsyncFakeCredential):
        asked: list[tuple[str, ...]] = []

        async def get_token_info(self, *scopes: str, options: Any = None) -> Any:  # type: ignore[override]
            self.asked.append(scopes)
            return await super().get_token_info(*scopes, options=options)

    recorder = ScopeRecorder(registry=registry)
    connector = aiohttp.TCPConnector(resolver=LoopbackResolver())
    port = server.base_url.rsplit(":", 1)[1]
    bases = [
        f"http://res.openai.azure.us:{port}",
        f"http://res.openai.azure.com:{port}",
        f"http://acct.services.ai.azure.com:{port}/api/projects/p",
        f"http://res.openai.azure.us:{port}",
    ]
    async with openai_aiosession(recorder, allow_http=True, connector=connector):
        for base in bases:
            openai028.api_base = base
            try:
                await openai028.Completion.acreate(deployment_id="gpt35", prompt="The food was", max_tokens=5)
            except openai028.error.InvalidRequestError:  # the stand-in serves no project paths: 404
                assert "/api/projects/" in base
    assert recorder.asked == [
        ("https://cognitiveservices.azure.us/.default",),
        ("https://cognitiveservices.azure.com/.default",),
        ("https://ai.azure.com/.default",),
    ]  # the fourth request took the Government token from its cache
    assert [(r.status, r.token_status) for r in server.requests] == [
        (200, "valid"),
        (200, "valid"),
        (404, "valid"),
        (200, "valid"),
    ]
