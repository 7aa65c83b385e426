"""`azure_openai_client` / `async_azure_openai_client`: an openai client whose provider and
`http_client` auth are wired to one endpoint, against the loopback Azure OpenAI stand-in.

The provider checks the endpoint once; the auth on openai's own http client checks every
request's real URL, which openai has already put the provider's token in.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import pytest

from azure_ad_token_auth import (
    ConfigurationError,
    InsecureTransportError,
    UsageError,
    async_azure_openai_client,
    azure_openai_client,
)
from azure_ad_token_auth.testing import (
    AsyncFakeCredential,
    AzureOpenAIStandIn,
    FakeCredential,
    TokenRegistry,
    fingerprint,
)
from openai_helpers import (
    API_VERSION,
    MESSAGES,
    OPENAI_VERSION,
    openai,
    openai_settings,  # noqa: F401 - the fixture every test uses
    refused,
    seen_tokens,
    tls_stand_in,
)

pytestmark = [pytest.mark.openai1, pytest.mark.usefixtures("openai_settings")]
needs_default_http_client = pytest.mark.skipif(
    OPENAI_VERSION < (1, 17), reason="openai.DefaultHttpxClient needs openai >= 1.17"
)


@pytest.fixture
def fake(cred: FakeCredential) -> FakeCredential:
    return cred


@pytest.fixture
def stand_in(server: AzureOpenAIStandIn) -> AzureOpenAIStandIn:
    return server


def _chat(client: Any) -> str:
    return str(client.chat.completions.create(model="gpt-4o", messages=MESSAGES).choices[0].message.content)


@needs_default_http_client
def test_a_client_over_tls_sends_its_requests_with_one_credential_call(registry: TokenRegistry) -> None:
    credential = FakeCredential(registry=registry)
    with tls_stand_in(registry) as (stand_in, trust):
        client = azure_openai_client(
            stand_in.base_url, api_version=API_VERSION, credential=credential, http_client_options={"verify": trust}
        )
        assert isinstance(client, openai.AzureOpenAI)
        assert [_chat(client) for _ in range(10)] == [stand_in.completion] * 10
        assert seen_tokens(stand_in) == {("valid", fingerprint(credential.tokens[0]))}
    assert credential.calls == 1


@needs_default_http_client
@pytest.mark.parametrize("kind", [AsyncFakeCredential, FakeCredential], ids=["async-credential", "sync-credential"])
async def test_an_async_client_sends_concurrent_requests_with_one_credential_call(
    stand_in: AzureOpenAIStandIn, registry: TokenRegistry, kind: type[FakeCredential]
) -> None:
    credential = kind(registry=registry, delay=0.1)
    client = async_azure_openai_client(
        stand_in.base_url, api_version=API_VERSION, credential=credential, allow_http=True
    )
    assert isinstance(client, openai.AsyncAzureOpenAI)
    replies = await asyncio.gather(
        *(client.chat.completions.create(model="gpt-4o", messages=MESSAGES) for _ in range(20))
    )
    assert {r.choices[0].message.content for r in replies} == {stand_in.completion}
    assert seen_tokens(stand_in) == {("valid", fingerprint(credential.tokens[0]))}
    assert credential.calls == 1


@needs_default_http_client
def test_a_request_anywhere_but_the_endpoint_is_refused_though_openai_put_the_token_in_it(
    stand_in: AzureOpenAIStandIn, registry: TokenRegistry, fake: FakeCredential
) -> None:
    """The per-request check the provider cannot make: copies sent elsewhere, the endpoint's
    host on another port, plain http: refused before anything is sent."""
    client = azure_openai_client(
        stand_in.base_url, api_version=API_VERSION, credential=fake, allow_http=True, client_options={"max_retries": 0}
    )
    assert _chat(client) == stand_in.completion
    with AzureOpenAIStandIn(registry=registry) as other:  # the same host, another port
        elsewhere = [
            "https://elsewhere.invalid/openai/",
            "http://elsewhere.invalid/openai/",
            other.base_url + "/openai/",
        ]
        for base_url in elsewhere:
            with refused(r"not in allowed_hosts|elsewhere\.invalid"):
                _chat(client.with_options(base_url=base_url))
        assert other.count == 0
    assert stand_in.count == 1 and fake.calls == 1


@needs_default_http_client
def test_a_copy_to_the_endpoint_itself_sends_as_the_client_does(
    stand_in: AzureOpenAIStandIn, fake: FakeCredential
) -> None:
    """Each copy is checked (its `base_url`, and its `websocket_base_url` where openai has
    one: openai before the realtime API has none); one to the endpoint goes out."""
    client = azure_openai_client(stand_in.base_url, api_version=API_VERSION, credential=fake, allow_http=True)
    copied = client.with_options(max_retries=0).copy(timeout=5.0)
    assert isinstance(copied, openai.AzureOpenAI)
    assert _chat(copied) == stand_in.completion
    assert seen_tokens(stand_in) == {("valid", fingerprint(fake.tokens[0]))}


@needs_default_http_client
async def test_an_async_clients_request_anywhere_but_the_endpoint_is_refused(
    stand_in: AzureOpenAIStandIn, fake: FakeCredential
) -> None:
    client: Any = async_azure_openai_client(
        stand_in.base_url, api_version=API_VERSION, credential=fake, allow_http=True, client_options={"max_retries": 0}
    )
    with refused("elsewhere.invalid"):
        await client.with_options(base_url="https://elsewhere.invalid/openai/").chat.completions.create(
            model="gpt-4o", messages=MESSAGES
        )
    assert stand_in.count == 0


@needs_default_http_client
def test_a_401_is_resent_once_with_a_fresh_token(stand_in: AzureOpenAIStandIn, fake: FakeCredential) -> None:
    client = azure_openai_client(
        stand_in.base_url, api_version=API_VERSION, credential=fake, allow_http=True, client_options={"max_retries": 0}
    )
    stand_in.fail_next(1, status=401)
    assert _chat(client) == stand_in.completion
    assert [r.token_fingerprint for r in stand_in.requests] == [fingerprint(t) for t in fake.tokens]
    assert fake.calls == 2


@needs_default_http_client
@pytest.mark.skipif(
    "websocket_base_url" not in inspect.signature(openai.AzureOpenAI.__init__).parameters,
    reason="this openai has no realtime API (no websocket_base_url)",
)
@pytest.mark.parametrize(
    ("websocket", "refusal"),
    [
        ("ws://res.openai.azure.com/openai", "res.openai.azure.com"),
        ("wss://elsewhere.invalid/openai", "not in allowed_hosts"),
        ("wss://res.openai.azure.com:8443/openai", "not in allowed_hosts"),
    ],
)
def test_a_websocket_base_url_is_checked_when_the_client_is_made(
    fake: FakeCredential, websocket: str, refusal: str
) -> None:
    """The realtime handshake carries the token too: only `wss://` to the endpoint's host."""
    endpoint = "https://127.0.0.1:8443"
    with pytest.raises(InsecureTransportError, match=refusal):
        azure_openai_client(
            endpoint,
            api_version=API_VERSION,
            credential=fake,
            client_options={"websocket_base_url": websocket.format(port=8443)},
        )
    made = azure_openai_client(
        endpoint,
        api_version=API_VERSION,
        credential=fake,
        client_options={"websocket_base_url": "wss://127.0.0.1:8443/x"},
    )
    assert str(made.websocket_base_url) == "wss://127.0.0.1:8443/x"
    assert fake.calls == 0


@needs_default_http_client
def test_what_the_builder_sets_itself_is_refused_in_the_options(fake: FakeCredential) -> None:
    endpoint = "https://res.openai.azure.com"
    for name in ("api_key", "azure_ad_token_provider", "http_client", "base_url"):
        with pytest.raises(UsageError, match=f"sets {name} itself"):
            azure_openai_client(endpoint, api_version=API_VERSION, credential=fake, client_options={name: "x"})
    with pytest.raises(UsageError, match="auth itself"):
        azure_openai_client(endpoint, api_version=API_VERSION, credential=fake, http_client_options={"auth": None})


@needs_default_http_client
def test_without_an_endpoint_or_over_plain_http_no_client_is_made(
    fake: FakeCredential, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigurationError, match=r"needs endpoint= \(or AZURE_OPENAI_ENDPOINT\)"):
        azure_openai_client(api_version=API_VERSION, credential=fake)
    with pytest.raises(InsecureTransportError, match="example.invalid"):
        async_azure_openai_client("http://example.invalid", api_version=API_VERSION, credential=fake)
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", "https://res.openai.azure.us")
    client = azure_openai_client(api_version=API_VERSION, credential=fake)  # the variable openai reads
    assert str(client.base_url).startswith("https://res.openai.azure.us/openai")
    assert fake.calls == 0


@pytest.mark.skipif(OPENAI_VERSION >= (1, 17), reason="openai >= 1.17 has openai.DefaultHttpxClient")
def test_an_openai_without_a_default_http_client_is_refused_naming_the_version(fake: FakeCredential) -> None:
    from azure_ad_token_auth import UnsupportedVersionError

    with pytest.raises(UnsupportedVersionError, match=r"needs openai >= 1\.17"):
        azure_openai_client("https://res.openai.azure.com", api_version=API_VERSION, credential=fake)
    assert fake.calls == 0
