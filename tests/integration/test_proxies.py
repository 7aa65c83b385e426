"""A token for a plain-http loopback URL never reaches a proxy: real clients, real proxies.

The proxies listen on 127.0.0.2 and forward to loopback only (never off the machine); they
record whether an `Authorization` header passed through them. Each configuration is first
sent by the bare client with a probe header (no token), which shows where the client
really sends it; with the auth, a request the client routes through the proxy must be
refused before anything is sent, and a direct one must go out with its token.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from requests.adapters import HTTPAdapter

from azure_ad_token_auth import AzureADTokenAuth, InsecureTransportError
from azure_ad_token_auth.testing import AzureOpenAIStandIn, FakeCredential
from conftest import echo
from proxy_helpers import Proxy

PROBE = "X-Probe"


@pytest.fixture
def http_proxy() -> Iterator[Proxy]:
    proxy = Proxy("http")
    yield proxy
    proxy.close()


@pytest.fixture
def socks_proxy() -> Iterator[Proxy]:
    proxy = Proxy("socks")
    yield proxy
    proxy.close()


def _check(
    send: Callable[[Any], Any], auth: Any, proxy: Proxy, server: AzureOpenAIStandIn, expect: str | None = None
) -> InsecureTransportError | None:
    """Send once bare (the probe shows the client's own route), then with `auth`.

    Returns the refusal, or None when it went direct; a request the client routed through
    the proxy must have been refused, and nothing with a token may have reached the proxy.
    """
    send(None)
    through_proxy = proxy.used
    proxy.forget()
    before = server.count
    refusal: InsecureTransportError | None = None
    try:
        send(auth)
    except InsecureTransportError as error:
        refusal = error
    outcome = "direct" if refusal is None else "refused"
    if refusal is not None:
        assert "proxy" in str(refusal)
        assert server.count == before
    else:
        assert [r.token_status for r in server.requests[before:]] == ["valid"]
    assert not proxy.saw_token and not proxy.used
    if through_proxy:
        assert outcome == "refused", "the client sent it through the proxy: the token would have gone too"
    if expect is not None:
        assert outcome == expect
    return refusal


# -- requests -------------------------------------------------------------------------


def _requests_sender(url: str, session: requests.Session | None = None, **kw: Any) -> Callable[[Any], Any]:
    def send(auth: Any) -> Any:
        s = session if session is not None else requests.Session()
        # requests writes the environment's proxies into a call's `proxies` dict: a fresh one each time.
        call: dict[str, Any] = {k: dict(v) if isinstance(v, dict) else v for k, v in kw.items()}
        r = s.post(url, data=b"x", auth=auth, headers={PROBE: "1"}, timeout=5, **call)
        assert auth is None or r.status_code == 200
        return r

    return send


@pytest.mark.parametrize("name", ["Http_Proxy", "hTTP_pROXY", "All_Proxy", "aLL_proxy"])
def test_requests_a_proxy_variable_in_any_case_is_honoured(
    name: str, server: AzureOpenAIStandIn, cred: FakeCredential, http_proxy: Proxy, no_proxy_env: pytest.MonkeyPatch
) -> None:
    """urllib reads `*_proxy` names in any case, so requests does: `Http_Proxy` counts."""
    no_proxy_env.setenv(name, http_proxy.url)
    _check(_requests_sender(echo(server)), AzureADTokenAuth(cred), http_proxy, server, expect="refused")


@pytest.mark.parametrize(
    ("call_no_proxy", "expect"), [("example.invalid", "refused"), ("127.0.0.1", "direct"), ("", "refused")]
)
def test_requests_a_call_level_no_proxy_replaces_the_environments(
    call_no_proxy: str,
    expect: str,
    server: AzureOpenAIStandIn,
    cred: FakeCredential,
    http_proxy: Proxy,
    no_proxy_env: pytest.MonkeyPatch,
) -> None:
    """`proxies={"no_proxy": ...}` on the call overrides NO_PROXY from the environment."""
    no_proxy_env.setenv("HTTP_PROXY", http_proxy.url)
    no_proxy_env.setenv("NO_PROXY", "127.0.0.1" if call_no_proxy != "127.0.0.1" else "example.invalid")
    send = _requests_sender(echo(server), proxies={"no_proxy": call_no_proxy})
    _check(send, AzureADTokenAuth(cred), http_proxy, server, expect=expect)


@pytest.mark.parametrize(
    "case",
    [
        "session-proxies-beat-env-no-proxy",
        "call-none-drops-session-proxy",
        "session-host-key",
        "call-all-key",
        "env-only-no-proxy-bypass",
        "trust-env-false",
        "session-none-env-proxy",
    ],
)
def test_requests_session_call_and_environment_merge_as_requests_merges_them(
    case: str, server: AzureOpenAIStandIn, cred: FakeCredential, http_proxy: Proxy, no_proxy_env: pytest.MonkeyPatch
) -> None:
    session = requests.Session()
    call: dict[str, Any] = {}
    if case == "session-proxies-beat-env-no-proxy":
        no_proxy_env.setenv("NO_PROXY", "127.0.0.1")
        session.proxies = {"http": http_proxy.url}
    elif case == "call-none-drops-session-proxy":
        session.proxies = {"http": http_proxy.url}
        call = {"proxies": {"http": None}}
    elif case == "session-host-key":
        session.proxies = {"http://127.0.0.1": http_proxy.url}
    elif case == "call-all-key":
        call = {"proxies": {"all": http_proxy.url}}
    elif case == "env-only-no-proxy-bypass":
        no_proxy_env.setenv("http_proxy", http_proxy.url)
        no_proxy_env.setenv("no_proxy", "127.0.0.0/8")
    elif case == "trust-env-false":
        no_proxy_env.setenv("HTTP_PROXY", http_proxy.url)
        session.trust_env = False
    elif case == "session-none-env-proxy":
        no_proxy_env.setenv("HTTP_PROXY", http_proxy.url)
        session.proxies = {"http": None}  # type: ignore[dict-item]
    _check(_requests_sender(echo(server), session, **call), AzureADTokenAuth(cred), http_proxy, server)


class _ViaProxyAdapter(HTTPAdapter):
    """Overrides send: routes every request through a proxy of its own."""

    proxy_url = ""

    def send(self, request: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        kwargs["proxies"] = {"http": self.proxy_url}
        return super().send(request, **kwargs)


class _ForeignAdapter(requests.adapters.BaseAdapter):
    """Not an HTTPAdapter: sends through its own HTTPAdapter with a proxy."""

    proxy_url = ""

    def __init__(self) -> None:
        super().__init__()
        self._inner = HTTPAdapter()

    def send(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        kwargs["proxies"] = {"http": self.proxy_url}
        return self._inner.send(request, *args, **kwargs)

    def close(self) -> None:
        self._inner.close()


@pytest.mark.parametrize("kind", ["subclass-send", "foreign", "instance-send", "proxy-pool-manager"])
def test_requests_an_adapter_it_cannot_read_refuses_plain_http_unless_allow_http(
    kind: str, server: AzureOpenAIStandIn, cred: FakeCredential, http_proxy: Proxy, no_proxy_env: pytest.MonkeyPatch
) -> None:
    import urllib3

    session = requests.Session()
    adapter: Any
    if kind == "subclass-send":
        adapter = _ViaProxyAdapter()
        adapter.proxy_url = http_proxy.url
    elif kind == "foreign":
        adapter = _ForeignAdapter()
        adapter.proxy_url = http_proxy.url
    elif kind == "instance-send":
        adapter = HTTPAdapter()
        inner = adapter.send
        adapter.send = lambda request, **kw: inner(request, **{**kw, "proxies": {"http": http_proxy.url}})
    else:
        adapter = HTTPAdapter()
        adapter.poolmanager = urllib3.ProxyManager(http_proxy.url)
    session.mount("http://", adapter)
    refusal = _check(_requests_sender(echo(server), session), AzureADTokenAuth(cred), http_proxy, server, "refused")
    if kind == "proxy-pool-manager":
        return  # requests' own code, read: the pool manager is a proxy's
    assert "allow_http=True" in str(refusal) and "cannot tell" in str(refusal)
    # The way out it names: allow_http=True (the application's own choice, to any host).
    assert _requests_sender(echo(server), session)(AzureADTokenAuth(cred, allow_http=True)).status_code == 200


def test_requests_an_adapter_subclass_that_keeps_send_is_read(
    server: AzureOpenAIStandIn, cred: FakeCredential, http_proxy: Proxy, no_proxy_env: pytest.MonkeyPatch
) -> None:
    """Overriding `init_poolmanager` (TLS settings, pool sizes) keeps the adapter readable."""

    class Tuned(HTTPAdapter):
        def init_poolmanager(self, connections: int, maxsize: int, block: bool = False, **kwargs: Any) -> None:
            super().init_poolmanager(connections, 4, block, **kwargs)

    session = requests.Session()
    session.mount("http://", Tuned())
    _check(_requests_sender(echo(server), session), AzureADTokenAuth(cred), http_proxy, server, expect="direct")


def test_requests_an_adapter_mounted_for_a_path_a_same_origin_redirect_reaches_is_read(
    server: AzureOpenAIStandIn, cred: FakeCredential, http_proxy: Proxy, no_proxy_env: pytest.MonkeyPatch
) -> None:
    # requests keeps Authorization across a redirect to the same origin and does not run
    # the auth again: the adapter mounted for the redirect's path carries the token.
    class ViaProxy(HTTPAdapter):
        def send(self, request: Any, **kw: Any) -> Any:  # type: ignore[override]
            kw["proxies"] = {"http": http_proxy.url}
            return super().send(request, **kw)

    # A path under another origin changes nothing for this one.
    other = requests.Session()
    other.mount("http://127.0.0.1:1/legacy/", ViaProxy())
    assert other.post(echo(server), data=b"x", auth=AzureADTokenAuth(cred), timeout=5).status_code == 200
    session = requests.Session()
    session.mount(server.base_url + "/legacy/", ViaProxy())

    def send(auth: Any) -> Any:
        server.redirect_next(server.base_url + "/legacy/echo")
        return session.post(echo(server), data=b"x", auth=auth, headers={PROBE: "1"}, timeout=5)

    send(None)
    assert http_proxy.used, "the redirect goes through the path's adapter and its proxy"
    http_proxy.forget()
    before = server.count
    with pytest.raises(InsecureTransportError, match="cannot tell"):
        send(AzureADTokenAuth(cred))
    assert not http_proxy.used and server.count == before


def test_requests_a_request_prepared_outside_a_call_is_refused(
    server: AzureOpenAIStandIn, cred: FakeCredential, http_proxy: Proxy, no_proxy_env: pytest.MonkeyPatch
) -> None:
    """Its proxies are chosen when it is sent (`session.send(prep, proxies=...)`): unknown at prepare time."""
    session = requests.Session()
    # Today's main prepared it with the token and the send below went through the proxy.
    with pytest.raises(InsecureTransportError, match="allow_http=True"):
        session.prepare_request(requests.Request("POST", echo(server), data=b"x", auth=AzureADTokenAuth(cred)))
    with pytest.raises(InsecureTransportError, match="allow_http=True"):
        requests.Request("POST", echo(server), data=b"x", auth=AzureADTokenAuth(cred)).prepare()
    assert not http_proxy.used and server.count == 0 and cred.calls == 0


def test_requests_a_session_subclass_is_asked_or_refused(
    server: AzureOpenAIStandIn, cred: FakeCredential, http_proxy: Proxy, no_proxy_env: pytest.MonkeyPatch
) -> None:
    """Its own `merge_environment_settings` is the client's code: asked. Its own `send`: cannot be read."""

    class Merging(requests.Session):
        def merge_environment_settings(self, *args: Any, **kwargs: Any) -> Any:
            settings = super().merge_environment_settings(*args, **kwargs)
            settings["proxies"] = {**settings["proxies"], "http": http_proxy.url}
            return settings

    class Sending(requests.Session):
        def send(self, request: Any, **kwargs: Any) -> Any:  # type: ignore[override]
            kwargs["proxies"] = {"http": http_proxy.url}
            return super().send(request, **kwargs)

    refusal = _check(_requests_sender(echo(server), Merging()), AzureADTokenAuth(cred), http_proxy, server, "refused")
    assert "cannot tell" not in str(refusal)
    refusal = _check(_requests_sender(echo(server), Sending()), AzureADTokenAuth(cred), http_proxy, server, "refused")
    assert "Sending overrides send" in str(refusal)


def test_requests_a_socks_proxy_from_the_environment_is_refused(
    server: AzureOpenAIStandIn, cred: FakeCredential, socks_proxy: Proxy, no_proxy_env: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("socks")
    no_proxy_env.setenv("ALL_PROXY", socks_proxy.url)
    _check(_requests_sender(echo(server)), AzureADTokenAuth(cred), socks_proxy, server, expect="refused")


def test_requests_a_changed_environment_or_session_is_never_served_from_memory(
    server: AzureOpenAIStandIn, cred: FakeCredential, http_proxy: Proxy, no_proxy_env: pytest.MonkeyPatch
) -> None:
    """The check remembers decisions; any change to what decides them is seen on the next request."""
    session = requests.Session()
    auth = AzureADTokenAuth(cred)
    send = _requests_sender(echo(server), session)

    def direct() -> None:
        assert send(auth).status_code == 200

    def refused() -> None:
        with pytest.raises(InsecureTransportError, match="proxy"):
            send(auth)

    direct()
    direct()
    no_proxy_env.setenv("Http_Proxy", http_proxy.url)
    refused()
    no_proxy_env.setenv("no_PROXY", "127.0.0.1")
    direct()
    no_proxy_env.setenv("no_PROXY", "example.invalid")
    refused()
    no_proxy_env.delenv("no_PROXY")
    no_proxy_env.delenv("Http_Proxy")
    direct()
    session.proxies["http"] = http_proxy.url  # in place
    refused()
    del session.proxies["http"]
    direct()
    session.mount("http://", _ViaProxyAdapter())
    with pytest.raises(InsecureTransportError, match="cannot tell"):
        send(auth)
    session.mount("http://", HTTPAdapter())
    direct()
    assert not http_proxy.used


# -- httpx and httpx2 -----------------------------------------------------------------

HTTPX_KINDS = ["httpx-sync", "httpx-async", "httpx2-sync", "httpx2-async"]


class _Wrapping:
    """A transport that wraps one of the library's own (retries, logging, ...)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def handle_request(self, request: Any) -> Any:
        return self.inner.handle_request(request)

    async def handle_async_request(self, request: Any) -> Any:
        return await self.inner.handle_async_request(request)

    def close(self) -> None:
        self.inner.close()

    async def aclose(self) -> None:
        await self.inner.aclose()


class HttpxKind:
    def __init__(self, kind: str) -> None:
        package, _, mode = kind.partition("-")
        self.http = pytest.importorskip(package)
        self.module = pytest.importorskip(f"azure_ad_token_auth.{package}")
        self.is_async = mode == "async"
        self.Transport = self.http.AsyncHTTPTransport if self.is_async else self.http.HTTPTransport

    def auth(self, cred: Any, **options: Any) -> Any:
        return self.module.AzureADHttpxAuth(cred, **options)

    def wrapping(self, inner: Any) -> Any:
        base = self.http.AsyncBaseTransport if self.is_async else self.http.BaseTransport
        return type("Wrapping", (_Wrapping, base), {})(inner)

    def sender(self, url: str, **client: Any) -> Callable[[Any], Any]:
        import asyncio

        def send(auth: Any) -> Any:
            if self.is_async:

                async def go() -> Any:
                    async with self.http.AsyncClient(auth=auth, timeout=5, **client) as c:
                        return await c.post(url, content=b"x", headers={PROBE: "1"})

                r = asyncio.run(go())
            else:
                with self.http.Client(auth=auth, timeout=5, **client) as c:
                    r = c.post(url, content=b"x", headers={PROBE: "1"})
            assert auth is None or r.status_code == 200
            return r

        return send


@pytest.fixture(params=HTTPX_KINDS)
def hx(request: pytest.FixtureRequest) -> HttpxKind:
    return HttpxKind(request.param)


def test_httpx_a_transport_wrapping_the_librarys_own_is_refused_unless_allow_http(
    hx: HttpxKind, server: AzureOpenAIStandIn, cred: FakeCredential, http_proxy: Proxy, no_proxy_env: pytest.MonkeyPatch
) -> None:
    def send(auth: Any) -> Any:
        mounts = {"http://": hx.wrapping(hx.Transport(proxy=hx.http.Proxy(http_proxy.url)))}
        return hx.sender(echo(server), mounts=mounts)(auth)

    refusal = _check(send, hx.auth(cred), http_proxy, server, expect="refused")
    assert "cannot tell" in str(refusal) and "allow_http=True" in str(refusal)
    send(hx.auth(cred, allow_http=True))  # the way out the message names
    assert http_proxy.saw_token


@pytest.mark.parametrize("how", ["mount", "client-proxy", "wrapped-in-mount-by-host"])
def test_httpx_a_proxy_mounted_for_the_url_is_refused(
    how: str,
    hx: HttpxKind,
    server: AzureOpenAIStandIn,
    cred: FakeCredential,
    http_proxy: Proxy,
    no_proxy_env: pytest.MonkeyPatch,
) -> None:
    def send(auth: Any) -> Any:
        if how == "mount":
            client: dict[str, Any] = {"mounts": {"http://": hx.Transport(proxy=hx.http.Proxy(http_proxy.url))}}
        elif how == "client-proxy":
            if "proxy" not in inspect.signature(hx.http.Client).parameters:
                pytest.skip(f"{hx.http.__name__} {hx.http.__version__} has no Client(proxy=) (httpx < 0.26: proxies=)")
            client = {"proxy": http_proxy.url}
        else:
            client = {
                "mounts": {
                    "all://": hx.Transport(),
                    "http://127.0.0.1": hx.Transport(proxy=hx.http.Proxy(http_proxy.url)),
                }
            }
        return hx.sender(echo(server), **client)(auth)

    _check(send, hx.auth(cred), http_proxy, server, expect="refused")


@pytest.mark.parametrize(("trust_env", "expect"), [(True, "refused"), (False, "direct")])
def test_httpx_an_environment_proxy_counts_only_when_the_client_trusts_it(
    trust_env: bool,
    expect: str,
    hx: HttpxKind,
    server: AzureOpenAIStandIn,
    cred: FakeCredential,
    http_proxy: Proxy,
    no_proxy_env: pytest.MonkeyPatch,
) -> None:
    no_proxy_env.setenv("Http_Proxy", http_proxy.url)
    send = hx.sender(echo(server), trust_env=trust_env)
    _check(send, hx.auth(cred), http_proxy, server, expect=expect)


def test_httpx_a_socks_proxy_from_the_environment_is_refused(
    hx: HttpxKind,
    server: AzureOpenAIStandIn,
    cred: FakeCredential,
    socks_proxy: Proxy,
    no_proxy_env: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("socksio")
    no_proxy_env.setenv("ALL_PROXY", socks_proxy.url)
    _check(hx.sender(echo(server)), hx.auth(cred), socks_proxy, server, expect="refused")


def test_httpx_a_client_class_overriding_how_it_sends_is_refused(
    hx: HttpxKind, server: AzureOpenAIStandIn, cred: FakeCredential, http_proxy: Proxy, no_proxy_env: pytest.MonkeyPatch
) -> None:
    base = hx.http.AsyncClient if hx.is_async else hx.http.Client
    proxied = hx.Transport(proxy=hx.http.Proxy(http_proxy.url))

    if hx.is_async:

        class Client(base):  # type: ignore[valid-type,misc]
            async def _send_single_request(self, request: Any) -> Any:
                return await proxied.handle_async_request(request)

    else:

        class Client(base):  # type: ignore[valid-type,misc,no-redef]
            def _send_single_request(self, request: Any) -> Any:
                return proxied.handle_request(request)

    def send(auth: Any) -> Any:
        import asyncio

        async def go() -> Any:
            async with Client(auth=auth, timeout=5) as c:
                return await c.post(echo(server), content=b"x")

        if hx.is_async:
            return asyncio.run(go())
        with Client(auth=auth, timeout=5) as c:
            return c.post(echo(server), content=b"x")

    refusal = _check(send, hx.auth(cred), http_proxy, server, expect="refused")
    assert "overrides _send_single_request" in str(refusal) and "allow_http=True" in str(refusal)


def test_httpx_a_mock_transport_is_refused_unless_allow_http(
    hx: HttpxKind, cred: FakeCredential, no_proxy_env: pytest.MonkeyPatch
) -> None:
    seen: list[str | None] = []

    def handler(request: Any) -> Any:
        seen.append(request.headers.get("Authorization"))
        return hx.http.Response(200)

    send = hx.sender("http://127.0.0.1:9/echo", transport=hx.http.MockTransport(handler))
    with pytest.raises(InsecureTransportError, match=r"MockTransport.*allow_http=True"):
        send(hx.auth(cred))
    assert seen == []
    send(hx.auth(cred, allow_http=True))
    assert seen and seen[0] is not None and seen[0].startswith("Bearer ")


def test_httpx_https_is_not_asked(hx: HttpxKind, cred: FakeCredential, no_proxy_env: pytest.MonkeyPatch) -> None:
    """An opaque transport changes nothing for https: the proxy check is for plain http only."""
    seen: list[str | None] = []

    def handler(request: Any) -> Any:
        seen.append(request.headers.get("Authorization"))
        return hx.http.Response(200)

    hx.sender("https://127.0.0.1:9/echo", transport=hx.http.MockTransport(handler))(hx.auth(cred))
    assert seen and seen[0] is not None and seen[0].startswith("Bearer ")


# -- aiohttp --------------------------------------------------------------------------


def _aiohttp_sender(url: str, *, connector: Callable[[], Any] | None = None, **kw: Any) -> Callable[[Any], Any]:
    import asyncio

    aiohttp = pytest.importorskip("aiohttp", minversion="3.12")
    trust_env = kw.pop("trust_env", False)

    def send(auth: Any) -> Any:
        async def go() -> int:
            async with aiohttp.ClientSession(
                middlewares=() if auth is None else (auth,),
                trust_env=trust_env,
                connector=connector() if connector else None,
            ) as s:
                async with s.post(url, data=b"x", headers={PROBE: "1"}, **kw) as r:
                    await r.read()
                    return r.status

        status = asyncio.run(go())
        assert auth is None or status == 200

    return send


def _middleware(cred: Any, **options: Any) -> Any:
    from azure_ad_token_auth.aiohttp import AzureADClientMiddleware

    return AzureADClientMiddleware(cred, **options)


@pytest.mark.parametrize(
    ("how", "expect"),
    [
        ("trust-env", "refused"),
        ("env-not-trusted", "direct"),
        ("per-call", "refused"),
        ("trust-env-no-proxy", "direct"),
    ],
)
def test_aiohttp_the_proxy_the_session_chose_is_read(
    how: str,
    expect: str,
    server: AzureOpenAIStandIn,
    cred: FakeCredential,
    http_proxy: Proxy,
    no_proxy_env: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("aiohttp", minversion="3.12")
    kw: dict[str, Any] = {}
    if how.startswith("trust-env") or how == "env-not-trusted":
        no_proxy_env.setenv("Http_Proxy", http_proxy.url)
        kw["trust_env"] = how != "env-not-trusted"
        if how == "trust-env-no-proxy":
            no_proxy_env.setenv("No_Proxy", "127.0.0.1")
    else:
        kw["proxy"] = http_proxy.url
    _check(_aiohttp_sender(echo(server), **kw), _middleware(cred), http_proxy, server, expect=expect)


def test_aiohttp_a_connector_it_cannot_read_is_refused_unless_allow_http(
    server: AzureOpenAIStandIn, cred: FakeCredential, http_proxy: Proxy, no_proxy_env: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("aiohttp", minversion="3.12")
    import aiohttp
    from yarl import URL

    class ViaProxy(aiohttp.TCPConnector):
        """Like aiohttp-socks' ProxyConnector: routes every connection through its proxy."""

        async def _create_connection(self, req: Any, traces: Any, timeout: Any) -> Any:
            req.proxy = URL(http_proxy.url)
            return await super()._create_connection(req, traces, timeout)

    send = _aiohttp_sender(echo(server), connector=ViaProxy)
    refusal = _check(send, _middleware(cred), http_proxy, server, expect="refused")
    assert "cannot tell" in str(refusal) and "allow_http=True" in str(refusal)


# -- what hands a token over without seeing the request (a provider, openai's clients) ----


@pytest.mark.parametrize(("host", "no_proxy"), [("127.0.0.1", "127.0.0.0/8"), ("localhost", ".localhost")])
def test_a_provider_answers_as_openais_own_http_client_routes_the_endpoint(
    server: AzureOpenAIStandIn,
    cred: FakeCredential,
    http_proxy: Proxy,
    no_proxy_env: pytest.MonkeyPatch,
    host: str,
    no_proxy: str,
) -> None:
    # requests reads NO_PROXY one way (a CIDR, a leading dot matching the name itself),
    # httpx/httpx2 another: the provider must answer as the client carrying its token.
    openai = pytest.importorskip("openai", minversion="1")
    from azure_ad_token_auth import token_provider

    no_proxy_env.setenv("HTTP_PROXY", http_proxy.url)
    no_proxy_env.setenv("NO_PROXY", no_proxy)
    endpoint = server.base_url.replace("127.0.0.1", host)

    def send(auth: Any) -> Any:
        options: dict[str, Any] = {"api_key": "probe"} if auth is None else {"azure_ad_token_provider": auth()}
        with openai.AzureOpenAI(azure_endpoint=endpoint, api_version="2024-10-21", max_retries=0, **options) as c:
            try:
                c.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
            except openai.APIStatusError:
                assert auth is None

    _check(send, lambda: token_provider(cred, endpoint=endpoint), http_proxy, server)
