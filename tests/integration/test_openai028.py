"""`install_openai_session` with the real openai 0.28 client against the loopback Azure OpenAI."""

from __future__ import annotations

import importlib
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
from azure.core.exceptions import ClientAuthenticationError

from azure_ad_token_auth import AzureADTokenAuth, install_openai_session, uninstall_openai_session
from azure_ad_token_auth.testing import (
    AzureOpenAIStandIn,
    FakeCredential,
    ManagedIdentityEndpoint,
    TokenRegistry,
    fingerprint,
)
from conftest import assert_no_token_in, wait_until

openai: Any = pytest.importorskip("openai")
if not openai.__version__.startswith("0."):
    pytest.skip(f"needs openai 0.28, found {openai.__version__}", allow_module_level=True)

pytestmark = pytest.mark.openai028

PROMPT = "The food was delicious and the waiter"
GLOBALS = ("api_key", "api_type", "api_base", "api_version", "requestssession", "proxy")


class RecordingFactory:
    """An application's own `openai.requestssession` factory (install keeps it): records which
    thread asked for a session, and the session it got (with the auth install put on it)."""

    def __init__(self) -> None:
        self.made: list[tuple[int, requests.Session]] = []

    def __call__(self) -> requests.Session:
        session = requests.Session()
        session.headers["X-App"] = "mine"
        self.made.append((threading.get_ident(), session))
        return session


@pytest.fixture(autouse=True)
def openai_globals() -> Iterator[None]:
    """Snapshot openai's module settings, and put them back (uninstalled) after the test.

    openai 0.28 keeps a session per thread that sent a request; a new run of its (public)
    `api_requestor` module gives every test threads without one.
    """
    saved = {name: getattr(openai, name) for name in GLOBALS}
    importlib.reload(openai.api_requestor)
    yield
    uninstall_openai_session()
    for name, value in saved.items():
        setattr(openai, name, value)
    importlib.reload(openai.api_requestor)


@pytest.fixture
def fake(cred: FakeCredential) -> FakeCredential:
    return cred


@pytest.fixture
def stand_in(server: AzureOpenAIStandIn) -> AzureOpenAIStandIn:
    openai.api_base = server.base_url
    openai.api_version = "2023-05-15"
    return server


def complete() -> Any:
    return openai.Completion.create(deployment_id="gpt35", prompt=PROMPT, max_tokens=10)


def chat() -> Any:
    return openai.ChatCompletion.create(deployment_id="gpt4", messages=[{"role": "user", "content": PROMPT}])


def test_completion_carries_the_credentials_token(
    stand_in: AzureOpenAIStandIn, fake: FakeCredential, token_log: pytest.LogCaptureFixture
) -> None:
    openai.api_type, openai.api_key = "open_ai", None
    auth = install_openai_session(fake, allow_http=True)
    assert isinstance(auth, AzureADTokenAuth)
    assert openai.api_type == "azure_ad"
    assert isinstance(openai.api_key, str) and openai.api_key  # a placeholder openai insists on
    response = complete()
    assert response.choices[0].text == stand_in.completion
    [seen] = stand_in.requests
    assert seen.path == "/openai/deployments/gpt35/completions"
    assert seen.query == {"api-version": "2023-05-15"}
    assert seen.token_status == "valid"
    assert seen.token_fingerprint == fingerprint(fake.tokens[0])
    assert fake.calls == 1
    assert openai.api_key not in fake.tokens
    assert_no_token_in(repr(openai.requestssession) + repr(auth) + token_log.text, fake.tokens)


def test_chat_completion(stand_in: AzureOpenAIStandIn, fake: FakeCredential) -> None:
    install_openai_session(fake, allow_http=True)
    for _ in range(3):
        assert chat().choices[0].message.content == stand_in.completion
    assert [r.path for r in stand_in.requests] == ["/openai/deployments/gpt4/chat/completions"] * 3
    assert {(r.token_status, r.token_fingerprint) for r in stand_in.requests} == {
        ("valid", fingerprint(fake.tokens[0]))
    }
    assert fake.calls == 1


@pytest.mark.parametrize(
    ("api_type", "api_key", "want_type", "want_key"),
    [
        ("open_ai", None, "azure_ad", None),
        ("open_ai", "", "azure_ad", None),
        ("azure_ad", "app-key", "azure_ad", "app-key"),
        ("azure", "app-key", "azure", "app-key"),
        ("azure", None, "azure_ad", None),  # never the placeholder as api-key
    ],
)
def test_settings_it_keeps_and_fills_in(
    stand_in: AzureOpenAIStandIn,
    fake: FakeCredential,
    api_type: str,
    api_key: str | None,
    want_type: str,
    want_key: str | None,
) -> None:
    """A placeholder key only when none is set; "azure" (api-key header) is kept with the
    application's own key, and never sends the placeholder as api-key."""
    openai.api_type, openai.api_key = api_type, api_key
    install_openai_session(fake, allow_http=True)
    assert openai.api_type == want_type
    if want_key is None:
        assert isinstance(openai.api_key, str) and openai.api_key and openai.api_key != api_key
    else:
        assert openai.api_key == want_key
    complete()
    [seen] = stand_in.requests
    assert (seen.token_status, seen.token_fingerprint) == ("valid", fingerprint(fake.tokens[0]))
    # With "azure" openai sends the key as api-key; the token still goes as Authorization.
    assert ("api-key" in seen.headers) == (want_type == "azure")


def test_threads_get_their_own_sessions_and_share_one_token(
    stand_in: AzureOpenAIStandIn, registry: TokenRegistry
) -> None:
    credential = FakeCredential(registry=registry, delay=0.05)
    factory = openai.requestssession = RecordingFactory()
    auth = install_openai_session(credential, allow_http=True)
    assert callable(openai.requestssession)
    assert not isinstance(openai.requestssession, requests.Session)
    barrier = threading.Barrier(16)

    def worker() -> None:
        barrier.wait(5)
        for _ in range(4):
            complete()

    with ThreadPoolExecutor(16) as pool:
        for future in [pool.submit(worker) for _ in range(16)]:
            future.result()
    threads = [thread for thread, _ in factory.made]
    assert len(threads) == len(set(threads)) == 16  # one session per thread, kept for its 4 requests
    assert all(session.auth is auth for _, session in factory.made)
    assert credential.calls == 1
    assert stand_in.count == 64
    assert {(r.token_status, r.token_fingerprint) for r in stand_in.requests} == {
        ("valid", fingerprint(credential.tokens[0]))
    }


def test_a_thread_that_sent_before_install_switches_when_openai_renews_its_session(
    clock: Any, stand_in: AzureOpenAIStandIn, fake: FakeCredential
) -> None:
    """openai 0.28 keeps each thread's session for 180 s: a thread that sent a request before
    the install sends with its old session (without our auth) until then. Install before the
    first request."""
    openai.api_type, openai.api_key = "azure_ad", "stale-key"
    with pytest.raises(openai.error.AuthenticationError):
        complete()
    install_openai_session(fake, allow_http=True)
    with pytest.raises(openai.error.AuthenticationError):
        complete()  # the session of before: the placeholder key goes as the bearer token, refused
    clock.shift(181)  # openai renews the thread's session from the installed factory
    assert complete().choices[0].text == stand_in.completion
    assert [r.token_status for r in stand_in.requests] == ["unknown", "unknown", "valid"]
    assert stand_in.requests[-1].token_fingerprint == fingerprint(fake.tokens[0])
    with ThreadPoolExecutor(1) as pool:  # a new thread: a session from the installed factory at once
        assert pool.submit(complete).result().choices
    assert stand_in.requests[-1].token_status == "valid"


def test_session_renewed_after_180_seconds_still_authenticates(
    clock: Any, stand_in: AzureOpenAIStandIn, fake: FakeCredential
) -> None:
    factory = openai.requestssession = RecordingFactory()
    auth = install_openai_session(fake, allow_http=True)
    complete()
    clock.shift(120)
    complete()
    assert len(factory.made) == 1
    clock.shift(61)  # 181 s: openai closes the session and asks the factory for a new one
    complete()
    assert len(factory.made) == 2
    (_, first), (_, second) = factory.made
    assert second is not first and second.auth is auth
    assert fake.calls == 1
    assert {(r.token_status, r.token_fingerprint) for r in stand_in.requests} == {
        ("valid", fingerprint(fake.tokens[0]))
    }


def test_uninstall_restores_what_was_there(stand_in: AzureOpenAIStandIn, fake: FakeCredential) -> None:
    mine = requests.Session()
    openai.requestssession, openai.api_type, openai.api_key = mine, "open_ai", None
    install_openai_session(fake, allow_http=True)
    assert openai.requestssession is not mine
    assert uninstall_openai_session() is True
    assert openai.requestssession is mine
    assert openai.api_type == "open_ai"
    assert openai.api_key is None
    assert uninstall_openai_session() is False


def test_after_uninstall_requests_go_without_our_token_once_openai_renews_the_session(
    clock: Any, stand_in: AzureOpenAIStandIn, fake: FakeCredential
) -> None:
    """A thread's session outlives the uninstall until openai renews it (180 s), as it outlives
    an install: our token goes on to the endpoint our auth checks until then."""
    openai.requestssession, openai.api_type, openai.api_key = None, "azure_ad", "app-key"
    install_openai_session(fake, allow_http=True)
    complete()
    uninstall_openai_session()
    assert (openai.requestssession, openai.api_type, openai.api_key) == (None, "azure_ad", "app-key")
    complete()
    clock.shift(181)
    with pytest.raises(openai.error.AuthenticationError):
        complete()
    assert [r.token_status for r in stand_in.requests] == ["valid", "valid", "unknown"]


def test_install_twice_then_uninstall_restores_the_original(
    stand_in: AzureOpenAIStandIn, fake: FakeCredential, registry: TokenRegistry
) -> None:
    openai.requestssession, openai.api_type, openai.api_key = None, "open_ai", None
    install_openai_session(fake, allow_http=True)
    other = FakeCredential(registry=registry)
    install_openai_session(other, allow_http=True)
    complete()
    assert stand_in.requests[-1].token_fingerprint == fingerprint(other.tokens[0])
    assert fake.calls == 0
    assert uninstall_openai_session() is True
    assert (openai.requestssession, openai.api_type, openai.api_key) == (None, "open_ai", None)


def test_default_azure_credential_end_to_end(registry: TokenRegistry, stand_in: AzureOpenAIStandIn) -> None:
    with ManagedIdentityEndpoint(registry=registry) as mi, mi.patched_env():
        auth = install_openai_session(allow_http=True)
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda _: complete(), range(12)))
        chat()
        assert type(auth.cache.credential).__name__ == "DefaultAzureCredential"
        auth.cache.credential.close()
        assert mi.calls == 1
    assert all(r.choices[0].text == stand_in.completion for r in results)
    assert stand_in.count == 13
    assert {r.token_status for r in stand_in.requests} == {"valid"}
    assert len({r.token_fingerprint for r in stand_in.requests}) == 1
    assert registry.issued == 1


def test_token_renewed_across_the_five_minute_line(
    clock: Any, stand_in: AzureOpenAIStandIn, registry: TokenRegistry
) -> None:
    credential = FakeCredential(registry=registry, lifetime=3600)
    auth = install_openai_session(credential, allow_http=True)
    complete()
    clock.shift(3301)  # 299 s left: renew, but the old token is still good meanwhile
    complete()
    assert stand_in.requests[-1].token_fingerprint == fingerprint(credential.tokens[0])
    wait_until(lambda: auth.cache.status().refreshes == 2)
    for _ in range(3):
        complete()
    assert [r.token_fingerprint for r in stand_in.requests[-3:]] == [fingerprint(credential.tokens[1])] * 3
    assert {r.token_status for r in stand_in.requests} == {"valid"}
    assert credential.calls == 2


def test_credential_error_reaches_the_caller(stand_in: AzureOpenAIStandIn, registry: TokenRegistry) -> None:
    credential = FakeCredential(registry=registry, fail=ClientAuthenticationError("no identity here"))
    install_openai_session(credential, allow_http=True)
    with pytest.raises(ClientAuthenticationError, match="no identity here"):
        complete()
    assert stand_in.count == 0
    assert credential.calls == 1


def test_logs_name_tokens_by_fingerprint_only(
    stand_in: AzureOpenAIStandIn, fake: FakeCredential, token_log: pytest.LogCaptureFixture
) -> None:
    install_openai_session(fake, allow_http=True)
    complete()
    chat()
    assert any(fingerprint(fake.tokens[0]) in m for m in token_log.messages)
    assert_no_token_in(token_log.text, fake.tokens)


def test_sessions_keep_openais_proxy_and_retries(proxy: Any) -> None:
    proxy_url, _ = proxy
    openai.proxy = proxy_url
    auth = install_openai_session(FakeCredential())
    session = openai.requestssession()  # what openai calls for each thread's session
    assert session.auth is auth
    assert session.proxies == {"http": proxy_url, "https": proxy_url}
    retries = session.get_adapter("https://example.openai.azure.com/").max_retries
    assert retries.total == openai.api_requestor.MAX_CONNECTION_RETRIES
    openai.proxy = None  # read per session, as openai does
    assert openai.requestssession().proxies == {}
    openai.proxy = {"https": proxy_url}
    assert openai.requestssession().proxies == {"https": proxy_url}
    openai.proxy = 3128  # openai's own factory refuses it too
    with pytest.raises(ValueError, match="openai.proxy must be a URL string or a dict"):
        openai.requestssession()


def test_requests_go_through_openais_proxy(
    stand_in: AzureOpenAIStandIn, fake: FakeCredential, proxy: Any, no_proxy_env: pytest.MonkeyPatch
) -> None:
    """Plain http to the loopback stand-in, through `openai.proxy`, without `allow_http`: refused;
    the proxy sees nothing."""
    from azure_ad_token_auth import InsecureTransportError

    proxy_url, reached = proxy
    openai.proxy = proxy_url
    install_openai_session(fake)
    with pytest.raises(InsecureTransportError, match="refusing to send an Azure AD token to '127.0.0.1'"):
        complete()
    assert reached == [] and stand_in.count == 0


def test_the_applications_own_session_factory_is_kept(stand_in: AzureOpenAIStandIn, fake: FakeCredential) -> None:
    factory = openai.requestssession = RecordingFactory()
    auth = install_openai_session(fake, allow_http=True)
    complete()
    assert stand_in.requests[-1].headers["x-app"] == "mine"
    assert stand_in.requests[-1].token_fingerprint == fingerprint(fake.tokens[0])
    ((_, session),) = factory.made
    assert session.auth is auth
    uninstall_openai_session()
    assert openai.requestssession is factory


class ScopeRecorder(FakeCredential):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.asked: list[tuple[str, ...]] = []

    def get_token_info(self, *scopes: str, options: Any = None) -> Any:
        self.asked.append(scopes)
        return super().get_token_info(*scopes, options=options)


@pytest.mark.parametrize(
    ("api_base", "scope"),
    [
        ("https://res.openai.azure.us", "https://cognitiveservices.azure.us/.default"),
        ("https://res.openai.azure.cn", "https://cognitiveservices.azure.cn/.default"),
        ("https://res.openai.azure.com", "https://cognitiveservices.azure.com/.default"),
    ],
)
def test_install_with_no_scopes_takes_the_scope_of_api_base_set_after_install(api_base: str, scope: str) -> None:
    recorder = ScopeRecorder()
    auth = install_openai_session(recorder)
    openai.api_base = api_base  # after install: read when a token is needed
    session = openai.requestssession()
    prepared = session.prepare_request(requests.Request("POST", api_base + "/openai/deployments/x/completions"))
    assert prepared.headers["Authorization"] == "Bearer " + recorder.tokens[0]  # prepared, never sent
    assert recorder.asked == [(scope,)]
    assert auth.cache.scopes == (scope,)


def test_install_with_no_scopes_gives_each_request_the_scope_of_its_own_url() -> None:
    """api_base known at install (Azure Government), then moved: each request's token is for the
    audience of the URL it goes to, not the first one's (the auth sees every request)."""
    recorder = ScopeRecorder()
    openai.api_base = "https://gov.openai.azure.us"
    auth = install_openai_session(recorder)
    session = openai.requestssession()
    asked: list[tuple[str, ...]] = []
    for api_base, path in [
        ("https://gov.openai.azure.us", "/openai/deployments/x/chat/completions"),
        ("https://pub.openai.azure.com", "/openai/deployments/x/chat/completions"),
        ("https://acct.services.ai.azure.com/api/projects/p", "/openai/deployments/x/chat/completions"),
        ("https://gov.openai.azure.us", "/openai/deployments/x/chat/completions"),
    ]:
        openai.api_base = api_base
        prepared = session.prepare_request(requests.Request("POST", api_base + path))  # prepared, never sent
        token = prepared.headers["Authorization"].removeprefix("Bearer ")
        asked.append(recorder.asked[recorder.tokens.index(token)])  # the scope this request's token was for
    assert asked == [
        ("https://cognitiveservices.azure.us/.default",),
        ("https://cognitiveservices.azure.com/.default",),
        ("https://ai.azure.com/.default",),
        ("https://cognitiveservices.azure.us/.default",),
    ]
    assert len(recorder.asked) == 3  # the Government token was cached, not asked for again
    assert auth.cache.scopes == ("https://cognitiveservices.azure.us/.default",)  # api_base's, as documented
