"""The clients people pair us with, through our providers, against the loopback Azure OpenAI stand-in.

Each client makes sync and async chat calls; a call counts only if the stand-in saw a token its
registry issued, and the credential is asked once for all of them (one shared cache). A provider
whose tokens the stand-in does not know makes the same client fail, so these tests can fail.
Run by the `downstream` nox session; skipped where a client is not installed.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

from azure_ad_token_auth import async_token_provider, token_provider
from azure_ad_token_auth.testing import AzureOpenAIStandIn, FakeCredential, TokenRegistry
from azure_ad_token_auth.testing._guard import is_loopback

API_VERSION = "2024-06-01"
DEPLOYMENT = "gpt-4o"
PROMPT = "The food was delicious and the waiter"
# Settings the clients read from the environment when their own are unset.
CLIENT_ENV = (
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "AZURE_OPENAI_API_KEY",
    "AZURE_OPENAI_AD_TOKEN",
    "AZURE_OPENAI_ENDPOINT",
    "AZURE_API_KEY",
    "AZURE_API_BASE",
    "AZURE_API_VERSION",
    "OPENAI_API_VERSION",
)

Sync = Callable[[Callable[[], str]], str]
Async = Callable[[Callable[[], Awaitable[str]], Callable[[], str]], Awaitable[str]]


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Refuse (and record) any name lookup off the machine: a client phoning home fails the test."""
    attempts: list[str] = []
    real = socket.getaddrinfo

    def guarded(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host is not None and not is_loopback(host):
            attempts.append(str(host))
            raise OSError(f"test_downstream: lookup of {host!r} refused (loopback only)")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", guarded)
    for name in CLIENT_ENV:
        monkeypatch.delenv(name, raising=False)
    # litellm fetches its model price list from the network at import unless told not to.
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    monkeypatch.setenv("LITELLM_TELEMETRY", "False")
    yield attempts
    assert attempts == [], f"a client tried to reach {attempts}"


# -- one sync and one async chat call per client --------------------------------------------


def _langchain(base_url: str) -> tuple[Sync, Async]:
    langchain_openai = pytest.importorskip("langchain_openai")

    def llm(sync: Callable[[], str], asynchronous: Callable[[], Awaitable[str]] | None = None) -> Any:
        return langchain_openai.AzureChatOpenAI(
            azure_endpoint=base_url,
            azure_deployment=DEPLOYMENT,
            api_version=API_VERSION,
            azure_ad_token_provider=sync,
            azure_ad_async_token_provider=asynchronous,
            max_retries=0,
        )

    def call(provider: Callable[[], str]) -> str:
        return str(llm(provider).invoke(PROMPT).content)

    async def acall(provider: Callable[[], Awaitable[str]], sync: Callable[[], str]) -> str:
        return str((await llm(sync, provider).ainvoke(PROMPT)).content)

    return call, acall


def _llama_index(base_url: str) -> tuple[Sync, Async]:
    azure = pytest.importorskip("llama_index.llms.azure_openai")
    from llama_index.core.llms import ChatMessage

    def llm(provider: Callable[[], str]) -> Any:
        return azure.AzureOpenAI(
            engine=DEPLOYMENT,
            model=DEPLOYMENT,
            azure_endpoint=base_url,
            api_version=API_VERSION,
            use_azure_ad=True,
            azure_ad_token_provider=provider,
            max_retries=0,
        )

    messages = [ChatMessage(role="user", content=PROMPT)]

    def call(provider: Callable[[], str]) -> str:
        return str(llm(provider).chat(messages).message.content)

    async def acall(provider: Callable[[], Awaitable[str]], sync: Callable[[], str]) -> str:
        # llama-index takes one (sync) provider for both of its clients.
        return str((await llm(sync).achat(messages)).message.content)

    return call, acall


def _litellm(base_url: str) -> tuple[Sync, Async]:
    litellm = pytest.importorskip("litellm")

    def options(provider: Callable[..., Any]) -> dict[str, Any]:
        return {
            "model": f"azure/{DEPLOYMENT}",
            "messages": [{"role": "user", "content": PROMPT}],
            "api_base": base_url,
            "api_version": API_VERSION,
            "azure_ad_token_provider": provider,
            "max_retries": 0,
            "num_retries": 0,
        }

    def call(provider: Callable[[], str]) -> str:
        return str(litellm.completion(**options(provider)).choices[0].message.content)

    async def acall(provider: Callable[[], Awaitable[str]], sync: Callable[[], str]) -> str:
        # litellm calls the provider without awaiting it: it takes a sync one for acompletion too.
        response = await litellm.acompletion(**options(sync))
        return str(response.choices[0].message.content)

    return call, acall


CLIENTS = {"langchain-openai": _langchain, "llama-index": _llama_index, "litellm": _litellm}


@pytest.fixture(params=list(CLIENTS))
def client(request: pytest.FixtureRequest, server: AzureOpenAIStandIn) -> tuple[Sync, Async]:
    return CLIENTS[request.param](server.base_url)


def _valid_calls(server: AzureOpenAIStandIn) -> int:
    chat = [r for r in server.requests if r.path.endswith("/chat/completions")]
    assert all(r.token_status == "valid" and r.status == 200 for r in chat), [
        (r.path, r.token_status, r.status) for r in chat
    ]
    return len(chat)


def test_sync_and_async_calls_carry_a_valid_token_from_one_credential_call(
    client: tuple[Sync, Async], server: AzureOpenAIStandIn, cred: FakeCredential
) -> None:
    call, acall = client
    # Each made for the endpoint the client sends to, as docs/openai.md recommends (checked once,
    # when made; plain http to the loopback stand-in said explicitly).
    endpoint = server.base_url
    sync = token_provider(cred, endpoint=endpoint, allow_http=True)
    asynchronous = async_token_provider(cred, endpoint=endpoint, allow_http=True)

    replies = [call(sync), call(sync)]

    async def twice() -> list[str]:
        return [await acall(asynchronous, sync), await acall(asynchronous, sync)]

    replies += asyncio.run(twice())

    assert replies == [server.completion] * 4
    assert _valid_calls(server) == 4
    assert cred.calls == 1


def test_a_token_the_service_does_not_know_fails_the_call(
    client: tuple[Sync, Async], server: AzureOpenAIStandIn, registry: TokenRegistry
) -> None:
    call, acall = client
    stranger = FakeCredential()  # tokens not issued by the stand-in's registry
    with pytest.raises(Exception) as sync_error:
        call(token_provider(stranger))
    with pytest.raises(Exception) as async_error:
        asyncio.run(acall(async_token_provider(stranger), token_provider(stranger)))  # type: ignore[arg-type]
    for error in (sync_error, async_error):
        assert "401" in str(error.value) or "nauthorized" in str(error.value) or "nvalid" in str(error.value)
    statuses = [(r.token_status, r.status) for r in server.requests]
    assert statuses and all(seen != "valid" and status == 401 for seen, status in statuses), statuses
    assert stranger.calls >= 1
