"""The token inspector's pure parts: the likely fix for each kind of failure, the report and table."""

from __future__ import annotations

import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import CredentialUnavailableError

from azure_ad_token_auth import InvalidTokenError, TokenAcquisitionTimeout, TokenCache
from azure_ad_token_auth._advice import _UNAVAILABLE_FIX, explain_failure
from azure_ad_token_auth._inspect import (
    Acquired,
    _Recorder,
    build_report,
    render_table,
)
from azure_ad_token_auth.testing import FakeCredential, TokenRegistry

SCOPE = "https://cognitiveservices.azure.com/.default"


@pytest.mark.parametrize(
    ("error", "kind", "scope", "fix"),
    [
        (ClientAuthenticationError("AADSTS50076: MFA required"), "cli", SCOPE, "sign in again"),
        (TokenAcquisitionTimeout("no answer in 60 s"), "cli", SCOPE, "did not answer"),
        (InvalidTokenError("expires_on is not a number"), "cli", SCOPE, "unusable token"),
        (CredentialUnavailableError("az not found"), "cli", SCOPE, _UNAVAILABLE_FIX["cli"]),
        (ValueError("AZURE_TENANT_ID missing"), "workload-identity", SCOPE, _UNAVAILABLE_FIX["workload-identity"]),
        (
            ClientAuthenticationError(
                "DefaultAzureCredential failed to retrieve a token from the included credentials"
            ),
            "default",
            SCOPE,
            _UNAVAILABLE_FIX["default"],
        ),
        (CredentialUnavailableError("no"), "some-new-kind", SCOPE, _UNAVAILABLE_FIX["default"]),
        (ClientAuthenticationError("AADSTS90002: Tenant not found"), "cli", "https://x", "az login --tenant"),
        (ClientAuthenticationError("invalid_scope"), "cli", "https://x/.default", "check --scope"),
        (RuntimeError("boom"), "cli", "https://x", "has no '/.default' suffix"),
        (RuntimeError("boom"), "cli", SCOPE, "az account get-access-token"),
    ],
)
def test_each_failure_gets_its_likely_fix(error: BaseException, kind: str, scope: str, fix: str) -> None:
    what, hint = explain_failure(error, kind, scope)
    assert what.startswith(type(error).__name__ + ": ")
    assert fix in hint


def test_an_error_without_a_message_is_named_by_its_type() -> None:
    assert explain_failure(RuntimeError(), "cli", SCOPE)[0] == "RuntimeError: RuntimeError"


def test_a_credential_without_get_token_info_is_asked_with_get_token() -> None:
    class OldCredential:  # azure-identity < 1.18
        def __init__(self) -> None:
            self.calls: list[tuple[tuple[str, ...], dict[str, object]]] = []

        def get_token(self, *scopes: str, **kwargs: object) -> AccessToken:
            self.calls.append((scopes, kwargs))
            return AccessToken("opaque-token-value", 2_000_000_000)

    old = OldCredential()
    recorder = _Recorder(old)
    info = recorder.get_token_info(SCOPE, options={"tenant_id": "contoso"})
    assert info.token == "opaque-token-value"
    assert old.calls == [((SCOPE,), {"tenant_id": "contoso"})]
    assert recorder.refresh_on is None  # get_token carries no refresh_on


def test_report_notes_a_scope_without_default_and_joins_list_claims() -> None:
    registry = TokenRegistry()
    token, _ = registry.issue(600, claims={"roles": ["Reader", "Writer"], "upn": "ada@example.com"})
    cache = TokenCache(FakeCredential(result=lambda: AccessToken(token, 2_000_000_000)))
    acquired = Acquired(cache.get_token(), FakeCredential(), None, cache.status())
    report = build_report(acquired, "api://x")
    assert any("does not end in '/.default'" in note for note in report["notes"])
    table = render_table(report)
    assert "Reader Writer  (roles)" in table
    assert "ada@example.com  (upn)" in table
    assert token not in table
