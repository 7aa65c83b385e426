"""What a credential's failure most likely needs, said once: the CLI prints it, Python code gets a note.

`explain_failure()` reads a credential's error (AADSTS codes, azure-identity's classes) and names
the likely fix; `token` and `demo` print it under the error. For Python code, `credential_call()`
wraps each call the library makes to a credential:

- an error it raises carries the same fix as an exception note (`add_note`, Python 3.11+: shown
  under the message in a traceback). On 3.10, which has no `add_note`, the note goes to
  `__notes__` all the same, the attribute 3.11 reads: pytest and the `exceptiongroup` backport
  show it there, a bare 3.10 traceback does not. The message itself is left as the credential
  made it (callers match on it);
- azure-identity logs each failure at WARNING as it raises it. With logging not configured,
  Python's last-resort handler prints that record to stderr, and the traceback then prints the
  same message again: azure's records logged during the library's own credential call are left
  out of the last-resort handler (a filter on `logging.lastResort`, public in `logging`). A
  program that configures logging gets them in its handlers as before.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import re
from collections.abc import Iterator, Mapping

from ._clouds import DEFAULT_SCOPE
from ._errors import InvalidTokenError, TokenAcquisitionTimeout

__all__ = ["CREDENTIALS", "add_fix", "credential_call", "described", "explain_failure", "is_unavailable"]

CREDENTIALS: Mapping[str, str] = {
    "default": "DefaultAzureCredential",
    "cli": "AzureCliCredential",
    "managed-identity": "ManagedIdentityCredential",
    "environment": "EnvironmentCredential",
    "workload-identity": "WorkloadIdentityCredential",
}
"""`--credential` choices and the azure-identity class each one creates."""

_KINDS = {name: kind for kind, name in CREDENTIALS.items()}

# AADSTS codes that point at one cause. Tenant codes: the identity or app is not in the
# tenant asked for, or the tenant does not exist.
_TENANT_CODES = {"AADSTS50020", "AADSTS700016", "AADSTS90002", "AADSTS50128", "AADSTS50059", "AADSTS90072"}
_SCOPE_CODES = {"AADSTS500011", "AADSTS70011", "AADSTS1002012", "AADSTS650057", "AADSTS28000", "AADSTS28003"}
_SECRET_CODES = {"AADSTS7000215", "AADSTS7000222", "AADSTS700027", "AADSTS700024", "AADSTS70021"}
_SIGN_IN_CODES = {"AADSTS50076", "AADSTS50079", "AADSTS700082", "AADSTS50173", "AADSTS50078"}

_UNAVAILABLE_FIX: Mapping[str, str] = {
    "default": (
        "sign in with `az login` (or `azd auth login`), set AZURE_TENANT_ID, AZURE_CLIENT_ID and "
        "AZURE_CLIENT_SECRET for a service principal, or run where a managed identity is enabled; "
        "each attempt above says why it was skipped"
    ),
    "cli": "install the Azure CLI and run `az login` (add `--tenant <tenant>` for another tenant)",
    "managed-identity": (
        "run on an Azure host with a managed identity enabled (App Service sets IDENTITY_ENDPOINT and "
        "IDENTITY_HEADER; VMs use IMDS); for a user-assigned identity set AZURE_CLIENT_ID"
    ),
    "environment": (
        "set AZURE_TENANT_ID and AZURE_CLIENT_ID, plus AZURE_CLIENT_SECRET (or AZURE_CLIENT_CERTIFICATE_PATH)"
    ),
    "workload-identity": (
        "run in a pod with Azure workload identity enabled: it sets AZURE_FEDERATED_TOKEN_FILE, "
        "AZURE_CLIENT_ID and AZURE_TENANT_ID"
    ),
}


def explain_failure(error: BaseException, kind: str, scope: str) -> tuple[str, str]:
    """`(what failed, likely fix)` for an error from `acquire()`."""
    name = type(error).__name__
    message = str(error).strip() or name
    what = f"{name}: {message}"
    codes = set(re.findall(r"AADSTS\d+", message))
    scope_hint = (
        f"the scope {scope!r} has no '/.default' suffix; app-only and managed-identity tokens need "
        f"'<resource>/.default', e.g. {DEFAULT_SCOPE}"
        if not scope.endswith("/.default")
        else None
    )
    if codes & _TENANT_CODES:
        fix = (
            "the identity or app does not belong to the tenant that was asked (or the tenant does not exist): "
            "check AZURE_TENANT_ID and the app's tenant, or `az login --tenant <tenant id>`"
        )
    elif codes & _SCOPE_CODES or "invalid_scope" in message:
        fix = scope_hint or (
            f"check --scope: the resource {scope.removesuffix('/.default')!r} must exist in your tenant "
            f"(Azure OpenAI uses {DEFAULT_SCOPE}); a managed-identity endpoint also answers this way when a "
            "user-assigned identity is meant and AZURE_CLIENT_ID is not set"
        )
    elif codes & _SECRET_CODES:
        fix = "the app's secret, certificate or federated credential was rejected: check or renew it"
    elif codes & _SIGN_IN_CODES:
        fix = "the sign-in has expired or needs MFA: sign in again (`az login`)"
    elif isinstance(error, TokenAcquisitionTimeout):
        fix = "the credential did not answer: check network access to the identity endpoint (proxies, firewalls)"
    elif isinstance(error, InvalidTokenError):
        fix = "the credential returned an unusable token: upgrade azure-identity, or report it"
    elif is_unavailable(error):
        fix = _UNAVAILABLE_FIX.get(kind, _UNAVAILABLE_FIX["default"])
    elif scope_hint is not None:
        fix = scope_hint
    else:
        fix = "see the message above; `az account get-access-token --scope <scope>` may tell more"
    return what, fix


def is_unavailable(error: BaseException) -> bool:
    from azure.core.exceptions import ClientAuthenticationError
    from azure.identity import CredentialUnavailableError

    if isinstance(error, (ValueError, CredentialUnavailableError)):
        return True  # a ValueError: a credential that cannot be created without its settings
    # DefaultAzureCredential reports "every member unavailable" as a plain
    # ClientAuthenticationError listing the attempts.
    return isinstance(error, ClientAuthenticationError) and "failed to retrieve a token from the included" in str(error)


# True while this context runs one of the library's credential calls.
_CALLING: contextvars.ContextVar[bool] = contextvars.ContextVar("azure_ad_token_auth_credential_call", default=False)


class _SaidOnce(logging.Filter):
    """On the last-resort handler: azure's records of a failure the caller gets raised anyway."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (_CALLING.get() and record.name.split(".", 1)[0] == "azure")


_FILTER = _SaidOnce()


@contextlib.contextmanager
def credential_call(credential: object, scopes: tuple[str, ...]) -> Iterator[None]:
    """Around one call to `credential`: its error gets the likely fix as a note, and its
    message is printed once (see the module's docstring)."""
    last_resort = logging.lastResort
    if last_resort is not None and _FILTER not in last_resort.filters:
        last_resort.addFilter(_FILTER)
    mark = _CALLING.set(True)
    try:
        yield
    except Exception as error:
        kind = _KINDS.get(type(credential).__name__, "default")
        add_fix(error, explain_failure(error, kind, scopes[0] if scopes else DEFAULT_SCOPE)[1])
        raise
    finally:
        _CALLING.reset(mark)


def described(error: BaseException | None) -> str:
    """`error`'s class and the likely fix noted on it, for the WARNING of a renewal that failed
    while a valid token is kept: no caller sees that error, nor the azure record of it (above)."""
    notes = getattr(error, "__notes__", None)
    fixes = [note for note in notes if isinstance(note, str) and note.startswith("likely fix: ")] if notes else []
    return type(error).__name__ + (f"; {fixes[-1]}" if fixes else "")


def add_fix(error: BaseException, fix: str) -> None:
    """`fix` as a note on `error`, once however often the credential raises that same object."""
    note = f"likely fix: {fix}"
    notes = getattr(error, "__notes__", None)
    if isinstance(notes, list) and note in notes:
        return
    add_note = getattr(error, "add_note", None)
    with contextlib.suppress(AttributeError, TypeError):  # an exception type that takes no attributes: no note
        if callable(add_note):
            add_note(note)
        else:  # Python 3.10; setattr: typeshed declares `__notes__` from 3.11 on
            setattr(error, "__notes__", [*(notes if isinstance(notes, list) else ()), note])  # noqa: B010
