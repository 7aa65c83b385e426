"""The providers' check of the openai client asking them, at every call, with the real openai >= 1
clients. Off the machine is a host name sent through a recording proxy on 127.0.0.2: had the
token been handed over, the proxy would have seen it in clear (and nothing leaves the machine)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from azure_ad_token_auth import async_token_provider, install_openai_session, token_provider
from azure_ad_token_auth.testing import AsyncFakeCredential, AzureOpenAIStandIn, FakeCredential, TokenRegistry
from openai_helpers import (
    API_VERSION,
    MESSAGES,
    OPENAI_VERSION,
    module_chat,
    needs_callable_api_key,
    openai,
    openai_httpx,
    openai_settings,  # noqa: F401 - the fixture every test uses
    refused,
    through,
)

pytestmark = [pytest.mark.openai1, pytest.mark.usefixtures("openai_settings")]


@pytest.fixture
def fake(cred: FakeCredential) -> FakeCredential:
    return cred


@pytest.fixture
def stand_in(server: AzureOpenAIStandIn) -> AzureOpenAIStandIn:
    return server


@pytest.fixture
def far_proxy() -> Iterator[tuple[str, list[tuple[str, str, str | None]]]]:
    """A recording proxy on 127.0.0.2: `(url, what reached it)`."""
    import http.server
    import threading

    from conftest import _RecordingProxy

    server = http.server.ThreadingHTTPServer(("127.0.0.2", 0), _RecordingProxy)
    server.seen = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.2:{server.server_address[1]}", server.seen  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()


OFF = "http://off-the-machine.example"


def _mismatched_endpoint(fake: FakeCredential, proxy_url: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    provider = token_provider(fake, endpoint="https://res.openai.azure.com")
    return openai.AzureOpenAI(
        azure_endpoint=OFF, api_version=API_VERSION, azure_ad_token_provider=provider, http_client=through(proxy_url)
    )


def _no_endpoint(fake: FakeCredential, proxy_url: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    return openai.AzureOpenAI(
        azure_endpoint=OFF,
        api_version=API_VERSION,
        azure_ad_token_provider=token_provider(fake),
        http_client=through(proxy_url),
    )


def _variable_changed_afterwards(fake: FakeCredential, proxy_url: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", "https://res.openai.azure.com")
    provider = token_provider(fake)
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", OFF)
    return openai.AzureOpenAI(api_version=API_VERSION, azure_ad_token_provider=provider, http_client=through(proxy_url))


def _copy_with_another_base_url(fake: FakeCredential, proxy_url: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    endpoint = "https://res.openai.azure.com"
    client = openai.AzureOpenAI(
        azure_endpoint=endpoint,
        api_version=API_VERSION,
        azure_ad_token_provider=token_provider(fake, endpoint=endpoint),
        http_client=through(proxy_url),
    )
    return client.with_options(base_url=OFF + "/openai/")


@pytest.mark.parametrize(
    "build",
    [_mismatched_endpoint, _no_endpoint, _variable_changed_afterwards, _copy_with_another_base_url],
    ids=["endpoint-mismatch", "no-endpoint", "variable-changed", "with-options-copy"],
)
def test_provider_refuses_a_client_sending_in_clear_off_the_machine(
    fake: FakeCredential,
    far_proxy: tuple[str, list[tuple[str, str, str | None]]],
    monkeypatch: pytest.MonkeyPatch,
    build: Any,
) -> None:
    proxy_url, seen = far_proxy
    client = build(fake, proxy_url, monkeypatch)
    with refused("off-the-machine.example"):
        client.with_options(max_retries=0).chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert seen == []
    assert fake.calls == 0


@needs_callable_api_key
def test_provider_as_api_key_refuses_a_v1_client_sending_in_clear_off_the_machine(
    fake: FakeCredential, far_proxy: tuple[str, list[tuple[str, str, str | None]]]
) -> None:
    proxy_url, seen = far_proxy
    provider = token_provider(fake, endpoint="https://res.openai.azure.com")
    client = openai.OpenAI(base_url=OFF + "/openai/v1/", api_key=provider, http_client=through(proxy_url))
    with refused("off-the-machine.example"):
        client.with_options(max_retries=0).chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert seen == []
    assert fake.calls == 0


async def test_async_provider_refuses_a_client_sending_in_clear_off_the_machine(
    registry: TokenRegistry, far_proxy: tuple[str, list[tuple[str, str, str | None]]]
) -> None:
    proxy_url, seen = far_proxy
    credential = AsyncFakeCredential(registry=registry)
    client = openai.AsyncAzureOpenAI(
        azure_endpoint=OFF,
        api_version=API_VERSION,
        azure_ad_token_provider=async_token_provider(credential, endpoint="https://res.openai.azure.com"),
        http_client=through(proxy_url, asynchronous=True),
        max_retries=0,
    )
    with refused("off-the-machine.example"):
        await client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert seen == []
    assert credential.calls == 0


def test_provider_refuses_plain_http_to_loopback_through_the_clients_own_proxy(
    stand_in: AzureOpenAIStandIn, fake: FakeCredential, far_proxy: tuple[str, list[tuple[str, str, str | None]]]
) -> None:
    """The endpoint passes the check at construction (no proxy in the environment), but the
    client's http client sends through a proxy: the token would reach it in clear."""
    proxy_url, seen = far_proxy
    client = openai.AzureOpenAI(
        azure_endpoint=stand_in.base_url,
        api_version=API_VERSION,
        azure_ad_token_provider=token_provider(fake, endpoint=stand_in.base_url),
        http_client=through(proxy_url),
        max_retries=0,
    )
    with refused("proxy"):
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert seen == []
    assert fake.calls == 0


def test_module_client_refuses_plain_http_to_loopback_through_the_applications_proxied_http_client(
    stand_in: AzureOpenAIStandIn, fake: FakeCredential, far_proxy: tuple[str, list[tuple[str, str, str | None]]]
) -> None:
    proxy_url, seen = far_proxy
    openai.azure_endpoint = stand_in.base_url
    openai.api_version = API_VERSION
    openai.max_retries = 0
    openai.http_client = through(proxy_url)  # the application's own, set before install
    install_openai_session(fake)
    with refused("proxy"):
        module_chat()
    assert seen == []
    assert fake.calls == 0


@needs_callable_api_key
def test_module_provider_handed_to_another_client_checks_that_client(
    fake: FakeCredential, far_proxy: tuple[str, list[tuple[str, str, str | None]]]
) -> None:
    proxy_url, seen = far_proxy
    openai.azure_endpoint = "https://res.openai.azure.com"
    openai.api_version = API_VERSION
    install_openai_session(fake)
    client = openai.OpenAI(
        base_url=OFF + "/openai/v1/", api_key=openai.azure_ad_token_provider, http_client=through(proxy_url)
    )
    with refused("off-the-machine.example"):
        client.with_options(max_retries=0).chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert seen == []
    assert fake.calls == 0


def test_provider_refuses_plain_http_to_loopback_through_a_transport_it_cannot_read(
    stand_in: AzureOpenAIStandIn, fake: FakeCredential
) -> None:
    """A custom transport may send anywhere (a proxy among them): plain http needs allow_http."""
    http = openai_httpx()
    sent: list[Any] = []

    def handler(request: Any) -> Any:
        sent.append(request.headers.get("Authorization"))
        return http.Response(500)

    client = openai.AzureOpenAI(
        azure_endpoint=stand_in.base_url,
        api_version=API_VERSION,
        azure_ad_token_provider=token_provider(fake, endpoint=stand_in.base_url),
        http_client=http.Client(transport=http.MockTransport(handler)),
        max_retries=0,
    )
    with refused("MockTransport"):
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert sent == []
    assert fake.calls == 0


def test_provider_behind_a_wrapper_still_checks_the_client_asking(
    fake: FakeCredential, far_proxy: tuple[str, list[tuple[str, str, str | None]]]
) -> None:
    """openai holds the wrapper, not the provider: the client is found by the method asking."""
    proxy_url, seen = far_proxy
    provider = token_provider(fake, endpoint="https://res.openai.azure.com")
    client = openai.AzureOpenAI(
        azure_endpoint=OFF,
        api_version=API_VERSION,
        azure_ad_token_provider=lambda: provider(),
        http_client=through(proxy_url),
        max_retries=0,
    )
    with refused("off-the-machine.example"):
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert seen == []
    assert fake.calls == 0


async def test_async_provider_behind_an_async_wrapper_still_checks_the_client_asking(
    registry: TokenRegistry, far_proxy: tuple[str, list[tuple[str, str, str | None]]]
) -> None:
    proxy_url, seen = far_proxy
    credential = AsyncFakeCredential(registry=registry)
    provider = async_token_provider(credential, endpoint="https://res.openai.azure.com")

    async def wrapped() -> str:
        return await provider()

    client = openai.AsyncAzureOpenAI(
        azure_endpoint=OFF,
        api_version=API_VERSION,
        azure_ad_token_provider=wrapped,
        http_client=through(proxy_url, asynchronous=True),
        max_retries=0,
    )
    with refused("off-the-machine.example"):
        await client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert seen == []
    assert credential.calls == 0


async def test_async_provider_behind_a_sync_wrapper_still_checks_the_client_asking(
    registry: TokenRegistry, far_proxy: tuple[str, list[tuple[str, str, str | None]]]
) -> None:
    """A sync wrapper around the async provider: the provider, checking when called, finds
    openai's token method one frame above the wrapper."""
    proxy_url, seen = far_proxy
    credential = AsyncFakeCredential(registry=registry)
    provider = async_token_provider(credential, endpoint="https://res.openai.azure.com")
    client = openai.AsyncAzureOpenAI(
        azure_endpoint=OFF,
        api_version=API_VERSION,
        azure_ad_token_provider=lambda: provider(),
        http_client=through(proxy_url, asynchronous=True),
        max_retries=0,
    )
    with refused("off-the-machine.example"):
        await client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert seen == []
    assert credential.calls == 0


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_a_client_sending_over_tls_is_checked_once_and_each_other_client_again(
    fake: FakeCredential, monkeypatch: pytest.MonkeyPatch, asynchronous: bool
) -> None:
    """The per-call fast path: the client found sending only over TLS is not checked again
    while its URLs stay the same; any other client asking is."""
    from azure_ad_token_auth import InsecureTransportError, _asking

    checked: list[str] = []
    check = _asking.check_client

    def counting(client: Any, policy: Any) -> tuple[object, object, object]:
        checked.append(str(client.base_url))
        return check(client, policy)

    monkeypatch.setattr(_asking, "check_client", counting)
    endpoint = "https://res.openai.azure.com"
    if asynchronous:
        client: Any = openai.AsyncAzureOpenAI(
            azure_endpoint=endpoint, api_version=API_VERSION, azure_ad_token_provider=async_token_provider(fake)
        )
    else:
        client = openai.AzureOpenAI(
            azure_endpoint=endpoint, api_version=API_VERSION, azure_ad_token_provider=token_provider(fake)
        )

    def ask(asking: Any) -> Any:
        answer = asking._get_azure_ad_token()
        return asyncio.run(answer) if asynchronous else answer

    assert [ask(client) for _ in range(50)] == [fake.tokens[0]] * 50
    assert checked == [endpoint + "/openai/"]
    copy = client.with_options(base_url="http://elsewhere.example/openai/")
    with pytest.raises(InsecureTransportError, match="elsewhere.example"):
        ask(copy)
    assert ask(client) == fake.tokens[0]  # a refused client does not displace the one remembered
    other = client.with_options(base_url="https://other.example/openai/")
    assert ask(other) == ask(other) == fake.tokens[0]
    assert ask(client) == fake.tokens[0]  # one client is remembered: the first is checked again
    assert checked == [
        endpoint + "/openai/",
        "http://elsewhere.example/openai/",
        "https://other.example/openai/",
        endpoint + "/openai/",
    ]
    assert fake.calls == 1


@pytest.mark.parametrize("how", ["token_provider", "install_openai_session"])
def test_the_module_client_is_checked_again_when_openai_base_url_is_set_after_a_check(
    fake: FakeCredential, how: str
) -> None:
    """The module client's `base_url` is `openai.base_url` once that is set, not the URL it
    stores: a module client checked once over TLS is not remembered by that URL."""
    openai.api_version = API_VERSION
    openai.azure_endpoint = "https://res.openai.azure.com"
    if how == "token_provider":
        openai.api_type = "azure"
        openai.azure_ad_token_provider = token_provider(fake, endpoint="https://res.openai.azure.com")
    else:
        openai.http_client = openai_httpx().Client()  # the application's own: the provider's check is what applies
        install_openai_session(fake)
    client = openai._load_client()
    assert client._get_azure_ad_token() == fake.tokens[0]
    openai.base_url = "http://evil.example/v1/"
    assert str(client._prepare_url("/chat/completions")).startswith("http://evil.example/")
    with refused("evil.example"):
        client._get_azure_ad_token()


@pytest.mark.parametrize("wrapping", ["wait_for", "ensure_future", "asyncio.run from a sync client"])
def test_async_provider_run_in_a_task_by_a_wrapper_still_checks_the_client_asking(
    fake: FakeCredential, wrapping: str
) -> None:
    """A wrapper that runs the provider's coroutine in a task: nothing on that task's stack
    shows who asked, so the provider checks when called, while openai's method is below."""
    provider = async_token_provider(fake, endpoint="https://res.openai.azure.com")
    if wrapping == "asyncio.run from a sync client":
        client: Any = openai.AzureOpenAI(
            azure_endpoint=OFF, api_version=API_VERSION, azure_ad_token_provider=lambda: asyncio.run(provider())
        )
        with refused("off-the-machine.example"):
            client._get_azure_ad_token()
    else:

        async def wrapped() -> str:
            if wrapping == "wait_for":
                return await asyncio.wait_for(provider(), 5)
            return await asyncio.ensure_future(provider())

        async def ask() -> None:
            client = openai.AsyncAzureOpenAI(
                azure_endpoint=OFF, api_version=API_VERSION, azure_ad_token_provider=wrapped
            )
            with refused("off-the-machine.example"):
                await client._get_azure_ad_token()

        asyncio.run(ask())
    assert fake.calls == 0


async def test_an_async_provider_called_outside_a_client_checks_the_client_awaiting_it(
    fake: FakeCredential,
) -> None:
    provider = async_token_provider(fake, endpoint="https://res.openai.azure.com")
    made_outside = provider()  # no client asking yet
    client = openai.AsyncAzureOpenAI(
        azure_endpoint=OFF, api_version=API_VERSION, azure_ad_token_provider=lambda: made_outside
    )
    with refused("off-the-machine.example"):
        await client._get_azure_ad_token()
    assert fake.calls == 0


def test_urls_swapped_while_a_client_is_checked_are_not_remembered(
    fake: FakeCredential, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another thread points the client elsewhere just after its check: the call racing it
    may pass, but what is remembered is what was checked, so the next call is refused."""
    from azure_ad_token_auth import _asking

    endpoint = "https://res.openai.azure.com"
    provider = token_provider(fake, endpoint=endpoint, allowed_hosts=["res.openai.azure.com"])
    client = openai.AzureOpenAI(azure_endpoint=endpoint, api_version=API_VERSION, azure_ad_token_provider=provider)
    elsewhere = type(client.base_url)("https://elsewhere.example/openai/")
    check = _asking.check_client

    def then_swapped(asking: Any, policy: Any) -> tuple[object, object, object]:
        checked = check(asking, policy)
        asking._base_url = elsewhere  # as `client.base_url = ...` in another thread, at this moment
        return checked

    monkeypatch.setattr(_asking, "check_client", then_swapped)
    assert client._get_azure_ad_token() == fake.tokens[0]  # the racing call
    monkeypatch.setattr(_asking, "check_client", check)
    with refused("allowed_hosts"):
        client._get_azure_ad_token()


@pytest.mark.parametrize("evil_endpoint", [OFF, "https://elsewhere.example"])
@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_a_client_sharing_a_checked_base_url_but_not_its_azure_endpoint_is_checked(
    fake: FakeCredential, asynchronous: bool, evil_endpoint: str
) -> None:
    """openai's `base_url` setter keeps the URL object it is given: a client pointed at
    another client's checked base URL still sends `/models` to its own endpoint."""
    endpoint = "https://res.openai.azure.com"
    make = async_token_provider if asynchronous else token_provider
    provider: Any = make(fake, endpoint=endpoint, allowed_hosts=["res.openai.azure.com"])
    kind = openai.AsyncAzureOpenAI if asynchronous else openai.AzureOpenAI
    good = kind(
        azure_endpoint=endpoint, azure_deployment="gpt-4o", api_version=API_VERSION, azure_ad_token_provider=provider
    )
    evil = kind(
        azure_endpoint=evil_endpoint,
        azure_deployment="gpt-4o",
        api_version=API_VERSION,
        azure_ad_token_provider=provider,
    )
    if not hasattr(evil, "_azure_endpoint"):
        pytest.skip("this openai sends every path to base_url")
    evil.base_url = good.base_url

    def ask(client: Any) -> Any:
        answer = client._get_azure_ad_token()
        return asyncio.run(answer) if asynchronous else answer

    assert ask(good) == fake.tokens[0]  # checked over TLS, remembered
    with refused("elsewhere.example|off-the-machine.example"):
        ask(evil)


@pytest.mark.skipif(OPENAI_VERSION < (3, 0), reason="copies keep azure_endpoint from openai 3.x")
def test_a_proxied_copy_of_a_client_with_a_loopback_http_endpoint_is_refused_after_the_direct_one(
    fake: FakeCredential,
) -> None:
    endpoint = "https://res.openai.azure.com"
    client = openai.AzureOpenAI(
        azure_endpoint="http://127.0.0.1:8080",
        azure_deployment="gpt-4o",
        api_version=API_VERSION,
        azure_ad_token_provider=token_provider(fake, endpoint=endpoint),
    )
    client.base_url = endpoint + "/openai/deployments/gpt-4o/"
    proxied = client.with_options(http_client=openai_httpx().Client(proxy="http://proxy.invalid:3128"))
    assert client._get_azure_ad_token() == fake.tokens[0]  # loopback, no proxy: allowed
    with refused("proxy"):
        proxied._get_azure_ad_token()


@pytest.mark.parametrize("wrapper", ["six decorators", "asyncio.run of a coroutine calling it"])
def test_a_provider_any_number_of_frames_below_the_client_asking_is_checked(fake: FakeCredential, wrapper: str) -> None:
    endpoint = "https://res.openai.azure.com"
    if wrapper == "six decorators":
        wrapped: Any = token_provider(fake, endpoint=endpoint)
        for _ in range(6):
            wrapped = (lambda inner: lambda: inner())(wrapped)
    else:
        provider = async_token_provider(fake, endpoint=endpoint)

        async def get_token() -> str:
            return await provider()

        def wrapped() -> str:
            return asyncio.run(get_token())

    client = openai.AzureOpenAI(azure_endpoint=OFF, api_version=API_VERSION, azure_ad_token_provider=wrapped)
    with refused("off-the-machine.example"):
        client._get_azure_ad_token()
    assert fake.calls == 0


def test_an_azure_deployment_clients_endpoint_is_checked_as_well_as_its_base_url(fake: FakeCredential) -> None:
    """With `azure_deployment`, openai sends the paths that name no deployment (`/models`,
    `/files`) to `azure_endpoint`, whatever `base_url` says."""
    endpoint = "https://res.openai.azure.com"
    client = openai.AzureOpenAI(
        azure_endpoint=OFF,
        azure_deployment="gpt-4o",
        api_version=API_VERSION,
        azure_ad_token_provider=token_provider(fake, endpoint=endpoint),
    )
    if not hasattr(client, "_azure_endpoint"):
        pytest.skip("this openai sends every path to base_url")
    client.base_url = endpoint + "/openai/deployments/gpt-4o/"
    assert str(client._prepare_url("/models")).startswith(OFF)
    with refused("off-the-machine.example"):
        client._get_azure_ad_token()
    assert fake.calls == 0


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_provider_called_with_no_python_frame_below_serves_and_warns_once(
    fake: FakeCredential, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch, asynchronous: bool
) -> None:
    """Called from C with no Python frame below (a thread started by `_thread`, driven by C
    callables only), no client can be asking: it serves the token as outside a client."""
    import _thread
    import functools
    import itertools
    import logging
    import threading
    import time

    caplog.set_level(logging.WARNING, logger="azure_ad_token_auth")
    answers: list[str] = []
    done = threading.Event()
    if asynchronous:
        provider: Any = async_token_provider(fake)
        provider.cache.get_token()  # cached: the coroutine answers without awaiting anything

        def finished(unraisable: Any) -> None:  # the coroutine's return, as the thread's StopIteration
            answers.append(unraisable.exc_value.value)
            done.set()

        monkeypatch.setattr("sys.unraisablehook", finished)
        _thread.start_new_thread(provider().send, (None,))
    else:
        provider = token_provider(fake)
        calls = itertools.islice(iter(provider, None), 2)  # C calling the provider twice
        _thread.start_new_thread(functools.partial(answers.extend, calls), ())
        deadline = time.monotonic() + 10
        while len(answers) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        done.set()
    assert done.wait(10)
    assert answers == [fake.tokens[0]] * (1 if asynchronous else 2)
    (record,) = caplog.records
    assert "outside an openai client" in record.getMessage()


def test_provider_applies_allowed_hosts_to_the_client_asking(
    fake: FakeCredential, far_proxy: tuple[str, list[tuple[str, str, str | None]]]
) -> None:
    proxy_url, seen = far_proxy
    endpoint = "https://res.openai.azure.com"
    client = openai.AzureOpenAI(
        azure_endpoint=endpoint,
        api_version=API_VERSION,
        azure_ad_token_provider=token_provider(fake, endpoint=endpoint, allowed_hosts=["res.openai.azure.com"]),
        http_client=through(proxy_url),
        max_retries=0,
    )
    with refused("allowed_hosts"):
        client.with_options(base_url="https://elsewhere.example/openai/").chat.completions.create(
            model="gpt-4o", messages=MESSAGES
        )
    assert seen == []  # not even a CONNECT
    assert fake.calls == 0


def test_a_client_checked_once_over_tls_is_checked_again_when_its_urls_change(fake: FakeCredential) -> None:
    """The provider remembers a client it found sending only over TLS; pointing that client
    (its base URL, its websocket URL) at plain http off the machine afterwards is still refused."""
    from azure_ad_token_auth import InsecureTransportError, token_provider

    provider = token_provider(fake, endpoint="https://res.openai.azure.com")
    client = openai.AzureOpenAI(
        azure_endpoint="https://res.openai.azure.com", api_version=API_VERSION, azure_ad_token_provider=provider
    )
    assert client._get_azure_ad_token() == fake.tokens[0]
    assert client._get_azure_ad_token() == fake.tokens[0]  # remembered: no second check needed
    client.base_url = "http://evil.example/openai/"  # type: ignore[assignment]
    with pytest.raises(InsecureTransportError, match="evil.example"):
        client._get_azure_ad_token()
    client.base_url = "https://res.openai.azure.com/openai/"  # type: ignore[assignment]
    assert client._get_azure_ad_token() == fake.tokens[0]
    if hasattr(client, "websocket_base_url"):
        client.websocket_base_url = "ws://evil.example/"
        with pytest.raises(InsecureTransportError, match="evil.example"):
            client._get_azure_ad_token()
    assert fake.calls == 1
