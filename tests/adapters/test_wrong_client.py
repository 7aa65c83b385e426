"""An adapter on another HTTP client says which adapter to use, and sends nothing.

Each case puts one package's adapter on a real client of another package and sends to
the loopback stand-in: the error names the right adapter, the stand-in sees no request
and the credential is never asked.
"""

from __future__ import annotations

from typing import Any

import pytest
import requests

from azure_ad_token_auth import AzureADTokenAuth, WrongClientError
from azure_ad_token_auth.testing import AzureOpenAIStandIn, FakeCredential
from conftest import echo

NAMES = {
    "requests": "azure_ad_token_auth.AzureADTokenAuth",
    "httpx": "azure_ad_token_auth.httpx.AzureADHttpxAuth",
    "httpx2": "azure_ad_token_auth.httpx2.AzureADHttpxAuth",
    "aiohttp": "azure_ad_token_auth.aiohttp.AzureADClientMiddleware",
}


def adapter(package: str, credential: Any) -> Any:
    if package == "requests":
        return AzureADTokenAuth(credential)
    if package == "aiohttp":
        pytest.importorskip("aiohttp", minversion="3.12")
        from azure_ad_token_auth.aiohttp import AzureADClientMiddleware

        return AzureADClientMiddleware(credential)
    return pytest.importorskip(f"azure_ad_token_auth.{package}").AzureADHttpxAuth(credential)


async def send(client: str, auth: Any, url: str) -> None:
    package, _, mode = client.partition("-")
    if package == "requests":
        requests.post(url, data=b"x", auth=auth, timeout=5)
    elif package == "aiohttp":
        pytest.importorskip("aiohttp", minversion="3.12")
        import aiohttp

        async with aiohttp.ClientSession(middlewares=(auth,)) as session:
            await session.post(url, data=b"x")
    elif mode == "async":
        http = pytest.importorskip(package)
        async with http.AsyncClient(auth=auth, timeout=5) as client_:
            await client_.post(url, content=b"x")
    else:
        http = pytest.importorskip(package)
        with http.Client(auth=auth, timeout=5) as client_:
            client_.post(url, content=b"x")


CASES = [
    # (adapter's package, client)
    ("requests", "httpx-sync"),  # today: AttributeError: 'URL' object has no attribute 'startswith'
    ("requests", "httpx-async"),
    ("requests", "httpx2-sync"),
    ("requests", "aiohttp"),  # today: TypeError: __call__() takes 2 positional arguments but 3 were given
    ("httpx", "requests"),  # today: TypeError: 'AzureADHttpxAuth' object is not callable
    ("httpx", "httpx2-sync"),
    ("httpx", "httpx2-async"),
    ("httpx2", "httpx-sync"),
    ("httpx2", "httpx-async"),
    ("httpx2", "requests"),
    ("httpx", "aiohttp"),
    ("aiohttp", "requests"),
    ("aiohttp", "httpx-sync"),
    ("aiohttp", "httpx2-async"),
]


@pytest.mark.parametrize(("package", "client"), CASES)
async def test_an_adapter_on_another_client_names_the_adapter_to_use_and_sends_nothing(
    package: str, client: str, server: AzureOpenAIStandIn, fake: FakeCredential
) -> None:
    auth = adapter(package, fake)
    with pytest.raises(WrongClientError) as caught:
        await send(client, auth, echo(server))
    wanted = client.partition("-")[0]
    assert NAMES[wanted] in str(caught.value)
    assert f"{type(auth).__name__} is the {package} adapter" in str(caught.value)
    assert isinstance(caught.value, TypeError)
    assert server.count == 0
    assert fake.calls == 0
