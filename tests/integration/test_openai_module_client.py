"""`install_openai_session` on openai >= 1: the module-level client, its `http_client`, and the
scope of the endpoint it is configured with, against the loopback Azure OpenAI stand-in."""

from __future__ import annotations

import importlib

import pytest

from azure_ad_token_auth import install_openai_session, uninstall_openai_session
from azure_ad_token_auth.testing import AzureOpenAIStandIn, FakeCredential, TokenRegistry, fingerprint
from conftest import assert_no_token_in
from openai_helpers import (
    API_VERSION,
    CHINA,
    GOVERNMENT,
    MESSAGES,
    OPENAI_VERSION,
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
def test_the_installed_http_client_checks_each_requests_real_url(
    stand_in: AzureOpenAIStandIn, registry: TokenRegistry, fake: FakeCredential
) -> None:
    """openai puts the module provider's token in every request; `openai.http_client`, which
    install sets, applies the https rule and `allowed_hosts` to the URL each request really goes
    to, here another client's sharing it, and refuses what the token may not go with."""
    install_openai_session(fake, allowed_hosts=["127.0.0.1"], allow_http=True)
    openai.azure_endpoint = stand_in.base_url
    openai.api_version = API_VERSION
    openai.max_retries = 0
    assert module_chat().choices[0].message.content == stand_in.completion
    for elsewhere in ("http://elsewhere.invalid/openai/", "https://elsewhere.invalid/openai/"):
        other = openai.AzureOpenAI(
            base_url=elsewhere,
            api_version=API_VERSION,
            azure_ad_token_provider=openai.azure_ad_token_provider,
            http_client=openai.http_client,
            max_retries=0,
        )
        with refused("elsewhere.invalid"):
            other.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    with AzureOpenAIStandIn(registry=registry, tls=False) as allowed:  # another allowed host: gets the token
        other = openai.AzureOpenAI(
            base_url=allowed.base_url + "/openai/",
            api_version=API_VERSION,
            azure_ad_token_provider=openai.azure_ad_token_provider,
            http_client=openai.http_client,
        )
        assert other.chat.completions.create(model="gpt-4o", messages=MESSAGES).choices
        assert [r.token_fingerprint for r in allowed.requests] == [fingerprint(fake.tokens[0])]
    assert fake.calls == 1


@needs_module_client_hooks
def test_install_sets_openais_default_http_client_with_the_auth_of_its_package(fake: FakeCredential) -> None:
    """httpx for openai 1.x and 2.x, httpx2 for 3.x: told by openai's own default client class."""
    install_openai_session(fake)
    assert isinstance(openai.http_client, openai.DefaultHttpxClient)
    ours = importlib.import_module(f"azure_ad_token_auth.{openai_httpx().__name__}")
    assert isinstance(openai.http_client.auth, ours.AzureADHttpxAuth)


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


def test_install_clears_an_api_key_and_uninstall_restores_it(
    stand_in: AzureOpenAIStandIn, fake: FakeCredential
) -> None:
    """Install clears the api_key openai refuses alongside a provider; uninstall brings it back."""
    openai.api_type = "azure"
    openai.api_key = "app-key"
    install_openai_session(fake, allow_http=True)
    assert openai.api_key is None
    assert callable(openai.azure_ad_token_provider)
    openai.azure_endpoint = stand_in.base_url
    openai.api_version = API_VERSION
    assert module_chat().choices[0].message.content == stand_in.completion
    assert seen_tokens(stand_in) == {("valid", fingerprint(fake.tokens[0]))}
    assert "api-key" not in stand_in.requests[-1].headers
    assert uninstall_openai_session() is True
    restored = [getattr(openai, name) for name in ("api_type", "api_key", "azure_ad_token_provider")]
    assert restored == ["azure", "app-key", None]


def test_a_module_client_built_while_installed_refuses_after_uninstall(
    stand_in: AzureOpenAIStandIn, fake: FakeCredential
) -> None:
    """openai builds its module client once, with the provider of that moment, and rebuilds it
    only privately: after uninstall that client still calls the install's provider, which
    refuses rather than go on as if nothing had been undone."""
    from azure_ad_token_auth import UsageError

    install_openai_session(fake, allow_http=True)
    openai.azure_endpoint = stand_in.base_url
    openai.api_version = API_VERSION
    assert module_chat().choices  # builds the module client
    uninstall_openai_session()
    with pytest.raises(UsageError, match="install_openai_session.*before the first request"):
        module_chat()
    assert stand_in.count == 1 and fake.calls == 1


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
    """The module client's `base_url` follows `openai.base_url`, set after the client was built:
    the provider checks that endpoint as soon as it changes."""
    install_openai_session(fake, allowed_hosts=["127.0.0.1"], allow_http=True)
    openai.azure_endpoint = stand_in.base_url
    openai.api_version = API_VERSION
    openai.max_retries = 0
    assert module_chat().choices  # built for an allowed endpoint...
    openai.base_url = "https://elsewhere.invalid/openai/"  # ...then pointed elsewhere: where it really sends
    with refused("allowed_hosts"):
        module_chat()
    assert stand_in.count == 1
    assert fake.calls == 1


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


@pytest.mark.parametrize("set_when", ["before-install", "after-install"])
def test_the_applications_own_http_client_refuses_the_endpoint_a_module_client_kept(
    stand_in: AzureOpenAIStandIn, fake: FakeCredential, set_when: str
) -> None:
    """openai builds its module client once, from the endpoint of that moment: after the
    setting changes to https, the provider checks the new endpoint while the client still
    sends to the old plain-http one. With the application's own `openai.http_client` (no
    auth of ours on it) the request hook install adds to it refuses that request."""
    with openai_httpx().Client() as own:
        if set_when == "before-install":
            openai.http_client = own
        install_openai_session(fake)
        if set_when == "after-install":
            openai.http_client = own
        openai.azure_endpoint = stand_in.base_url  # plain http, loopback: a dev default, say
        openai.api_version = API_VERSION
        openai.max_retries = 0
        completions = openai.chat.completions  # openai builds its module client here
        openai.azure_endpoint = "https://res.openai.azure.com"  # the application sets the real endpoint
        with refused("over plain http"):
            completions.create(model="gpt-4o", messages=MESSAGES)
        assert stand_in.count == 0
        own.get(stand_in.base_url + "/echo")  # no token in it: not ours to refuse, it goes out
        assert stand_in.count == 1
        assert uninstall_openai_session()
        own.get(stand_in.base_url + "/echo", headers={"Authorization": "Bearer app"})  # the check went with it
    assert stand_in.count == 2 and fake.calls == 1


def test_the_request_check_comes_back_after_the_application_replaces_its_clients_event_hooks(
    stand_in: AzureOpenAIStandIn, fake: FakeCredential
) -> None:
    """`client.event_hooks = {...}` (httpx's documented way to add a hook) drops every hook set
    before, the request check included: the provider's next call puts it back."""
    seen: list[str] = []
    with openai_httpx().Client() as own:
        openai.http_client = own
        install_openai_session(fake)
        openai.azure_endpoint = stand_in.base_url  # plain http: kept by the module client below
        openai.api_version = API_VERSION
        openai.max_retries = 0
        completions = openai.chat.completions
        openai.azure_endpoint = "https://res.openai.azure.com"
        with refused("over plain http"):
            completions.create(model="gpt-4o", messages=MESSAGES)
        own.event_hooks = {"request": [lambda request: seen.append(str(request.url))], "response": []}
        with refused("over plain http"):
            completions.create(model="gpt-4o", messages=MESSAGES)
        assert len(seen) == 1  # the application's hook ran too, before ours refused
    assert stand_in.count == 0


def test_an_http_client_the_request_check_cannot_hook_is_refused(fake: FakeCredential) -> None:
    from azure_ad_token_auth import UsageError

    install_openai_session(fake)
    openai.azure_endpoint = "https://res.openai.azure.com"
    openai.http_client = object()  # type: ignore[assignment]  # not an http client at all
    with pytest.raises(UsageError, match="no event_hooks"):
        openai.azure_ad_token_provider()  # what openai calls before each request
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
    assert openai.azure_ad_token_provider() == recorder.tokens[0]  # what openai calls; nothing is sent
    assert recorder.asked == [(scope,)]
    assert auth.cache.scopes == (scope,)


def test_install_with_no_scopes_reads_azure_openai_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", "https://res.openai.azure.us")
    recorder = ScopeRecorder()
    install_openai_session(recorder)
    openai.api_version = API_VERSION
    openai.azure_ad_token_provider()
    assert recorder.asked == [(GOVERNMENT,)]


def test_install_with_scopes_given_keeps_them(stand_in: AzureOpenAIStandIn) -> None:
    recorder = ScopeRecorder()
    install_openai_session(recorder, "api://custom/.default")
    openai.azure_endpoint = "https://res.openai.azure.us"
    openai.api_version = API_VERSION
    openai.azure_ad_token_provider()
    assert recorder.asked == [("api://custom/.default",)]


def test_an_async_credential_is_refused_before_openai_is_touched() -> None:
    from azure.identity.aio import ManagedIdentityCredential

    from azure_ad_token_auth import ConfigurationTypeError

    before = dict(vars(openai))
    with pytest.raises(ConfigurationTypeError, match=r"use azure.identity.ManagedIdentityCredential\(\) instead"):
        install_openai_session(ManagedIdentityCredential())
    assert {name: value for name, value in vars(openai).items() if name in before} == before


def test_prefetch_fetches_the_configured_endpoints_token_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """The installed http client's auth shares the provider's caches: prefetch (and keep_fresh)
    act on the endpoint's cache, not on a public-cloud one beside it."""
    from conftest import wait_until

    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", "https://res.openai.azure.us")
    recorder = ScopeRecorder()
    auth = install_openai_session(recorder, prefetch=True)
    wait_until(lambda: auth.cache.current is not None)
    assert recorder.asked == [(GOVERNMENT,)]


OLD_OPENAI_INSTALL = """
import json, logging
import openai
from azure_ad_token_auth import install_openai_session, uninstall_openai_session
from azure_ad_token_auth.testing import FakeCredential

records = []
handler = logging.Handler()
handler.emit = records.append
logging.getLogger("azure_ad_token_auth").addHandler(handler)
for _ in range(3):
    install_openai_session(FakeCredential())
    uninstall_openai_session()
print(json.dumps([(r.levelname, r.getMessage()) for r in records if "DefaultHttpxClient" in r.getMessage()]))
"""


def test_an_openai_without_a_default_http_client_gets_one_warning_naming_the_upgrade() -> None:
    """openai < 1.17: no http client carrying the per-request check can be set; said once per
    process (in a fresh one here), naming the upgrade. openai >= 1.17: nothing to say."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    from conftest import child_pythonpath

    env = {**os.environ, "PYTHONPATH": child_pythonpath(str(Path(__file__).resolve().parents[2] / "src"))}
    result = subprocess.run(
        [sys.executable, "-c", OLD_OPENAI_INSTALL], capture_output=True, text=True, env=env, timeout=60, check=True
    )
    records = json.loads(result.stdout)
    if OPENAI_VERSION >= (1, 17):
        assert records == []
    else:
        ((level, message),) = records
        assert level == "WARNING" and "Upgrade to openai >= 1.17" in message and "once per process" in message
