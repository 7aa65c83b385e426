"""The scope follows each request's cloud, for every adapter, on real clients.

Azure Government and Azure China hosts cannot be reached from a test (nothing leaves the
machine), so each client routes them to the loopback stand-in: requests through a
mounted adapter, httpx and httpx2 through a transport, aiohttp through a resolver. The
adapters under test see the real host names; the stand-in records the `Host` header.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest
import requests
from azure.core.credentials import AccessTokenInfo, TokenRequestOptions

from azure_ad_token_auth import AzureADTokenAuth, TokenCache, token_provider
from azure_ad_token_auth._adapter import origin_prefix
from azure_ad_token_auth._clouds import DEFAULT_SCOPE, RULES, Rule
from azure_ad_token_auth.testing import AzureOpenAIStandIn, FakeCredential, TokenRegistry, fingerprint

KINDS = ["requests", "httpx-sync", "httpx-async", "httpx2-sync", "httpx2-async", "aiohttp"]
PUBLIC = "https://cognitiveservices.azure.com/.default"
GOVERNMENT = "https://cognitiveservices.azure.us/.default"
CHINA = "https://cognitiveservices.azure.cn/.default"
HOSTS = {
    "res.openai.azure.us": GOVERNMENT,
    "res.cognitiveservices.azure.cn": CHINA,
    "res.openai.azure.com": PUBLIC,
    "proxy.example.org": DEFAULT_SCOPE,  # no rule: today's default
}


class CloudCredential(FakeCredential):
    """Counts calls per scope; each token's audience is its scope's resource."""

    def __init__(self, registry: TokenRegistry) -> None:
        super().__init__(registry=registry)
        self.scopes: list[tuple[str, ...]] = []

    def get_token_info(self, *scopes: str, options: TokenRequestOptions | None = None) -> AccessTokenInfo:
        with self._lock:
            self.calls += 1
            self.scopes.append(scopes)
        token, expires_on = self.registry.issue(3600, audience=scopes[0].removesuffix("/.default"))  # type: ignore[union-attr]
        with self._lock:
            self.tokens.append(token)
        return AccessTokenInfo(token, expires_on)

    def audiences(self, server: AzureOpenAIStandIn) -> list[tuple[str, str]]:
        """(Host header, token audience) of every request the stand-in got, in order."""
        aud = {fingerprint(t): str(self.registry.claims(t)["aud"]) for t in self.tokens}  # type: ignore[index, union-attr]
        return [(r.headers["host"], aud.get(r.token_fingerprint or "", "missing")) for r in server.requests]


# -- routing a real host name to the loopback stand-in, per client -----------------------


class _LoopbackAdapter(requests.adapters.HTTPAdapter):
    """Sends every request to the stand-in over plain http, keeping its URL and Host header."""

    def __init__(self, server: AzureOpenAIStandIn) -> None:
        super().__init__()
        self.base = server.base_url

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        routed = request.copy()
        path = "/" + request.url.split("/", 3)[3]  # type: ignore[union-attr]
        routed.url = self.base + path
        routed.headers["Host"] = request.url.split("/")[2]  # type: ignore[union-attr]
        kwargs["proxies"] = {}
        response = super().send(routed, *args, **kwargs)
        response.request = request
        return response


def _httpx_transports(http: Any, server: AzureOpenAIStandIn) -> tuple[Any, Any]:
    def routed(request: Any) -> Any:
        return http.Request(
            request.method,
            request.url.copy_with(scheme="http", host="127.0.0.1", port=server.port),
            headers=request.headers,  # Host included: the client set it from the real URL
            content=request.read(),
        )

    class Sync(http.BaseTransport):
        inner = http.HTTPTransport()

        def handle_request(self, request: Any) -> Any:
            return self.inner.handle_request(routed(request))

    class Async(http.AsyncBaseTransport):
        inner = http.AsyncHTTPTransport()

        async def handle_async_request(self, request: Any) -> Any:
            return await self.inner.handle_async_request(routed(request))

    return Sync(), Async()


class Client:
    """One adapter on its real client, sending to real host names routed to `server`."""

    def __init__(self, kind: str, server: AzureOpenAIStandIn) -> None:
        self.kind, self.server = kind, server
        self.package, _, mode = kind.partition("-")
        self.is_async = mode == "async" or kind == "aiohttp"

    def auth(self, credential: Any, **options: Any) -> Any:
        if self.package == "requests":
            return AzureADTokenAuth(credential, **options)
        if self.package == "aiohttp":
            pytest.importorskip("aiohttp", minversion="3.12")
            from azure_ad_token_auth.aiohttp import AzureADClientMiddleware

            # aiohttp reaches the stand-in over plain http: allowed to this (routed) host.
            return AzureADClientMiddleware(credential, allow_http=True, **options)
        module = pytest.importorskip(f"azure_ad_token_auth.{self.package}")
        return module.AzureADHttpxAuth(credential, **options)

    async def post(self, auth: Any, host: str, path: str = "/echo") -> int:
        if self.package == "requests":
            session = requests.Session()
            session.mount("https://", _LoopbackAdapter(self.server))
            with session:
                return session.post(f"https://{host}{path}", data=b"x", auth=auth, timeout=5).status_code
        if self.package == "aiohttp":
            return await self._aiohttp(auth, host, path)
        http = pytest.importorskip(self.package)
        sync, async_ = _httpx_transports(http, self.server)
        if self.is_async:
            async with http.AsyncClient(auth=auth, transport=async_, timeout=5) as client:
                return (await client.post(f"https://{host}{path}", content=b"x")).status_code
        with http.Client(auth=auth, transport=sync, timeout=5) as client:
            return client.post(f"https://{host}{path}", content=b"x").status_code

    async def _aiohttp(self, auth: Any, host: str, path: str) -> int:
        import aiohttp
        from aiohttp.abc import AbstractResolver, ResolveResult

        class Loopback(AbstractResolver):
            async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET) -> list[ResolveResult]:
                return [
                    {
                        "hostname": host,
                        "host": "127.0.0.1",
                        "port": port,
                        "family": socket.AF_INET,
                        "proto": 0,
                        "flags": 0,
                    }
                ]

            async def close(self) -> None:
                pass

        connector = aiohttp.TCPConnector(resolver=Loopback())
        async with aiohttp.ClientSession(
            connector=connector, middlewares=(auth,), trace_configs=[auth.trace_config]
        ) as session:
            async with session.post(f"http://{host}:{self.server.port}{path}", data=b"x") as response:
                await response.read()
                return response.status


@pytest.fixture(params=KINDS)
def client(request: pytest.FixtureRequest, server: AzureOpenAIStandIn) -> Client:
    return Client(request.param, server)


@pytest.fixture
def cloud_cred(registry: TokenRegistry) -> CloudCredential:
    return CloudCredential(registry)


def _host_only(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(host.split(":")[0], aud) for host, aud in pairs]


async def test_each_request_gets_a_token_for_its_own_cloud(
    client: Client, server: AzureOpenAIStandIn, cloud_cred: CloudCredential
) -> None:
    auth = client.auth(cloud_cred)
    order = [*HOSTS, *HOSTS, "res.openai.azure.us", "res.openai.azure.us"]
    for host in order:
        assert await client.post(auth, host) == 200
    assert _host_only(cloud_cred.audiences(server)) == [(h, HOSTS[h].removesuffix("/.default")) for h in order]
    # One token per scope, whatever the order of the requests; unknown hosts share the default's.
    assert sorted(cloud_cred.scopes) == sorted({(s,) for s in HOSTS.values()})
    assert auth.cache.scopes == (DEFAULT_SCOPE,)  # `cache`: the default scope's


async def test_a_foundry_project_route_gets_the_foundry_audience_and_the_resource_route_its_own(
    client: Client, server: AzureOpenAIStandIn, cloud_cred: CloudCredential
) -> None:
    """One Foundry account on one client: the scope follows the path, in any order."""
    auth = client.auth(cloud_cred)
    host = "acct.services.ai.azure.com"
    paths = ["/api/projects/p1/echo", "/echo", "/api/projects/p1/echo", "/echo"]
    for path in paths:
        await client.post(auth, host, path)  # the stand-in serves /echo only: the audience is what counts
    foundry, services = "https://ai.azure.com", PUBLIC.removesuffix("/.default")
    assert [aud for _, aud in cloud_cred.audiences(server)] == [foundry, services, foundry, services]


async def test_a_401_renews_only_the_cache_the_token_came_from(
    client: Client, server: AzureOpenAIStandIn, cloud_cred: CloudCredential
) -> None:
    auth = client.auth(cloud_cred)
    assert await client.post(auth, "res.openai.azure.com") == 200
    assert await client.post(auth, "res.openai.azure.us") == 200
    server.fail_next(1, status=401)
    assert await client.post(auth, "res.openai.azure.us") == 200  # resent with a new Government token
    assert await client.post(auth, "res.openai.azure.com") == 200  # the public token was kept
    assert cloud_cred.scopes == [(PUBLIC,), (GOVERNMENT,), (GOVERNMENT,)]
    fingerprints = [r.token_fingerprint for r in server.requests]
    public, gov, renewed = (fingerprint(t) for t in cloud_cred.tokens)
    assert fingerprints == [public, gov, gov, renewed, public]


async def test_scopes_given_are_used_for_every_host(
    client: Client, server: AzureOpenAIStandIn, cloud_cred: CloudCredential
) -> None:
    auth = client.auth(cloud_cred, scopes="api://00000000-0000-0000-0000-0000000000c0/.default")
    for host in HOSTS:
        assert await client.post(auth, host) == 200
    assert cloud_cred.scopes == [("api://00000000-0000-0000-0000-0000000000c0/.default",)]


async def test_a_shared_token_cache_keeps_its_own_scopes(
    client: Client, server: AzureOpenAIStandIn, cloud_cred: CloudCredential
) -> None:
    cache = TokenCache(cloud_cred)
    auth = client.auth(cache)
    for host in HOSTS:
        assert await client.post(auth, host) == 200
    assert cloud_cred.scopes == [(DEFAULT_SCOPE,)]


async def test_an_allowed_hosts_wildcard_gives_the_token_to_the_hosts_it_matches_only(
    client: Client, server: AzureOpenAIStandIn, cloud_cred: CloudCredential
) -> None:
    """On real host names (routed here): `*.openai.azure.com` covers the resource; any other host goes bare."""
    auth = client.auth(cloud_cred, allowed_hosts=["*.openai.azure.com"])
    assert await client.post(auth, "res.openai.azure.com") == 200
    assert await client.post(auth, "evil.example.com") == 401
    assert _host_only(cloud_cred.audiences(server)) == [
        ("res.openai.azure.com", PUBLIC.removesuffix("/.default")),
        ("evil.example.com", "missing"),
    ]
    assert [r.token_status for r in server.requests] == ["valid", "missing"]
    assert cloud_cred.calls == 1


# -- the selection itself ----------------------------------------------------------------


@pytest.mark.parametrize("rule", [r for r in RULES if r.service == "openai"], ids=lambda r: r.suffix + r.path)
def test_every_rule_picks_its_scope_and_shares_the_cache_with_a_provider(rule: Rule, fake: FakeCredential) -> None:
    auth = AzureADTokenAuth(fake)
    scope = rule.scope
    url = f"https://res{rule.suffix}{rule.path or '/openai/deployments/x/'}chat/completions"
    cache = auth.cache_for(url)
    assert cache.scopes == (scope,)
    assert auth.cache_for(url) is cache  # remembered: the common case is one startswith
    # Through the shared-cache registry: a provider for that scope draws from the same cache.
    assert token_provider(fake, scope)() == cache.get_token()
    assert fake.calls == 1


@pytest.mark.parametrize(
    "url",
    [
        "https://openai.azure.us/",  # the bare suffix is no resource's host
        "https://res.openai.azure.us.example.com/",
        "https://res.openai.azure.us@example.com/",  # userinfo: the host is example.com
        "https://127.0.0.1:8443/openai",
    ],
)
def test_hosts_no_rule_knows_keep_the_default_scope(url: str, fake: FakeCredential) -> None:
    auth = AzureADTokenAuth(fake)
    auth.cache_for("https://res.openai.azure.us/")  # a remembered origin must not leak into others
    assert auth.cache_for(url) is auth.cache


@pytest.mark.parametrize(
    ("url", "prefix"),
    [
        ("https://res.openai.azure.us/openai/x?y=1", "https://res.openai.azure.us/"),
        ("https://res.openai.azure.us:443/", "https://res.openai.azure.us:443/"),
        ("https://res.openai.azure.us?x=/", None),
        ("https://res.openai.azure.us", None),
    ],
)
def test_origin_prefix_ends_at_the_authority(url: str, prefix: str | None) -> None:
    assert origin_prefix(url) == prefix


def test_many_threads_across_clouds_make_one_call_per_scope(
    server: AzureOpenAIStandIn, cloud_cred: CloudCredential
) -> None:
    import concurrent.futures

    auth = AzureADTokenAuth(cloud_cred)
    hosts = list(HOSTS) * 16

    def one(host: str) -> int:
        return asyncio.run(Client("requests", server).post(auth, host))

    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        assert set(pool.map(one, hosts)) == {200}
    assert sorted(cloud_cred.scopes) == sorted({(s,) for s in HOSTS.values()})
    pairs = _host_only(cloud_cred.audiences(server))
    assert all(aud == HOSTS[host].removesuffix("/.default") for host, aud in pairs)


@pytest.mark.parametrize("kind", ["httpx-async", "httpx2-async", "aiohttp"])
async def test_many_coroutines_across_clouds_make_one_call_per_scope(
    kind: str, server: AzureOpenAIStandIn, cloud_cred: CloudCredential
) -> None:
    client = Client(kind, server)
    auth = client.auth(cloud_cred)
    statuses = await asyncio.gather(*(client.post(auth, host) for host in list(HOSTS) * 12))
    assert set(statuses) == {200}
    assert sorted(cloud_cred.scopes) == sorted({(s,) for s in HOSTS.values()})
    pairs = _host_only(cloud_cred.audiences(server))
    assert len(pairs) == 48 and all(aud == HOSTS[host].removesuffix("/.default") for host, aud in pairs)


def test_a_foundry_account_s_project_and_resource_routes_get_their_own_scopes(fake: FakeCredential) -> None:
    """One adapter, one Foundry account: its project routes want the Foundry audience and its
    resource routes the Cognitive Services one, in any order (the per-origin memo must not mix them)."""
    auth = AzureADTokenAuth(fake)
    project = "https://acct.services.ai.azure.com/api/projects/p1/openai/v1/responses"
    resource = "https://acct.services.ai.azure.com/models/chat/completions"
    for _ in range(2):
        assert auth.cache_for(resource).scopes == (PUBLIC,)
        assert auth.cache_for(project).scopes == ("https://ai.azure.com/.default",)


@pytest.mark.parametrize(
    ("endpoint", "scope"),
    [
        ("https://acct.services.ai.azure.com/api/projects/p1", "https://ai.azure.com/.default"),
        ("https://acct.services.ai.azure.com/", PUBLIC),
        ("https://acct.services.ai.azure.us/api/projects/p1/", "https://ai.azure.us/.default"),
    ],
)
def test_a_provider_takes_the_scope_of_its_endpoint_s_path(
    endpoint: str, scope: str, cloud_cred: CloudCredential
) -> None:
    assert token_provider(cloud_cred, endpoint=endpoint)()
    assert cloud_cred.scopes == [(scope,)]
