"""A failure says it once: a credential's error reaches the caller with the likely fix the CLI
prints as an exception note, and its message is not printed a second time by azure-identity's
log record when no logging is configured."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from azure.identity import CredentialUnavailableError, EnvironmentCredential
from azure.identity.aio import EnvironmentCredential as AsyncEnvironmentCredential

from azure_ad_token_auth import TokenCache
from azure_ad_token_auth._advice import _UNAVAILABLE_FIX
from azure_ad_token_auth.testing import FakeCredential
from conftest import child_pythonpath

ROOT = Path(__file__).resolve().parents[2]
SCOPE = "https://cognitiveservices.azure.com/.default"
ENVIRONMENT_FIX = f"likely fix: {_UNAVAILABLE_FIX['environment']}"


def _notes(error: BaseException) -> object:
    return vars(error).get("__notes__")  # read as on any Python (typeshed declares it from 3.11 on)


@pytest.fixture
def no_azure_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [name for name in os.environ if name.startswith(("AZURE_", "IDENTITY_", "MSI_"))]:
        monkeypatch.delenv(name)


@pytest.mark.usefixtures("no_azure_environment")
def test_a_credential_error_carries_the_clis_likely_fix_as_a_note_once() -> None:
    cache = TokenCache(EnvironmentCredential(), SCOPE)
    with pytest.raises(CredentialUnavailableError) as first:
        cache.get_token()
    assert _notes(first.value) == [ENVIRONMENT_FIX]
    assert "likely fix" not in str(first.value)  # the message stays as the credential made it
    with pytest.raises(CredentialUnavailableError) as again:  # the held error, re-raised within the backoff
        cache.get_token()
    assert again.value is first.value and _notes(again.value) == [ENVIRONMENT_FIX]


@pytest.mark.usefixtures("no_azure_environment")
async def test_an_async_credentials_error_carries_the_note_too() -> None:
    async with AsyncEnvironmentCredential() as credential:
        with pytest.raises(CredentialUnavailableError) as raised:
            await TokenCache(credential, SCOPE).get_token_async()
    assert _notes(raised.value) == [ENVIRONMENT_FIX]


class _NoAddNote(RuntimeError):
    add_note = None  # type: ignore[assignment, unused-ignore]  # as on Python 3.10: no add_note


def test_without_add_note_the_note_is_in___notes___as_python_3_11_keeps_it() -> None:
    error = _NoAddNote("AADSTS7000215: Invalid client secret provided")
    cache = TokenCache(FakeCredential(fail=error), SCOPE)
    with pytest.raises(_NoAddNote):
        cache.get_token()
    assert _notes(error) == [
        "likely fix: the app's secret, certificate or federated credential was rejected: check or renew it"
    ]


FAILING = """\
import logging, sys
from azure.identity import EnvironmentCredential
from azure_ad_token_auth import TokenCache
if sys.argv[1] == "configured":
    logging.basicConfig(stream=sys.stderr)
TokenCache(EnvironmentCredential(), "https://cognitiveservices.azure.com/.default").get_token()
"""


def _stderr(logging: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "IDENTITY_", "MSI_"))}
    env["PYTHONPATH"] = child_pythonpath(str(ROOT / "src"))
    result = subprocess.run(
        [sys.executable, "-c", FAILING, logging], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    assert result.returncode == 1 and "CredentialUnavailableError" in result.stderr, result.stderr
    return result.stderr


def test_with_logging_not_configured_a_credentials_failure_prints_its_message_once() -> None:
    stderr = _stderr("not configured")
    assert stderr.count("Environment variables are not fully configured") == 1, stderr
    if sys.version_info >= (3, 11):  # 3.10's traceback prints no notes (they are in __notes__, tested above)
        assert stderr.rstrip().endswith(ENVIRONMENT_FIX), stderr  # the note, under the message


def test_a_program_that_configures_logging_still_gets_azure_identitys_record() -> None:
    stderr = _stderr("configured")
    assert "WARNING:azure.identity" in stderr and "EnvironmentCredential.get_token_info failed" in stderr, stderr
    assert stderr.count("Environment variables are not fully configured") == 2, stderr


def test_a_renewal_failing_behind_a_valid_token_says_its_likely_fix_in_the_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """No caller sees that error, and azure-identity's record of it is left out of the last-resort
    handler: the library's own WARNING is where the cause shows."""
    import time

    import time_machine
    from azure.core.exceptions import ClientAuthenticationError

    credential = FakeCredential(lifetime=600)
    cache = TokenCache(credential, SCOPE, background_refresh=False)
    held = cache.get_token()
    credential.fail = ClientAuthenticationError("AADSTS7000222: The provided client secret keys are expired")
    with time_machine.travel(time.time() + 500, tick=True), caplog.at_level("WARNING", logger="azure_ad_token_auth"):
        assert cache.get_token() == held  # due for renewal, which fails: the valid token goes on
    (warning,) = [record.getMessage() for record in caplog.records if "renewal failed" in record.getMessage()]
    assert "ClientAuthenticationError; likely fix: " in warning and held not in warning
