"""`token_provider` and `async_token_provider` with the real openai >= 1 clients (`AzureOpenAI`,
`AsyncAzureOpenAI`, `OpenAI` on the `/openai/v1/` endpoint), against the loopback Azure OpenAI stand-in."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from azure_ad_token_auth import async_token_provider, token_provider
from azure_ad_token_auth.testing import (
    AsyncFakeCredential,
    AzureOpenAIStandIn,
    FakeCredential,
    ManagedIdentityEndpoint,
    TokenRegistry,
    fingerprint,
)
from openai_helpers import (
    API_VERSION,
    CHINA,
    GOVERNMENT,
    KIND_IDS,
    KINDS,
    MESSAGES,
    PUBLIC,
    ScopeRecorder,
    needs_callable_api_key,
    openai,
    openai_httpx,
    openai_settings,  # noqa: F401 - the fixture every test uses
    seen_tokens,
    tls_stand_in,
)

pytestmark = [pytest.mark.openai1, pytest.mark.usefixtures("openai_settings")]


@pytest.fixture
def fake(cred: FakeCredential) -> FakeCredential:
    return cred


@pytest.fixture
def stand_in(server: AzureOpenAIStandIn) -> AzureOpenAIStandIn:
    return server


# -- AzureOpenAI / AsyncAzureOpenAI with a provider ----------------------------------------------


def test_azure_openai_chat_and_completions_share_one_token(stand_in: AzureOpenAIStandIn, fake: FakeCredential) -> None:
    with openai.AzureOpenAI(
        azure_endpoint=stand_in.base_url, api_version=API_VERSION, azure_ad_token_provider=token_provider(fake)
    ) as client:
        for _ in range(25):
            chat = client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
            assert chat.choices[0].message.content == stand_in.completion
            completion = client.completions.create(model="gpt35", prompt="The food was", max_tokens=10)
            assert completion.choices[0].text == stand_in.completion
    assert fake.calls == 1
    assert stand_in.count == 50
    assert seen_tokens(stand_in) == {("valid", fingerprint(fake.tokens[0]))}
    paths = {r.path for r in stand_in.requests}
    assert paths == {"/openai/deployments/gpt-4o/chat/completions", "/openai/deployments/gpt35/completions"}


def test_openai_retries_reuse_the_cached_token(stand_in: AzureOpenAIStandIn, fake: FakeCredential) -> None:
    stand_in.fail_next(2, status=500, headers={"retry-after-ms": "1"})
    with openai.AzureOpenAI(
        azure_endpoint=stand_in.base_url,
        api_version=API_VERSION,
        azure_ad_token_provider=token_provider(fake),
        max_retries=2,
    ) as client:
        chat = client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert chat.choices[0].message.content == stand_in.completion
    assert [r.status for r in stand_in.requests] == [500, 500, 200]
    assert seen_tokens(stand_in) == {("valid", fingerprint(fake.tokens[0]))}
    assert fake.calls == 1


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
async def test_async_azure_openai_concurrent_cold_start_one_call(
    stand_in: AzureOpenAIStandIn, registry: TokenRegistry, kind: type[FakeCredential]
) -> None:
    credential = kind(registry=registry, delay=0.2)
    async with openai.AsyncAzureOpenAI(
        azure_endpoint=stand_in.base_url,
        api_version=API_VERSION,
        azure_ad_token_provider=async_token_provider(credential),
    ) as client:
        replies = await asyncio.gather(
            *(client.chat.completions.create(model="gpt-4o", messages=MESSAGES) for _ in range(50))
        )
    assert [r.choices[0].message.content for r in replies] == [stand_in.completion] * 50
    assert credential.calls == 1
    assert stand_in.count == 50
    assert seen_tokens(stand_in) == {("valid", fingerprint(credential.tokens[0]))}


# -- the v1 endpoint: OpenAI(base_url=.../openai/v1/, api_key=<callable>) ------------------------


@needs_callable_api_key
def test_openai_v1_endpoint_with_callable_api_key(stand_in: AzureOpenAIStandIn, fake: FakeCredential) -> None:
    with openai.OpenAI(base_url=stand_in.base_url + "/openai/v1/", api_key=token_provider(fake)) as client:
        for _ in range(10):
            chat = client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
            assert chat.choices[0].message.content == stand_in.completion
    assert {r.path for r in stand_in.requests} == {"/openai/v1/chat/completions"}
    assert seen_tokens(stand_in) == {("valid", fingerprint(fake.tokens[0]))}
    assert fake.calls == 1


@needs_callable_api_key
async def test_async_openai_v1_endpoint_with_async_callable_api_key(
    stand_in: AzureOpenAIStandIn, registry: TokenRegistry
) -> None:
    credential = AsyncFakeCredential(registry=registry, delay=0.1)
    async with openai.AsyncOpenAI(
        base_url=stand_in.base_url + "/openai/v1/", api_key=async_token_provider(credential)
    ) as client:
        replies = await asyncio.gather(
            *(client.completions.create(model="gpt35", prompt="The food was") for _ in range(20))
        )
    assert {r.choices[0].text for r in replies} == {stand_in.completion}
    assert {r.path for r in stand_in.requests} == {"/openai/v1/completions"}
    assert seen_tokens(stand_in) == {("valid", fingerprint(credential.tokens[0]))}
    assert credential.calls == 1


# -- azure-identity's real credentials against the loopback managed identity ---------------------


async def test_aio_managed_identity_credential_with_async_azure_openai(
    stand_in: AzureOpenAIStandIn, registry: TokenRegistry
) -> None:
    pytest.importorskip("aiohttp")
    from azure.identity.aio import ManagedIdentityCredential

    with ManagedIdentityEndpoint(registry=registry) as mi, mi.patched_env():
        credential = ManagedIdentityCredential()
        try:
            async with openai.AsyncAzureOpenAI(
                azure_endpoint=stand_in.base_url,
                api_version=API_VERSION,
                azure_ad_token_provider=async_token_provider(credential),
            ) as client:
                replies = await asyncio.gather(
                    *(client.chat.completions.create(model="gpt-4o", messages=MESSAGES) for _ in range(30))
                )
        finally:
            await credential.close()
        assert mi.calls == 1
    assert {r.choices[0].message.content for r in replies} == {stand_in.completion}
    assert stand_in.count == 30
    assert {r.token_status for r in stand_in.requests} == {"valid"}
    assert len({r.token_fingerprint for r in stand_in.requests}) == 1


def test_default_azure_credential_with_azure_openai(stand_in: AzureOpenAIStandIn, registry: TokenRegistry) -> None:
    from azure.identity import DefaultAzureCredential

    with ManagedIdentityEndpoint(registry=registry) as mi, mi.patched_env():
        credential = DefaultAzureCredential()
        try:
            client = openai.AzureOpenAI(
                azure_endpoint=stand_in.base_url,
                api_version=API_VERSION,
                azure_ad_token_provider=token_provider(credential),
            )
            with client, ThreadPoolExecutor(8) as pool:
                replies = list(
                    pool.map(lambda _: client.chat.completions.create(model="gpt-4o", messages=MESSAGES), range(24))
                )
        finally:
            credential.close()
        assert mi.calls == 1
    assert {r.choices[0].message.content for r in replies} == {stand_in.completion}
    assert stand_in.count == 24
    assert {r.token_status for r in stand_in.requests} == {"valid"}
    assert len({r.token_fingerprint for r in stand_in.requests}) == 1


# -- the recommended recipe: a provider that knows its client's endpoint -------------------------


@pytest.mark.parametrize("make", [token_provider, async_token_provider], ids=["sync", "async"])
def test_provider_refuses_a_plain_http_endpoint_off_the_machine_before_anything_is_sent(
    fake: FakeCredential, make: Any
) -> None:
    from azure_ad_token_auth import InsecureTransportError

    endpoint = "http://example.invalid"
    with pytest.raises(InsecureTransportError, match="example.invalid"):
        openai.AzureOpenAI(
            azure_endpoint=endpoint, api_version=API_VERSION, azure_ad_token_provider=make(fake, endpoint=endpoint)
        )
    assert fake.calls == 0


def test_provider_reads_azure_openai_endpoint_as_openai_does(
    fake: FakeCredential, monkeypatch: pytest.MonkeyPatch
) -> None:
    from azure_ad_token_auth import InsecureTransportError

    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", "http://example.invalid")
    with pytest.raises(InsecureTransportError, match="example.invalid"):
        openai.AzureOpenAI(api_version=API_VERSION, azure_ad_token_provider=token_provider(fake))
    assert fake.calls == 0


def test_provider_refuses_a_plain_http_loopback_endpoint_without_allow_http(
    stand_in: AzureOpenAIStandIn, fake: FakeCredential
) -> None:
    """No loopback exemption: a token over plain http is always the caller's explicit choice."""
    from azure_ad_token_auth import InsecureTransportError

    for make in (token_provider, async_token_provider):
        with pytest.raises(InsecureTransportError, match="allow_http=True"):
            make(fake, endpoint=stand_in.base_url)
    assert fake.calls == 0 and stand_in.count == 0


def test_provider_with_allow_http_serves_a_plain_http_loopback_endpoint(
    stand_in: AzureOpenAIStandIn, fake: FakeCredential
) -> None:
    provider = token_provider(fake, endpoint=stand_in.base_url, allow_http=True)
    with openai.AzureOpenAI(
        azure_endpoint=stand_in.base_url, api_version=API_VERSION, azure_ad_token_provider=provider
    ) as client:
        assert client.chat.completions.create(model="gpt-4o", messages=MESSAGES).choices
    assert seen_tokens(stand_in) == {("valid", fingerprint(fake.tokens[0]))}


def test_provider_applies_allowed_hosts_to_its_endpoint(stand_in: AzureOpenAIStandIn, fake: FakeCredential) -> None:
    from azure_ad_token_auth import InsecureTransportError

    with pytest.raises(InsecureTransportError, match="allowed_hosts"):
        token_provider(fake, endpoint=stand_in.base_url, allow_http=True, allowed_hosts=["*.openai.azure.com"])
    with pytest.raises(ValueError, match="endpoint="):
        token_provider(fake, allowed_hosts=["*.openai.azure.com"])  # nothing to apply it to
    assert fake.calls == 0


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
async def test_the_recommended_recipe_works_against_the_stand_in_over_tls(
    registry: TokenRegistry, kind: type[FakeCredential]
) -> None:
    """The README's recipe as written: an https endpoint, no `allow_http`."""
    credential = kind(registry=registry)
    with tls_stand_in(registry) as (stand_in, trust):
        endpoint = stand_in.base_url
        assert endpoint.startswith("https://")
        if kind is FakeCredential:
            with openai.AzureOpenAI(
                azure_endpoint=endpoint,
                api_version=API_VERSION,
                azure_ad_token_provider=token_provider(credential, endpoint=endpoint),
                http_client=openai_httpx().Client(verify=trust),
            ) as client:
                reply = client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
        else:
            async with openai.AsyncAzureOpenAI(
                azure_endpoint=endpoint,
                api_version=API_VERSION,
                azure_ad_token_provider=async_token_provider(credential, endpoint=endpoint),
                http_client=openai_httpx().AsyncClient(verify=trust),
            ) as aclient:
                reply = await aclient.chat.completions.create(model="gpt-4o", messages=MESSAGES)
        assert reply.choices[0].message.content == stand_in.completion
        assert seen_tokens(stand_in) == {("valid", fingerprint(credential.tokens[0]))}


@pytest.mark.parametrize(
    ("endpoint", "scope"),
    [
        ("https://res.openai.azure.us", GOVERNMENT),
        ("https://res.openai.azure.cn/", CHINA),
        ("https://res.services.ai.azure.com", PUBLIC),
    ],
)
def test_provider_with_no_scopes_takes_the_scope_of_its_endpoint(endpoint: str, scope: str) -> None:
    recorder = ScopeRecorder()
    provider = token_provider(recorder, endpoint=endpoint)
    assert provider() == recorder.tokens[0]  # nothing is sent
    assert recorder.asked == [(scope,)]
    given = token_provider(ScopeRecorder(), "api://given/.default", endpoint=endpoint)
    assert given.cache.scopes == ("api://given/.default",)


def test_the_endpoint_is_read_and_checked_once_when_the_provider_is_made(monkeypatch: pytest.MonkeyPatch) -> None:
    """Per call a provider only reads its cache: the endpoint (here the variable openai reads)
    is looked at once, when the provider is made, for the check and the scope."""
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", "https://res.openai.azure.us")
    recorder = ScopeRecorder()
    provider = token_provider(recorder)
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", "http://off-the-machine.example")
    assert provider() == provider() == recorder.tokens[0]
    assert recorder.asked == [(GOVERNMENT,)]
    assert provider.cache.scopes == (GOVERNMENT,)


WITHOUT_AN_ENDPOINT = """
import json, logging
from azure_ad_token_auth import async_token_provider, token_provider
from azure_ad_token_auth.testing import FakeCredential

records = []
handler = logging.Handler()
handler.emit = records.append
logging.getLogger("azure_ad_token_auth").addHandler(handler)
credential = FakeCredential()
checked = token_provider(credential, endpoint="https://res.openai.azure.com")
before = len(records)
unchecked = [token_provider(credential), async_token_provider(credential), token_provider(credential)]
print(json.dumps({
    "before": before,
    "records": [(r.levelname, r.getMessage()) for r in records],
    "served": [checked(), unchecked[0](), unchecked[2]()] == [credential.tokens[0]] * 3,
}))
"""


def test_a_provider_made_without_an_endpoint_warns_once_per_process() -> None:
    """Nothing checks where its tokens go: said once per process, in a fresh one here."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    from conftest import child_pythonpath

    src = str(Path(__file__).resolve().parents[2] / "src")
    env = {k: v for k, v in os.environ.items() if k != "AZURE_OPENAI_ENDPOINT"}
    env["PYTHONPATH"] = child_pythonpath(src)
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_AN_ENDPOINT], capture_output=True, text=True, env=env, timeout=60, check=True
    )
    seen = json.loads(result.stdout)
    assert seen["before"] == 0  # made with an endpoint: checked, nothing to say
    ((level, message),) = seen["records"]
    assert level == "WARNING" and "endpoint=" in message and "once per process" in message
    assert seen["served"]


# -- an async provider handed to a sync client ---------------------------------------------------


def test_an_async_provider_handed_to_a_sync_client_fails_naming_token_provider(
    stand_in: AzureOpenAIStandIn, fake: FakeCredential
) -> None:
    from azure_ad_token_auth import UsageError

    provider = async_token_provider(fake, endpoint=stand_in.base_url, allow_http=True)
    with openai.AzureOpenAI(
        azure_endpoint=stand_in.base_url, api_version=API_VERSION, azure_ad_token_provider=provider, max_retries=0
    ) as client:
        with pytest.raises(UsageError, match=r"A sync client \(AzureOpenAI, OpenAI\) takes token_provider\(\)"):
            client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert stand_in.count == 0 and fake.calls == 0


def test_a_sync_client_handed_an_async_provider_used_on_a_loop_gets_no_token(
    stand_in: AzureOpenAIStandIn, fake: FakeCredential
) -> None:
    """Once the provider has served on a running loop it no longer asks for one: the sync client
    gets a coroutine, which openai refuses (1.x and 2.x print it, named for the fix); nothing is
    sent, and Python's "never awaited" warning names the fix on every openai."""
    provider = async_token_provider(fake, endpoint=stand_in.base_url, allow_http=True)

    async def on_a_loop() -> str:
        return await provider()

    assert asyncio.run(on_a_loop()) == fake.tokens[0]
    client = openai.AzureOpenAI(
        azure_endpoint=stand_in.base_url, api_version=API_VERSION, azure_ad_token_provider=provider, max_retries=0
    )
    failures: list[BaseException] = []
    with pytest.warns(RuntimeWarning, match=r"coroutine 'async_token_provider\(\) .* takes token_provider\(\)'"):
        _collect_failure(lambda: client.chat.completions.create(model="gpt-4o", messages=MESSAGES), failures)
    (failure,) = failures
    assert isinstance(failure, ValueError) and "azure_ad_token_provider" in str(failure)
    if "returned <" in str(failure):  # openai < 3.60 prints what it got
        assert "token_provider()" in str(failure)
    assert stand_in.count == 0


def _collect_failure(call: Any, failures: list[BaseException]) -> None:
    """Run `call`, keep the text of what it raised (not the exception: its traceback holds the
    coroutine), and collect what it left, so an unawaited coroutine is reported now."""
    import gc

    try:
        call()
    except Exception as error:
        failures.append(type(error)(str(error)))
    gc.collect()
