"""`install_openai_session` on openai >= 1: the module-level client, its `http_client`, and the
scope of the endpoint it is configured with, against the loopback Azure OpenAI stand-in."""

from __future__ import annotations

import pytest

from azure_ad_token_auth import install_openai_session, uninstall_openai_session
from azure_ad_token_auth.testing import AzureOpenAIStandIn, FakeCredential, TokenRegistry, fingerprint
from conftest import assert_no_token_in
from openai_helpers import (
    API_VERSION,
    CHINA,
    GOVERNMENT,
    MESSAGES,
    PUBLIC,
    ScopeRecorder,
    module_chat,
    needs_module_client_hooks,
    openai,
    openai_httpx,
    openai_settings,  # noqa: F401 - the fixture every test uses
    refused,
    seen_tokens,
)

pytestmark = [pytest.mark.openai1, pytest.mark.usefixtures("openai_settings")]


@pytest.fixture
def fake(cred: FakeCredential) -> FakeCredential:
    return cred


@pytest.fixture
def stand_in(server: AzureOpenAIStandIn) -> AzureOpenAIStandIn:
    return server


# -- the module-level client ---------------------------------------------------------------------


def test_module_client(stand_in: AzureOpenAIStandIn, fake: FakeCredential) -> None:
    install_openai_session(fake, allow_http=True)
    openai.azure_endpoint = stand_in.base_url
    openai.api_version = API_VERSION
    for _ in range(5):
        assert module_chat().choices[0].message.content == stand_in.completion
    assert stand_in.count == 5
    assert seen_tokens(stand_in) == {("valid", fingerprint(fake.tokens[0]))}
    assert fake.calls == 1
    assert_no_token_in(repr(openai.azure_ad_token_provider), fake.tokens)


def test_module_client_refuses_plain_http_to_a_remote_host(fake: FakeCredential) -> None:
    install_openai_session(fake)
    openai.azure_endpoint = "http://example.invalid"
    openai.api_version = API_VERSION
    openai.max_retries = 0
    with refused("example.invalid"):
        module_chat()
    assert fake.calls == 0  # no token was even fetched


def test_module_client_applies_allowed_hosts(stand_in: AzureOpenAIStandIn, fake: FakeCredential) -> None:
    install_openai_session(fake, allowed_hosts=["*.openai.azure.com"], allow_http=True)
    openai.azure_endpoint = stand_in.base_url  # loopback, but not in the list
    openai.api_version = API_VERSION
    openai.max_retries = 0
    with refused("allowed_hosts"):
        module_chat()
    assert stand_in.count == 0
    assert fake.calls == 0


@needs_module_client_hooks
def test_module_client_copies_with_another_base_url_are_checked_per_request(
    stand_in: AzureOpenAIStandIn, registry: TokenRegistry, fake: FakeCredential
) -> None:
    """`with_options(base_url=...)` copies share the module client's http client, whose auth
    applies the https rule and `allowed_hosts` to the URL each request really goes to."""
    from azure_ad_token_auth import InsecureTransportError

    install_openai_session(fake, allowed_hosts=["127.0.0.1"], allow_http=True)
    openai.azure_endpoint = stand_in.base_url
    openai.api_version = API_VERSION
    openai.max_retries = 0
    assert module_chat().choices[0].message.content == stand_in.completion
    module_client = openai._load_client()
    for elsewhere in ("http://elsewhere.invalid/openai/", "https://elsewhere.invalid/openai/"):
        copy = module_client.with_options(base_url=elsewhere)
        with pytest.raises(Exception) as caught:
            copy.chat.completions.create(model="gpt-4o", messages=MESSAGES)
        error = caught.value if isinstance(caught.value, InsecureTransportError) else caught.value.__cause__
        assert isinstance(error, InsecureTransportError), caught.value
    with AzureOpenAIStandIn(registry=registry) as other:  # another allowed host: gets the token
        copy = module_client.with_options(base_url=other.base_url + "/openai/")
        assert copy.chat.completions.create(model="gpt-4o", messages=MESSAGES).choices
        assert [r.token_fingerprint for r in other.requests] == [fingerprint(fake.tokens[0])]
    assert fake.calls == 1


@needs_module_client_hooks
def test_module_client_resends_once_after_a_401(stand_in: AzureOpenAIStandIn, fake: FakeCredential) -> None:
    install_openai_session(fake, allow_http=True)
    openai.azure_endpoint = stand_in.base_url
    openai.api_version = API_VERSION
    openai.max_retries = 0
    stand_in.fail_next(1, status=401)
    assert module_chat().choices[0].message.content == stand_in.completion
    assert [r.token_fingerprint for r in stand_in.requests] == [fingerprint(t) for t in fake.tokens]


@pytest.mark.skipif(
    not hasattr(openai, "DefaultHttpxClient"), reason="openai.DefaultHttpxClient is newer than this openai"
)
def test_module_client_with_the_applications_own_http_client_is_left_alone(
    stand_in: AzureOpenAIStandIn, fake: FakeCredential
) -> None:
    own = openai.DefaultHttpxClient()
    openai.http_client = own
    install_openai_session(fake, allow_http=True)
    assert openai.http_client is own
    openai.azure_endpoint = stand_in.base_url
    openai.api_version = API_VERSION
    assert module_chat().choices[0].message.content == stand_in.completion
    assert [r.token_fingerprint for r in stand_in.requests] == [fingerprint(fake.tokens[0])]
    own.close()


def test_module_client_built_before_install_with_an_api_key(stand_in: AzureOpenAIStandIn, fake: FakeCredential) -> None:
    """Install rebuilds a client openai already made, and clears the api_key openai
    refuses alongside a provider; uninstall brings the key back."""
    openai.api_type = "azure"
    openai.azure_endpoint = stand_in.base_url
    openai.api_version = API_VERSION
    openai.api_key = "app-key"
    with pytest.raises(openai.AuthenticationError):
        module_chat()
    # openai < 2.34 also sends the key as a bearer token, which the stand-in does not know.
    assert stand_in.requests[-1].token_status in ("missing", "unknown")
    assert "api-key" in stand_in.requests[-1].headers

    install_openai_session(fake, allow_http=True)
    assert openai.api_key is None
    assert callable(openai.azure_ad_token_provider)
    assert module_chat().choices[0].message.content == stand_in.completion
    assert stand_in.requests[-1].token_status == "valid"
    assert stand_in.requests[-1].token_fingerprint == fingerprint(fake.tokens[0])

    assert uninstall_openai_session() is True
    assert openai.api_key == "app-key"
    assert openai.azure_ad_token_provider is None
    assert openai.api_type == "azure"
    with pytest.raises(openai.AuthenticationError):
        module_chat()
    assert stand_in.requests[-1].token_status in ("missing", "unknown")
    assert fake.calls == 1


def test_install_clears_a_static_azure_ad_token_and_uninstall_restores_it(
    stand_in: AzureOpenAIStandIn, fake: FakeCredential
) -> None:
    openai.api_type = None
    openai.azure_ad_token = "static-token-from-the-app"
    install_openai_session(fake, allow_http=True)
    assert (openai.api_type, openai.azure_ad_token, openai.api_key) == ("azure", None, None)
    openai.azure_endpoint = stand_in.base_url
    openai.api_version = API_VERSION
    module_chat()
    assert seen_tokens(stand_in) == {("valid", fingerprint(fake.tokens[0]))}
    uninstall_openai_session()
    assert openai.api_type is None
    assert openai.azure_ad_token == "static-token-from-the-app"
    assert openai.azure_ad_token_provider is None


def test_module_client_checks_a_base_url_set_after_install(stand_in: AzureOpenAIStandIn, fake: FakeCredential) -> None:
    install_openai_session(fake, allowed_hosts=["*.openai.azure.com"], allow_http=True)
    openai.azure_endpoint = "https://res.openai.azure.com"
    openai.api_version = API_VERSION
    openai.max_retries = 0
    openai._load_client()  # built for the allowed endpoint...
    openai.base_url = stand_in.base_url + "/openai/"  # ...then pointed elsewhere: where it really sends
    with refused("allowed_hosts"):
        module_chat()
    assert stand_in.count == 0
    assert fake.calls == 0


def test_the_module_provider_refuses_when_openai_names_no_endpoint(fake: FakeCredential) -> None:
    """openai cannot build its module client without an endpoint: a call then comes from
    elsewhere, and nothing says where the token would go."""
    from azure_ad_token_auth import ConfigurationError

    install_openai_session(fake)
    openai.base_url = openai.azure_endpoint = None
    with pytest.raises(ConfigurationError, match="names no endpoint"):
        openai.azure_ad_token_provider()
    assert fake.calls == 0


# -- never a placeholder: the application's own http client --------------------------------------


def test_module_client_with_an_http_client_set_after_install_sends_the_real_token(
    stand_in: AzureOpenAIStandIn, fake: FakeCredential
) -> None:
    """As openai's own module-client tests do: `openai.http_client = ...` after install.
    The provider hands openai the real token (it used to hand a placeholder, expecting
    our http client's auth to replace it)."""
    install_openai_session(fake, allow_http=True)
    openai.azure_endpoint = stand_in.base_url
    openai.api_version = API_VERSION
    with openai_httpx().Client() as own:
        openai.http_client = own
        assert module_chat().choices[0].message.content == stand_in.completion
    assert seen_tokens(stand_in) == {("valid", fingerprint(fake.tokens[0]))}
    assert fake.calls == 1


def test_module_client_with_an_http_client_set_after_install_still_refuses_plain_http_off_the_machine(
    fake: FakeCredential,
) -> None:
    install_openai_session(fake)
    openai.azure_endpoint = "http://example.invalid"
    openai.api_version = API_VERSION
    openai.max_retries = 0
    with openai_httpx().Client() as own:
        openai.http_client = own
        with refused("example.invalid"):
            module_chat()
    assert fake.calls == 0


def test_module_client_refuses_a_plain_http_loopback_endpoint_without_allow_http(
    stand_in: AzureOpenAIStandIn, fake: FakeCredential
) -> None:
    """No loopback exemption: plain http is `allow_http=True` said explicitly, whatever http
    client the application set."""
    install_openai_session(fake)
    openai.azure_endpoint = stand_in.base_url
    openai.api_version = API_VERSION
    openai.max_retries = 0
    with openai_httpx().Client() as own:
        for http_client in (None, own):
            openai.http_client = http_client
            with refused("allow_http=True"):
                module_chat()
    assert fake.calls == 0 and stand_in.count == 0


# -- the scope follows the configured endpoint's cloud -------------------------------------------


@pytest.mark.parametrize(
    ("endpoint", "scope"),
    [
        ("https://res.openai.azure.us", GOVERNMENT),
        ("https://res.cognitiveservices.azure.cn", CHINA),
        ("https://res.openai.azure.com", PUBLIC),
        ("https://example.test", PUBLIC),
    ],
)
def test_install_with_no_scopes_takes_the_scope_of_an_endpoint_set_after_install(endpoint: str, scope: str) -> None:
    recorder = ScopeRecorder()
    auth = install_openai_session(recorder)
    openai.azure_endpoint = endpoint  # after install: read when the token is needed
    openai.api_version = API_VERSION
    openai._load_client()
    assert openai.azure_ad_token_provider() == recorder.tokens[0]  # what openai calls; nothing is sent
    assert recorder.asked == [(scope,)]
    assert auth.cache.scopes == (scope,)


def test_install_with_no_scopes_reads_azure_openai_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", "https://res.openai.azure.us")
    recorder = ScopeRecorder()
    install_openai_session(recorder)
    openai.api_version = API_VERSION
    openai._load_client()
    openai.azure_ad_token_provider()
    assert recorder.asked == [(GOVERNMENT,)]


def test_install_with_scopes_given_keeps_them(stand_in: AzureOpenAIStandIn) -> None:
    recorder = ScopeRecorder()
    install_openai_session(recorder, "api://custom/.default")
    openai.azure_endpoint = "https://res.openai.azure.us"
    openai.api_version = API_VERSION
    openai._load_client()
    openai.azure_ad_token_provider()
    assert recorder.asked == [("api://custom/.default",)]
