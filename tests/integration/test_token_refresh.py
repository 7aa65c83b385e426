"""`TokenRefresh`: the cookbook's pasted class, its attributes kept (`credential`, `scopes`,
`cached_token`), on a real requests session against the kit's https stand-in."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
from azure.core.credentials import AccessToken
from azure.identity import DefaultAzureCredential

from azure_ad_token_auth import DEFAULT_SCOPE, AzureADTokenAuth, TokenRefresh, UsageError, fingerprint
from azure_ad_token_auth.testing import AzureOpenAIStandIn, FakeCredential, TokenRegistry
from conftest import echo

SCOPE = "https://cognitiveservices.azure.com/.default"


@pytest.fixture
def server(https_server: AzureOpenAIStandIn) -> Iterator[AzureOpenAIStandIn]:
    with https_server.patched_env():  # requests trusts the stand-in's certificate
        yield https_server


def _sent(server: AzureOpenAIStandIn) -> list[str | None]:
    return [r.token_fingerprint for r in server.requests]


def test_the_pasted_class_attributes_are_there(server: AzureOpenAIStandIn, cred: FakeCredential) -> None:
    auth = TokenRefresh(cred, [SCOPE])
    assert isinstance(auth, AzureADTokenAuth)
    assert auth.credential is cred
    assert auth.scopes == [SCOPE]
    assert auth.cached_token is None  # nothing sent yet
    session = requests.Session()
    session.auth = auth
    assert session.post(echo(server), data=b"x").json()["token_status"] == "valid"
    token = auth.cached_token
    assert isinstance(token, AccessToken)
    assert token.token == cred.tokens[0] and _sent(server) == [fingerprint(token.token)]
    assert abs(token.expires_on - (cred.lifetime + server.requests[0].time)) < 5


def test_setting_cached_token_to_none_renews_at_the_next_request(
    server: AzureOpenAIStandIn, cred: FakeCredential
) -> None:
    session = requests.Session()
    session.auth = auth = TokenRefresh(cred, [SCOPE])
    session.post(echo(server), data=b"x")
    for renewal in (2, 3):  # each time, not once per retry_backoff as a 401 is
        auth.cached_token = None
        assert auth.cached_token is None
        assert session.post(echo(server), data=b"x").json()["token_status"] == "valid"
        assert cred.calls == renewal
        assert auth.cached_token is not None and auth.cached_token.token == cred.tokens[-1]
    assert _sent(server) == [fingerprint(token) for token in cred.tokens]
    assert len(set(cred.tokens)) == 3


def test_after_a_401_cached_token_is_the_token_the_request_was_resent_with(
    server: AzureOpenAIStandIn, cred: FakeCredential, registry: TokenRegistry
) -> None:
    session = requests.Session()
    session.auth = auth = TokenRefresh(cred, [SCOPE])
    session.post(echo(server), data=b"x")
    registry.revoke(cred.tokens[0])
    response = session.post(echo(server), data=b"x")
    assert response.status_code == 200 and [r.status_code for r in response.history] == [401]
    assert auth.cached_token is not None and auth.cached_token.token == cred.tokens[1]


def test_any_other_write_is_refused_naming_what_to_do(cred: FakeCredential) -> None:
    auth = TokenRefresh(cred, [SCOPE])
    with pytest.raises(UsageError, match=r"TokenRefresh\.credential cannot be set: make a new TokenRefresh"):
        auth.credential = FakeCredential()  # type: ignore[misc]  # read-only properties: the test writes them anyway
    with pytest.raises(UsageError, match=r"TokenRefresh\.scopes cannot be set: make a new TokenRefresh"):
        auth.scopes = ["api://other/.default"]  # type: ignore[misc]
    with pytest.raises(UsageError, match=r"cached_token takes only None .*got AccessToken"):
        auth.cached_token = AccessToken("forged", 2_000_000_000)  # type: ignore[assignment]
    with pytest.raises(UsageError, match=r"TokenRefresh\.token_cache cannot be set"):
        auth.token_cache = None  # type: ignore[attr-defined]
    assert auth.credential is cred and auth.scopes == [SCOPE] and auth.cached_token is None
    assert cred.calls == 0


def test_made_without_arguments_it_names_the_default_credential_and_scope(monkeypatch: pytest.MonkeyPatch) -> None:
    auth = TokenRefresh()
    assert auth.scopes == [DEFAULT_SCOPE]
    assert isinstance(auth.credential, DefaultAzureCredential)  # the one the library made, and uses
    assert auth.credential is auth.cache.credential
