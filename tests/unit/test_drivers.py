"""The drivers every adapter runs (`_drivers`), stepped by hand on bare requests: the
per-request path (where the token goes, and where nothing goes), and the 401 steps answered.

The same drivers on real clients: tests/adapters/test_adapters.py.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from requests.structures import CaseInsensitiveDict  # as every client's headers: any case

from azure_ad_token_auth import InsecureTransportError, TokenRejectedError
from azure_ad_token_auth._adapter import AdapterBase
from azure_ad_token_auth._drivers import async_flow, attach, attach_async, sync_flow
from azure_ad_token_auth._flow import Response
from azure_ad_token_auth.testing import FakeCredential

URL = "https://res.openai.azure.com/openai/deployments/x/chat/completions"


class Adapter(AdapterBase):
    """An adapter for a client whose responses are the flow's own `Response`s."""

    _client = "test"

    def _read(self, request: Any, response: Any) -> Response:
        return response  # type: ignore[no-any-return]

    def _replayable(self, request: Any) -> bool:
        return True


def request(url: str = URL, **headers: str) -> Any:
    return SimpleNamespace(url=url, headers=CaseInsensitiveDict(headers))


def token(cred: FakeCredential, n: int = 0) -> str:
    return "Bearer " + cred.tokens[n]


@pytest.mark.parametrize(
    "set_before",
    [{}, {"Authorization": "Bearer set-by-openai"}, {"authorization": "Basic x"}, {"api-key": "set-by-openai"}],
)
async def test_hosts_outside_allowed_hosts_get_no_token_and_no_authorization_at_all(
    fake: FakeCredential, set_before: dict[str, str]
) -> None:
    """Whoever set an Authorization or api-key header (openai, from its provider or a callable
    `api_key`), it does not leave."""
    adapter = Adapter(fake, allowed_hosts=["*.openai.azure.com"])
    sync, coroutine = request("https://other.example/x", **set_before), request("https://other.example/x", **set_before)
    assert attach(adapter, sync) is sync and sync.headers == {}
    assert await attach_async(adapter, coroutine, coroutine.url) is None and coroutine.headers == {}
    assert fake.calls == 0


@pytest.mark.parametrize("host", ["127.0.0.1:8080", "localhost", "[::1]", "example.com"])
async def test_plain_http_is_refused_without_allow_http_even_to_loopback(fake: FakeCredential, host: str) -> None:
    url = f"http://{host}/x"
    with pytest.raises(InsecureTransportError, match="allow_http=True"):
        attach(Adapter(fake), request(url))
    with pytest.raises(InsecureTransportError, match="allow_http=True"):
        await attach_async(Adapter(fake), request(url), url)
    assert fake.calls == 0
    said = request(url)
    attach(Adapter(fake, allow_http=True), said)  # said explicitly: the token goes, in clear
    assert said.headers["Authorization"] == token(fake)


@pytest.mark.parametrize(
    "url",
    [
        "https://a.example.evil.test/x",  # the remembered host, as a prefix of another
        "https://a.example@evil.test/x",  # as user information
        "https://a.example:8443/x",  # another port
        "http://a.example/x",  # plain http
    ],
)
def test_the_origin_the_path_remembers_lets_no_other_through(fake: FakeCredential, url: str) -> None:
    adapter = Adapter(fake, allow_http=True, allowed_hosts=["a.example:443"])
    attach(adapter, first := request("https://a.example/first"))
    assert first.headers["Authorization"] == token(fake)  # `a.example` remembered
    attach(adapter, other := request(url, Authorization="Bearer set-by-someone"))
    assert "Authorization" not in other.headers


def test_the_sync_driver_resends_a_401_once_with_a_new_token(fake: FakeCredential) -> None:
    adapter, req = Adapter(fake), request()
    flow = sync_flow(adapter, req, URL)
    assert next(flow) is req and req.headers["Authorization"] == token(fake)
    assert flow.send(Response(401, token(fake), None)) is req  # the cache answered the steps
    assert req.headers["Authorization"] == token(fake, 1) and adapter.cache.current is not None
    with pytest.raises(StopIteration):  # once: whatever comes back goes to the caller
        flow.send(Response(401, token(fake, 1), None))
    assert fake.calls == 2


def test_the_sync_driver_ends_on_a_response_to_no_token_of_ours(fake: FakeCredential) -> None:
    adapter = Adapter(fake, allowed_hosts=["*.openai.azure.com"])
    flow = sync_flow(adapter, req := request("https://other.example/x"), req.url)
    next(flow)
    with pytest.raises(StopIteration):
        flow.send(Response(401, None, None))
    assert fake.calls == 0


async def test_the_async_driver_resends_a_401_once_and_chains_a_failed_renewal_to_it(fake: FakeCredential) -> None:
    from azure.core.exceptions import ClientAuthenticationError

    adapter, req = Adapter(fake), request()
    flow = async_flow(adapter, req, URL)
    assert await anext(flow) is req
    assert await flow.asend(Response(401, token(fake), None)) is req
    assert req.headers["Authorization"] == token(fake, 1)
    with pytest.raises(StopAsyncIteration):
        await flow.asend(Response(200, token(fake, 1), None))
    assert fake.calls == 2
    failing = FakeCredential()
    flow = async_flow(Adapter(failing), request(), URL)
    await anext(flow)
    failing.fail = ClientAuthenticationError("the identity endpoint is down")
    with pytest.raises(ClientAuthenticationError) as caught:
        await flow.asend(Response(401, token(failing), 'Bearer error="invalid_token"'))
    assert isinstance(caught.value.__cause__, TokenRejectedError)
