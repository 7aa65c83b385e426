"""openai's `http_client=` carrying `AzureADHttpxAuth`: every request's real URL is checked.

openai sets `Authorization: Bearer <token>` itself, from whatever provider it holds, on
every request, whatever its URL. The auth runs after that and sees the URL the request
really goes to: outside `allowed_hosts` it removes the header (the request leaves with
none), and plain http without `allow_http=True` is refused before anything is sent.
Real openai clients (httpx2 from openai 3, httpx before) against the loopback stand-ins;
public openai API only (`client.get` with an absolute URL, `with_options(base_url=...)`).
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator, Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from azure_ad_token_auth import InsecureTransportError
from azure_ad_token_auth.testing import AzureOpenAIStandIn, FakeCredential, TokenRegistry, fingerprint

openai = pytest.importorskip("openai")
MAJOR = int(openai.__version__.split(".")[0])
if MAJOR < 1:
    pytest.skip("http_client= is openai >= 1's", allow_module_level=True)

pytestmark = pytest.mark.openai1
API_VERSION = "2024-10-21"
MESSAGES = [{"role": "user", "content": "Hello"}]


@pytest.fixture
def http() -> SimpleNamespace:
    """The http package openai is built on (httpx2 from openai 3.0, httpx before), and our auth for it."""
    package = "httpx2" if MAJOR >= 3 else "httpx"
    module = pytest.importorskip(package)
    return SimpleNamespace(
        module=module, Auth=importlib.import_module(f"azure_ad_token_auth.{package}").AzureADHttpxAuth
    )


@pytest.fixture
def other(registry: TokenRegistry) -> Iterator[AzureOpenAIStandIn]:
    """Another https host (a port outside `allowed_hosts`)."""
    with AzureOpenAIStandIn(registry=registry) as stand_in:
        yield stand_in


@pytest.fixture
def plain(registry: TokenRegistry) -> Iterator[AzureOpenAIStandIn]:
    with AzureOpenAIStandIn(registry=registry, tls=False) as stand_in:
        yield stand_in


def refusal(caught: pytest.ExceptionInfo[BaseException]) -> InsecureTransportError:
    """Our error: raised as it is, or wrapped in `APIConnectionError` (as some openai releases do)."""
    error = caught.value if isinstance(caught.value, InsecureTransportError) else caught.value.__cause__
    assert isinstance(error, InsecureTransportError), repr(caught.value)
    return error


REFUSED = (InsecureTransportError, openai.APIConnectionError)


def azure_client(http: SimpleNamespace, endpoint: AzureOpenAIStandIn, cred: FakeCredential, **options: Any) -> Any:
    """`AzureOpenAI` with a provider (any: openai copies its token into every request) and an
    `http_client` whose auth gives the token to the endpoint only."""
    auth = http.Auth(cred, allowed_hosts=[f"127.0.0.1:{endpoint.port}"], **options)
    return openai.AzureOpenAI(
        azure_endpoint=endpoint.base_url,
        api_version=API_VERSION,
        azure_ad_token_provider=auth.cache.get_token,
        http_client=http.module.Client(auth=auth, verify=endpoint.ssl_context()),
        max_retries=0,
    )


@pytest.fixture
def client(http: SimpleNamespace, https_server: AzureOpenAIStandIn, cred: FakeCredential) -> Iterator[Any]:
    made = azure_client(http, https_server, cred)
    yield made
    made.close()


def test_the_endpoint_gets_the_token(client: Any, https_server: AzureOpenAIStandIn, cred: FakeCredential) -> None:
    completion = client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert completion.choices[0].message.content == https_server.completion
    assert [(r.token_status, r.token_fingerprint) for r in https_server.requests] == [
        ("valid", fingerprint(cred.tokens[0]))
    ]


def test_an_absolute_url_to_a_host_outside_allowed_hosts_gets_no_authorization(
    client: Any, http: SimpleNamespace, https_server: AzureOpenAIStandIn, other: AzureOpenAIStandIn
) -> None:
    """`client.get("https://other/...")`: openai puts its token on it; it leaves with none."""
    client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    with pytest.raises(openai.AuthenticationError):  # the other host's 401: it got no token
        client.get(f"{other.base_url}/echo", cast_to=http.module.Response)
    assert [(r.token_status, "authorization" in r.headers) for r in other.requests] == [("missing", False)]
    assert [r.token_status for r in https_server.requests] == ["valid"]


def test_a_copy_with_another_base_url_sends_it_no_authorization(
    client: Any, other: AzureOpenAIStandIn, cred: FakeCredential
) -> None:
    copy = client.with_options(base_url=f"{other.base_url}/openai/deployments/gpt-4o/")
    with pytest.raises(openai.AuthenticationError):
        copy.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert [(r.path, r.token_status, "authorization" in r.headers) for r in other.requests] == [
        ("/openai/deployments/gpt-4o/chat/completions", "missing", False)
    ]
    assert cred.calls == 1  # openai's provider asked; the token went nowhere


def _sends_a_callable_api_key() -> bool:
    """Whether this openai's Azure client sends a callable `api_key` as `api-key`: openai 3 does;
    2.x declares a callable but its Azure client raises "Unable to handle auth"; 1.x takes only a str."""
    return int(openai.__version__.split(".")[0]) >= 3


@pytest.mark.parametrize(
    "how",
    [
        pytest.param(
            "callable-api_key",
            marks=pytest.mark.skipif(not _sends_a_callable_api_key(), reason="openai < 3 sends no callable api_key"),
        ),
        "default_headers",
    ],
)
def test_a_token_openai_puts_in_the_api_key_header_is_removed_for_a_host_outside_allowed_hosts(
    http: SimpleNamespace, https_server: AzureOpenAIStandIn, other: AzureOpenAIStandIn, cred: FakeCredential, how: str
) -> None:
    """Azure's `api-key` header carries a token too: openai fills it from a callable `api_key`
    (a provider passed there) or from `default_headers`, on every request, whatever its URL."""
    auth = http.Auth(cred, allowed_hosts=[f"127.0.0.1:{https_server.port}"])
    key: Any = auth.cache.get_token if how == "callable-api_key" else "unused"
    headers = {"api-key": auth.cache.get_token()} if how == "default_headers" else None
    with openai.AzureOpenAI(
        azure_endpoint=https_server.base_url,
        api_version=API_VERSION,
        api_key=key,
        default_headers=headers,
        http_client=http.module.Client(auth=auth, verify=https_server.ssl_context()),
        max_retries=0,
    ) as client:
        with pytest.raises(openai.AuthenticationError):  # the other host's 401: it got no token
            client.get(f"{other.base_url}/echo", cast_to=http.module.Response)
    ((request,),) = [other.requests]
    assert ("api-key" in request.headers, "authorization" in request.headers) == (False, False)
    assert cred.tokens and not any(token in str(request.headers) for token in cred.tokens)


def test_plain_http_is_refused_before_anything_is_sent(
    client: Any, http: SimpleNamespace, plain: AzureOpenAIStandIn, cred: FakeCredential
) -> None:
    """Outside `allowed_hosts` or not, plain http without `allow_http=True` sends nothing:
    openai has put the token on it already."""
    with pytest.raises(REFUSED) as caught:
        client.get(f"{plain.base_url}/echo", cast_to=http.module.Response)
    assert "allow_http=True" in str(refusal(caught))
    assert plain.count == 0


def test_with_allow_http_plain_http_outside_allowed_hosts_goes_without_authorization(
    http: SimpleNamespace, https_server: AzureOpenAIStandIn, plain: AzureOpenAIStandIn, cred: FakeCredential
) -> None:
    client = azure_client(http, https_server, cred, allow_http=True)
    with client, pytest.raises(openai.AuthenticationError):
        client.get(f"{plain.base_url}/echo", cast_to=http.module.Response)
    assert [(r.token_status, "authorization" in r.headers) for r in plain.requests] == [("missing", False)]


@pytest.fixture
async def async_client(
    http: SimpleNamespace, https_server: AzureOpenAIStandIn, cred: FakeCredential
) -> AsyncIterator[Any]:
    auth = http.Auth(cred, allowed_hosts=[f"127.0.0.1:{https_server.port}"])

    async def provider() -> str:
        return await auth.cache.get_token_async()

    made = openai.AsyncAzureOpenAI(
        azure_endpoint=https_server.base_url,
        api_version=API_VERSION,
        azure_ad_token_provider=provider,
        http_client=http.module.AsyncClient(auth=auth, verify=https_server.ssl_context()),
        max_retries=0,
    )
    yield made
    await made.close()


async def test_async_a_host_outside_allowed_hosts_gets_no_authorization(
    async_client: Any,
    http: SimpleNamespace,
    https_server: AzureOpenAIStandIn,
    other: AzureOpenAIStandIn,
    plain: AzureOpenAIStandIn,
) -> None:
    completion = await async_client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert completion.choices[0].message.content == https_server.completion
    with pytest.raises(openai.AuthenticationError):
        await async_client.get(f"{other.base_url}/echo", cast_to=http.module.Response)
    with pytest.raises(openai.AuthenticationError):
        await async_client.with_options(
            base_url=f"{other.base_url}/openai/deployments/gpt-4o/"
        ).chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert [(r.token_status, "authorization" in r.headers) for r in other.requests] == [("missing", False)] * 2
    with pytest.raises(REFUSED) as caught:
        await async_client.get(f"{plain.base_url}/echo", cast_to=http.module.Response)
    assert "allow_http=True" in str(refusal(caught))
    assert plain.count == 0
    assert [r.token_status for r in https_server.requests] == ["valid"]
