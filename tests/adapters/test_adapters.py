"""One suite for every adapter: requests, httpx and httpx2 (sync and async), aiohttp.

Each case runs against a real client and the loopback stand-in, over https as Azure
serves (`server` is conftest's `https_server` here; `plain_server` serves plain http for
the cases about it); the flow they all drive is stepped by hand in tests/unit/test_flow.py.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import traceback
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest
import requests
from azure.core.credentials import AccessTokenInfo

from azure_ad_token_auth import AzureADTokenAuth, InsecureTransportError, TokenCache
from azure_ad_token_auth.testing import (
    AsyncFakeCredential,
    AzureOpenAIStandIn,
    FakeCredential,
    TokenRegistry,
    fingerprint,
)
from conftest import assert_no_token_in, echo

CLAIMS = '{"access_token":{"nbf":{"essential":true,"value":"1726077595"}}}'
KINDS = ["requests", "httpx-sync", "httpx-async", "httpx2-sync", "httpx2-async", "aiohttp"]


@dataclass
class Result:
    status: int
    history: list[int]
    body: bytes


class Driver:
    """One adapter on its real client, behind one awaitable `post`."""

    def __init__(self, kind: str, ca_path: str, ssl_context: Any) -> None:
        self.kind = kind
        # What trusts the https stand-ins (every one in the process has the same CA).
        self.ca_path, self.ssl_context = ca_path, ssl_context
        self.package, _, mode = kind.partition("-")
        self.is_async = mode == "async" or kind == "aiohttp"
        # aiohttp's history lists redirects only; a resend by a middleware is not one.
        self.retry_history = [] if kind == "aiohttp" else [401]
        self._sessions: list[Any] = []

    def auth(self, credential: Any, *scopes: Any, **options: Any) -> Any:
        if self.package == "requests":
            return AzureADTokenAuth(credential, *scopes, **options)
        if self.package == "aiohttp":
            pytest.importorskip("aiohttp", minversion="3.12")
            from azure_ad_token_auth.aiohttp import AzureADClientMiddleware

            return AzureADClientMiddleware(credential, *scopes, **options)
        module = pytest.importorskip(f"azure_ad_token_auth.{self.package}")
        return module.AzureADHttpxAuth(credential, *scopes, **options)

    def stream(self, chunks: list[bytes]) -> Any:
        """A body that can be sent only once."""
        if self.is_async:

            async def agen() -> AsyncIterator[bytes]:
                for chunk in chunks:
                    yield chunk

            return agen()
        return (chunk for chunk in chunks)

    async def post(self, auth: Any, url: str, body: Any = b"x", **kw: Any) -> Result:
        session: Any
        if self.package == "requests":
            session = requests.Session()
            self._sessions.append(session)
            r = session.post(url, data=body, auth=auth, timeout=5, verify=self.ca_path, **kw)
            return Result(r.status_code, [h.status_code for h in r.history], r.content)
        if self.package == "aiohttp":
            import aiohttp

            session = aiohttp.ClientSession(middlewares=(auth,), trace_configs=[auth.trace_config], trust_env=True)
            try:
                async with session.post(url, data=body, ssl=self.ssl_context, **kw) as response:
                    return Result(response.status, [h.status for h in response.history], await response.read())
            finally:
                await session.close()
        http = pytest.importorskip(self.package)
        client = (http.AsyncClient if self.is_async else http.Client)(
            auth=auth, timeout=5, verify=self.ssl_context, **kw
        )
        try:
            if self.is_async:
                r = await client.post(url, content=body)
                await client.aclose()
            else:
                r = client.post(url, content=body)
                client.close()
        finally:
            pass
        return Result(r.status_code, [h.status_code for h in r.history], r.content)

    async def post_many(self, auth: Any, url: str) -> list[int]:
        """Many requests at once on one client: 100 coroutines, or 40 requests on 20 threads."""
        if self.package == "requests":
            with requests.Session() as session, ThreadPoolExecutor(20) as pool:

                def post_one(_: int) -> int:
                    return session.post(url, data=b"x", auth=auth, timeout=10, verify=self.ca_path).status_code

                return list(pool.map(post_one, range(40)))
        if self.package == "aiohttp":
            import aiohttp

            async with aiohttp.ClientSession(middlewares=(auth,), trace_configs=[auth.trace_config]) as aio:

                async def one() -> int:
                    async with aio.post(url, data=b"x", ssl=self.ssl_context) as response:
                        await response.read()
                        return response.status

                return list(await asyncio.gather(*(one() for _ in range(100))))
        http = pytest.importorskip(self.package)
        if self.is_async:
            async with http.AsyncClient(auth=auth, timeout=10, verify=self.ssl_context) as client:
                responses = await asyncio.gather(*(client.post(url, content=b"x") for _ in range(100)))
            return [r.status_code for r in responses]
        with http.Client(auth=auth, timeout=10, verify=self.ssl_context) as client, ThreadPoolExecutor(20) as pool:
            return list(pool.map(lambda _: client.post(url, content=b"x").status_code, range(40)))


@pytest.fixture
def server(https_server: AzureOpenAIStandIn) -> AzureOpenAIStandIn:
    """In this module the stand-in serves https: every adapter's path with no `allow_http`."""
    return https_server


@pytest.fixture
def plain_server(registry: TokenRegistry) -> Iterator[AzureOpenAIStandIn]:
    """The stand-in over plain http, for the cases about it."""
    with AzureOpenAIStandIn(registry=registry, tls=False) as stand_in:
        yield stand_in


@pytest.fixture(params=KINDS)
def driver(request: pytest.FixtureRequest, https_server: AzureOpenAIStandIn) -> Driver:
    return Driver(request.param, https_server.ca_path, https_server.ssl_context())


# -- the token on the wire, and the 401 flow -------------------------------------------


@pytest.mark.parametrize("credential_type", [FakeCredential, AsyncFakeCredential])
async def test_token_attached_and_reused(
    driver: Driver, server: AzureOpenAIStandIn, registry: TokenRegistry, credential_type: type[FakeCredential]
) -> None:
    """A sync credential on every client; an async one on the async clients."""
    if credential_type is AsyncFakeCredential and not driver.is_async:
        pytest.skip("an async credential needs an async client")
    cred = credential_type(registry=registry)
    auth = driver.auth(cred)
    for _ in range(5):
        assert (await driver.post(auth, echo(server))).status == 200
    assert cred.calls == 1
    assert [(r.token_status, r.token_fingerprint) for r in server.requests] == [
        ("valid", fingerprint(cred.tokens[0]))
    ] * 5


async def test_concurrent_requests_on_a_cold_cache_make_one_credential_call(
    driver: Driver, server: AzureOpenAIStandIn, registry: TokenRegistry
) -> None:
    """A slow credential (0.2 s) under 100 coroutines (async clients) or 20 threads (sync ones)."""
    cred = (AsyncFakeCredential if driver.is_async else FakeCredential)(registry=registry, delay=0.2)
    statuses = await driver.post_many(driver.auth(cred), echo(server))
    assert statuses == [200] * (100 if driver.is_async else 40)
    assert cred.calls == 1
    assert server.count == len(statuses)
    assert {(r.token_status, r.token_fingerprint) for r in server.requests} == {("valid", fingerprint(cred.tokens[0]))}


async def test_an_adapter_on_a_shared_token_cache_uses_it_and_refuses_options_of_its_own(
    driver: Driver, server: AzureOpenAIStandIn, cred: FakeCredential
) -> None:
    cache = TokenCache(cred)
    auth = driver.auth(cache)
    assert auth.cache is cache
    assert (
        requests.post(
            echo(server), data=b"x", auth=AzureADTokenAuth(cache), timeout=5, verify=server.ca_path
        ).status_code
        == 200
    )
    assert (await driver.post(auth, echo(server))).status == 200
    assert cred.calls == 1
    assert len({r.token_fingerprint for r in server.requests}) == 1
    assert await cache.get_token_async() == cred.tokens[0]
    with pytest.raises(TypeError, match=r"refresh_margin.*pass them to the TokenCache"):
        driver.auth(cache, refresh_margin=60)
    with pytest.raises(ValueError, match="differ"):
        driver.auth(cache, "https://other/.default")


async def test_no_token_in_repr_or_debug_log(
    driver: Driver, server: AzureOpenAIStandIn, cred: FakeCredential, token_log: pytest.LogCaptureFixture
) -> None:
    auth = driver.auth(cred)
    server.fail_next(1, status=401)
    for _ in range(3):
        await driver.post(auth, echo(server))
    assert cred.calls == 2
    assert any(r.levelno == logging.DEBUG for r in token_log.records)
    assert_no_token_in(repr(auth) + str(auth) + repr(auth.cache) + token_log.text, cred.tokens)
    assert fingerprint(cred.tokens[1]) in repr(auth)


async def test_401_once_is_resent_once_with_a_new_token(
    driver: Driver, server: AzureOpenAIStandIn, cred: FakeCredential
) -> None:
    body = b"payload " * 1000
    server.fail_next(1, status=401)
    result = await driver.post(driver.auth(cred), echo(server), body)
    assert (result.status, result.history) == (200, driver.retry_history)
    assert [r.body for r in server.requests] == [body, body]
    assert [r.token_fingerprint for r in server.requests] == [fingerprint(t) for t in cred.tokens]
    assert cred.calls == 2


async def test_401_always_resends_once_then_stops_asking(
    driver: Driver, server: AzureOpenAIStandIn, cred: FakeCredential
) -> None:
    auth = driver.auth(cred)
    server.fail_next(4, status=401)
    assert (await driver.post(auth, echo(server))).status == 401
    assert server.count == 2
    assert (await driver.post(auth, echo(server))).status == 401  # within retry_backoff: no new call
    assert cred.calls == 2


async def test_cae_challenge_claims_reach_the_credential(
    driver: Driver, server: AzureOpenAIStandIn, cred: FakeCredential
) -> None:
    server.challenge_next(CLAIMS)
    assert (await driver.post(driver.auth(cred), echo(server))).status == 200
    assert cred.claims == [None, CLAIMS]


async def test_a_credential_failing_on_a_cae_challenge_chains_the_401_as_cause(
    driver: Driver, server: AzureOpenAIStandIn, cred: FakeCredential
) -> None:
    """As azure-core chains an HttpResponseError: the caller gets the credential's own error,
    whose `__cause__` says which 401 (status, challenge) asked for the renewal."""
    from azure.core.exceptions import ClientAuthenticationError

    from azure_ad_token_auth import TokenRejectedError

    auth = driver.auth(cred)
    assert (await driver.post(auth, echo(server))).status == 200
    cred.fail = ClientAuthenticationError("claims refused: run az login --claims-challenge")
    server.challenge_next(CLAIMS)
    with pytest.raises(ClientAuthenticationError) as caught:
        await driver.post(auth, echo(server))
    cause = caught.value.__cause__
    assert isinstance(cause, TokenRejectedError), repr(cause)
    assert cause.status == 401
    assert "insufficient_claims" in cause.challenge and "claims=" in cause.challenge
    rendered = "".join(traceback.format_exception(caught.value))
    assert "The above exception was the direct cause" in rendered
    assert cred.tokens[0] not in rendered and cred.tokens[0] not in str(cause)
    assert cred.claims == [None, CLAIMS]


async def test_a_body_that_cannot_be_replayed_is_not_resent_but_the_token_is_dropped(
    driver: Driver, server: AzureOpenAIStandIn, cred: FakeCredential
) -> None:
    auth = driver.auth(cred)
    server.fail_next(1, status=401)
    assert (await driver.post(auth, echo(server), driver.stream([b"one ", b"two"]))).status == 401
    assert [r.body for r in server.requests] == [b"one two"]
    assert (await driver.post(auth, echo(server))).status == 200
    assert [r.token_fingerprint for r in server.requests] == [fingerprint(t) for t in cred.tokens]


async def test_the_credential_handing_back_the_rejected_token_is_not_resent(
    driver: Driver, server: AzureOpenAIStandIn, registry: TokenRegistry
) -> None:
    token, expires_on = registry.issue(3600)
    cred = FakeCredential(result=lambda: AccessTokenInfo(token, expires_on))  # a credential that caches
    server.fail_next(1, status=401)
    result = await driver.post(driver.auth(cred), echo(server))
    assert (result.status, result.history) == (401, [])
    assert server.count == 1
    assert cred.calls == 2  # asked once more after the 401, and handed back the same token


def _on_a_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


@pytest.mark.parametrize("kind", ["httpx-async", "httpx2-async", "aiohttp"])
async def test_an_async_client_reports_a_rejected_token_to_the_shared_store_off_the_event_loop(
    kind: str, server: AzureOpenAIStandIn, registry: TokenRegistry, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from azure_ad_token_auth._store._records import TokenStore

    on_a_loop: list[bool] = []  # per rejection marker written: was an event loop running in that thread
    mark_rejected = TokenStore.mark_rejected

    def observed(store: TokenStore, key: Any, token: str) -> None:
        on_a_loop.append(_on_a_loop())
        mark_rejected(store, key, token)

    monkeypatch.setattr(TokenStore, "mark_rejected", observed)
    driver = Driver(kind, server.ca_path, server.ssl_context())
    auth = driver.auth(FakeCredential(registry=registry), shared_cache=tmp_path / "store", shared_cache_identity="app")
    server.fail_next(1, status=401)
    assert (await driver.post(auth, echo(server))).status == 200
    assert [r.status for r in server.requests] == [401, 200]
    assert on_a_loop == [False]


async def test_cross_origin_redirect_does_not_carry_the_token(
    driver: Driver, server: AzureOpenAIStandIn, registry: TokenRegistry, cred: FakeCredential
) -> None:
    with AzureOpenAIStandIn(registry=registry) as other:
        server.redirect_next(echo(other).replace("127.0.0.1", "localhost"))
        kw: dict[str, Any] = {} if driver.package in ("requests", "aiohttp") else {"follow_redirects": True}
        result = await driver.post(driver.auth(cred), echo(server), **kw)
        assert (result.status, result.history) == (401, [307])
        assert [r.token_status for r in other.requests] == ["missing"]
    assert cred.calls == 1  # the other host's 401 did not make us renew


async def test_a_same_origin_redirect_keeps_the_token(
    driver: Driver, server: AzureOpenAIStandIn, cred: FakeCredential
) -> None:
    server.redirect_next(echo(server))
    kw: dict[str, Any] = {} if driver.package in ("requests", "aiohttp") else {"follow_redirects": True}
    result = await driver.post(driver.auth(cred), echo(server), **kw)
    assert (result.status, result.history) == (200, [307])
    assert [r.token_status for r in server.requests] == ["valid", "valid"]
    assert cred.calls == 1


# -- where the token may go ------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_plain_http_to_loopback_is_refused_without_allow_http_and_nothing_is_sent(
    driver: Driver, plain_server: AzureOpenAIStandIn, cred: FakeCredential, host: str
) -> None:
    """No loopback exemption (azure-core's rule): a proxy could carry it, and only the caller
    knows whether a token in clear is acceptable."""
    with pytest.raises(InsecureTransportError, match="plain http: use https, or pass allow_http=True"):
        await driver.post(driver.auth(cred), f"http://{host}:{plain_server.port}/echo")
    assert plain_server.count == 0 and cred.calls == 0


async def test_plain_http_to_loopback_with_allow_http_goes_out_with_the_token(
    driver: Driver, plain_server: AzureOpenAIStandIn, cred: FakeCredential
) -> None:
    auth = driver.auth(cred, allow_http=True)
    for host in ("localhost", "127.0.0.1"):
        assert (await driver.post(auth, f"http://{host}:{plain_server.port}/echo")).status == 200
    assert [r.token_status for r in plain_server.requests] == ["valid"] * 2


async def test_plain_http_to_a_remote_host_is_refused_before_sending(driver: Driver, cred: FakeCredential) -> None:
    with pytest.raises(InsecureTransportError, match="example.invalid"):
        await driver.post(driver.auth(cred), "http://example.invalid/openai")
    assert cred.calls == 0


async def test_plain_http_outside_allowed_hosts_is_refused_too(
    driver: Driver, plain_server: AzureOpenAIStandIn, cred: FakeCredential
) -> None:
    """Whether or not the token would go there: an adapter's client sends nothing in clear unasked."""
    auth = driver.auth(cred, allowed_hosts=["*.openai.azure.com"])
    with pytest.raises(InsecureTransportError, match="allow_http=True"):
        await driver.post(auth, echo(plain_server), headers={"Authorization": "Bearer set-before-the-auth"})
    assert plain_server.count == 0 and cred.calls == 0


@pytest.mark.parametrize("allow_http", [False, True])
async def test_a_host_outside_allowed_hosts_gets_no_authorization_header_whoever_set_it(
    driver: Driver, server: AzureOpenAIStandIn, plain_server: AzureOpenAIStandIn, cred: FakeCredential, allow_http: bool
) -> None:
    """openai sets `Authorization: Bearer <token>` itself from its provider, before an
    `http_client`'s auth runs: a request the adapter gives no token leaves with none."""
    target = plain_server if allow_http else server
    auth = driver.auth(cred, allow_http=allow_http, allowed_hosts=["*.openai.azure.com"])
    result = await driver.post(auth, echo(target), headers={"Authorization": "Bearer set-before-the-auth"})
    assert result.status == 401
    assert [(r.token_status, "authorization" in r.headers) for r in target.requests] == [("missing", False)]
    assert cred.calls == 0


async def test_a_401_from_a_host_outside_allowed_hosts_is_left_alone(
    driver: Driver, server: AzureOpenAIStandIn, cred: FakeCredential
) -> None:
    server.fail_next(1, status=401)
    result = await driver.post(driver.auth(cred, allowed_hosts=["*.openai.azure.com"]), echo(server))
    assert (result.status, result.history) == (401, [])
    assert [(r.token_status, r.token_fingerprint) for r in server.requests] == [("missing", None)]
    assert cred.calls == 0


async def test_allowed_hosts_patterns_with_a_port_match_that_port_only(
    driver: Driver, server: AzureOpenAIStandIn, cred: FakeCredential
) -> None:
    assert (
        await driver.post(driver.auth(cred, allowed_hosts=[f"127.0.0.1:{server.port}"]), echo(server))
    ).status == 200
    other_port = server.port + 1 if server.port < 65535 else server.port - 1
    assert (await driver.post(driver.auth(cred, allowed_hosts=[f"127.0.0.1:{other_port}"]), echo(server))).status == 401
    assert [r.token_status for r in server.requests] == ["valid", "missing"]


async def test_a_same_origin_redirect_after_a_401_resend_carries_the_new_token(
    driver: Driver, server: AzureOpenAIStandIn, cred: FakeCredential
) -> None:
    server.fail_next(1, status=401)
    server.redirect_next(echo(server) + "?hop=1")
    kw: dict[str, Any] = {} if driver.package in ("requests", "aiohttp") else {"follow_redirects": True}
    result = await driver.post(driver.auth(cred), echo(server), **kw)
    assert result.status == 200
    rejected, renewed = (fingerprint(t) for t in cred.tokens)
    assert [(r.status, r.token_fingerprint) for r in server.requests] == [
        (401, rejected),
        (307, renewed),
        (200, renewed),
    ]


async def test_a_failed_renewal_after_a_401_leaves_no_token_in_traceback_locals(
    driver: Driver, server: AzureOpenAIStandIn, cred: FakeCredential
) -> None:
    from azure.core.exceptions import ClientAuthenticationError

    auth = driver.auth(cred)
    assert (await driver.post(auth, echo(server))).status == 200
    cred.fail = ClientAuthenticationError("the identity endpoint is down")
    server.fail_next(1, status=401)
    with pytest.raises(ClientAuthenticationError) as caught:
        await driver.post(auth, echo(server))
    rendered = "".join(traceback.TracebackException.from_exception(caught.value, capture_locals=True).format())
    assert "_send" in rendered or "auth_flow" in rendered or "_on_response" in rendered  # our frames are in it
    assert cred.tokens[0] not in rendered


async def test_a_request_failing_after_the_token_is_attached_shows_the_token_only_in_raw_request_bytes(
    driver: Driver, cred: FakeCredential
) -> None:
    # The HTTP library's own frames hold the request's headers (urllib3's `headers`),
    # which an error tracker renders with repr when the connection fails. What is left:
    # http.client connects lazily inside `send`, so with requests its frames hold the
    # serialized request (`msg`, `data`); bytes cannot hide anything (docs/faults.md).
    import socket

    with socket.socket() as probe:  # a loopback port nobody listens on: the connect fails
        probe.bind(("127.0.0.1", 0))
        url = f"https://127.0.0.1:{probe.getsockname()[1]}/"
    auth = driver.auth(cred)
    with pytest.raises(Exception) as caught:
        await driver.post(auth, url)
    assert cred.calls == 1  # the token was attached before the connection failed
    rendered = "".join(traceback.TracebackException.from_exception(caught.value, capture_locals=True).format())
    leaking = [line.strip() for line in rendered.splitlines() if cred.tokens[0] in line]
    assert [line for line in leaking if not line.startswith(("msg = b'", "data = b'"))] == []


def test_requests_headers_repr_hides_the_token(server: AzureOpenAIStandIn, cred: FakeCredential) -> None:
    # As httpx's `Headers` repr does: `print(response.request.headers)` or a log of them.
    response = requests.get(echo(server), auth=AzureADTokenAuth(cred), timeout=5, verify=server.ca_path)
    assert response.status_code == 200
    assert response.request.headers["Authorization"] == "Bearer " + cred.tokens[0]
    assert cred.tokens[0] not in repr(response.request.headers)
    assert cred.tokens[0] not in str(dict(response.request.headers))


def test_requests_a_streamed_401_whose_renewal_fails_gives_its_connection_back(
    server: AzureOpenAIStandIn, cred: FakeCredential
) -> None:
    from azure.core.exceptions import ClientAuthenticationError

    session = requests.Session()
    session.mount("https://", requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=1, pool_block=True))
    auth = AzureADTokenAuth(cred)
    # `verify=` per call: REQUESTS_CA_BUNDLE in the environment would override `session.verify`.
    verify = server.ca_path
    assert session.get(echo(server), auth=auth, timeout=5, verify=verify).status_code == 200
    cred.fail, cred.fail_times = ClientAuthenticationError("down"), 1
    server.fail_next(1, status=401)
    with pytest.raises(ClientAuthenticationError):
        session.get(echo(server), auth=auth, stream=True, timeout=5, verify=verify)
    # With the 401 left unread the one connection never comes back: this would block for ever.
    done = threading.Event()
    statuses: list[int] = []

    def again() -> None:  # no token: the cache holds the credential's error for a while
        statuses.append(session.get(echo(server), timeout=5, verify=verify).status_code)
        done.set()

    threading.Thread(target=again, daemon=True).start()
    assert done.wait(5), "the connection pool never got its connection back"
    assert statuses == [401]


async def test_a_challenge_echoing_the_token_across_the_length_cap_shows_none_of_it(
    driver: Driver, server: AzureOpenAIStandIn, cred: FakeCredential
) -> None:
    """A service echoing the rejected token where the shown challenge is cut: cutting first
    left all of the token but its last character in the chained 401's text."""
    if driver.kind == "aiohttp":
        pytest.skip("aiohttp refuses a header line over 8190 bytes: the challenge is never read")
    from azure.core.exceptions import ClientAuthenticationError

    from azure_ad_token_auth._policy import MAX_CHALLENGE_LENGTH

    auth = driver.auth(cred)
    assert (await driver.post(auth, echo(server))).status == 200
    token = cred.tokens[0]
    start = 'Bearer error="invalid_token", error_description="'
    padding = "x" * (MAX_CHALLENGE_LENGTH - len(start) - len(token) + 1)
    server.fail_next(1, status=401, headers={"WWW-Authenticate": f'{start}{padding}{token}"'})
    cred.fail = ClientAuthenticationError("the identity endpoint is down")
    with pytest.raises(ClientAuthenticationError) as caught:
        await driver.post(auth, echo(server))
    cause = caught.value.__cause__
    rendered = "".join(traceback.format_exception(caught.value)) + repr(cause) + cause.challenge  # type: ignore[union-attr]
    assert "The above exception was the direct cause" in rendered
    assert token[: len(token) // 2] not in rendered
