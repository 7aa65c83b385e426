"""`azure-ad-token-auth token`: get a token and show what it is, without showing it.

The pieces are separate so they can be tested alone: `acquire()` asks a credential
through a `TokenCache`; `decode_claims()`, `build_report()`, `render_table()` and
`explain_failure()` are pure functions over what came back.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, TextIO, cast
from urllib.parse import urlsplit

from ._cache import CacheStatus, TokenCache, fingerprint
from ._claims import decode_claims
from ._clouds import DEFAULT_SCOPE
from ._errors import InvalidTokenError, TokenAcquisitionTimeout
from .testing._guard import is_loopback

if TYPE_CHECKING:
    from azure.core.credentials import AccessTokenInfo, SupportsTokenInfo, TokenRequestOptions

__all__ = [
    "CREDENTIALS",
    "Acquired",
    "acquire",
    "build_report",
    "decode_claims",
    "explain_failure",
    "is_unavailable",
    "quiet_azure_logs",
    "render_table",
    "run_token",
]

CREDENTIALS: Mapping[str, str] = {
    "default": "DefaultAzureCredential",
    "cli": "AzureCliCredential",
    "managed-identity": "ManagedIdentityCredential",
    "environment": "EnvironmentCredential",
    "workload-identity": "WorkloadIdentityCredential",
}
"""`--credential` choices and the azure-identity class each one creates."""

# The claims worth showing, in display order; the rest of the payload stays unprinted.
CLAIMS = ("aud", "tid", "oid", "appid", "azp", "upn", "unique_name", "preferred_username", "scp", "roles", "iat")


@dataclass(frozen=True)
class Acquired:
    """What `acquire()` got: the token (not in its repr), who answered, and the cache's plan."""

    token: str = field(repr=False)
    credential: Any
    refresh_on: float | None
    status: CacheStatus
    answered_by: tuple[str, ...] = ()
    """Class names from the credential asked down to the chain member that answered (`_AnswerLog`)."""


class _Recorder:
    """Forwards to a credential and keeps the `refresh_on` it returned.

    The `TokenCache` keeps `refresh_on` to itself; the report shows it.
    """

    def __init__(self, credential: Any) -> None:
        self.credential = credential
        self.refresh_on: float | None = None

    def get_token_info(self, *scopes: str, options: TokenRequestOptions | None = None) -> AccessTokenInfo:
        method = getattr(self.credential, "get_token_info", None)
        if callable(method):
            info: AccessTokenInfo = method(*scopes, options=options)
        else:  # azure-identity < 1.18: no get_token_info, no refresh_on
            info = self.credential.get_token(*scopes, **dict(options or {}))
        refresh_on = getattr(info, "refresh_on", None)
        self.refresh_on = float(refresh_on) if isinstance(refresh_on, (int, float)) else None
        return info


def acquire(kind: str, scope: str, *, timeout: float = 60.0) -> Acquired:
    """Get a token for `scope` from the credential `kind` names, through a `TokenCache`.

    Raises whatever the credential raises (and `ValueError` when it cannot even be
    created, as `WorkloadIdentityCredential` without its variables).
    """
    import azure.identity

    options: dict[str, Any] = {}
    if kind in _ENTRA_KINDS and _loopback_authority():
        # Instance discovery asks login.microsoftonline.com whether an authority is genuine:
        # pointless for one on this machine (a stand-in), and a request off the machine.
        options["disable_instance_discovery"] = True
    with _answer_log() as answers:  # a managed identity says where it runs when it is made
        credential = getattr(azure.identity, CREDENTIALS[kind])(**options)
    try:
        recorder = _Recorder(credential)
        # cast: a recorder is no context manager, which the protocol asks for and the cache never uses
        # shared_cache=False: the command shows what this credential answers, never a
        # token another process (or another identity) left in the shared store.
        cache = TokenCache(cast("SupportsTokenInfo", recorder), scope, timeout=timeout, shared_cache=False)
        with _answer_log() as answered:
            token = cache.get_token()
        answered.hosting.update(answers.hosting)
        return Acquired(token, credential, recorder.refresh_on, cache.status(), answered.path(credential))
    finally:
        close = getattr(credential, "close", None)
        if callable(close):
            with contextlib.suppress(Exception):
                close()


_ENTRA_KINDS = frozenset({"default", "environment", "workload-identity"})


def _loopback_authority() -> bool:
    """Whether `AZURE_AUTHORITY_HOST` names this machine (localhost or a loopback address)."""
    host = urlsplit(os.environ.get("AZURE_AUTHORITY_HOST", "").strip()).hostname
    return host is not None and is_loopback(host)


class _AnswerLog(logging.Handler):
    """Who answered, as azure-identity itself says it in its INFO log (no private state read):
    a chain's "DefaultAzureCredential acquired a token from <member>", and a managed identity's
    "ManagedIdentityCredential will use <hosting environment>". A release that words them
    otherwise only shortens the path shown."""

    _ANSWERED = re.compile(r"(\w+) acquired a token from (\w+)")
    _HOSTED = re.compile(r"(ManagedIdentityCredential) will use (.+)")

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.members: list[str] = []
        self.hosting: dict[str, str] = {}

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):  # a record we cannot format is no answer
            message = record.getMessage()
            answered = self._ANSWERED.fullmatch(message)
            if answered is not None:
                self.members.append(answered[2])
            hosted = self._HOSTED.fullmatch(message)
            if hosted is not None:
                self.hosting[hosted[1]] = hosted[2]

    def path(self, credential: Any) -> tuple[str, ...]:
        """Class names from the credential asked down to the one that answered, then where a
        managed identity ran (as azure-identity names it)."""
        path = [type(credential).__name__, *self.members[-1:]]
        hosting = self.hosting.get(path[-1])
        return (*path, hosting) if hosting is not None else tuple(path)


@contextlib.contextmanager
def _answer_log() -> Iterator[_AnswerLog]:
    """`_AnswerLog` on azure-identity's logger, at INFO while the block runs (then as it was)."""
    logger = logging.getLogger("azure.identity")
    handler = _AnswerLog()
    level = logger.level
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _local(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, tz=timezone.utc).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


def _relative(seconds: float) -> str:
    amount = abs(seconds)
    text = f"{amount:.0f} s" if amount < 90 else f"{amount / 60:.0f} min"
    return f"in {text}" if seconds >= 0 else f"{text} ago"


def _when(timestamp: float | None, now: float) -> dict[str, Any] | None:
    if timestamp is None:
        return None
    return {"epoch": int(timestamp), "local": _local(timestamp), "relative": _relative(timestamp - now)}


def build_report(acquired: Acquired, scope: str, *, show_token: bool = False) -> dict[str, Any]:
    """A JSON-ready description of a token. The token itself only with `show_token`."""
    now = time.time()
    path = list(acquired.answered_by) or [type(acquired.credential).__name__]
    claims = decode_claims(acquired.token)
    status = acquired.status
    notes: list[str] = []
    if claims is None:
        notes.append("not a JWT (an opaque or encrypted token): its claims cannot be read here")
    if not scope.endswith("/.default"):
        notes.append("the scope does not end in '/.default': most credentials need '<resource>/.default'")
    report: dict[str, Any] = {
        "scope": scope,
        # The chain member that answered, not the chain.
        "credential": path[1] if path[0] == "DefaultAzureCredential" and len(path) > 1 else path[0],
        "credential_path": path,
        "format": "opaque" if claims is None else "jwt",
        "fingerprint": fingerprint(acquired.token),
        "expires_on": _when(status.expires_on, now),
        "refresh_on": _when(acquired.refresh_on, now),
        "cache_renews": _when(status.refresh_at, now),
        "claims": None if claims is None else {name: claims[name] for name in CLAIMS if name in claims},
        "issued_at": _when(claims["iat"], now) if claims and isinstance(claims.get("iat"), (int, float)) else None,
        "notes": notes,
    }
    if show_token:
        report["token"] = acquired.token
    return report


def _first(claims: Mapping[str, Any], *names: str) -> str:
    for name in names:
        if name in claims:
            value = claims[name]
            if isinstance(value, list):
                value = " ".join(str(v) for v in value)
            return f"{value}  ({name})"
    return "-"


def _time_cell(when: Mapping[str, Any] | None, missing: str) -> str:
    return f"{when['local']} ({when['relative']})" if when else missing


def render_table(report: Mapping[str, Any]) -> str:
    """`build_report()`'s dict as aligned `label  value` lines."""
    path = report["credential_path"]
    rows: list[tuple[str, str]] = [
        ("Credential", report["credential"] + (f"  ({' > '.join(path)})" if len(path) > 1 else "")),
        ("Scope", report["scope"]),
        ("Token", f"{report['format'].upper()}, fingerprint {report['fingerprint']}"),
        ("Expires", _time_cell(report["expires_on"], "-")),
        ("Refresh on", _time_cell(report["refresh_on"], "- (the credential gave none)")),
        ("Cache renews", _time_cell(report["cache_renews"], "-")),
    ]
    claims = report["claims"]
    if claims is not None:
        rows += [
            ("Audience", _first(claims, "aud")),
            ("Tenant", _first(claims, "tid")),
            ("Object id", _first(claims, "oid")),
            ("App id", _first(claims, "appid", "azp")),
            ("User", _first(claims, "upn", "unique_name", "preferred_username")),
            ("Permissions", _first(claims, "scp", "roles")),
            ("Issued", _time_cell(report["issued_at"], "-")),
        ]
    rows += [("Note", note) for note in report["notes"]]
    rows.append(("Access token", report.get("token", "not shown (--show-token prints it)")))
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"{label:<{width}}  {value}" for label, value in rows)


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


@contextlib.contextmanager
def quiet_azure_logs() -> Iterator[None]:
    # azure-identity logs each failure at WARNING; with no logging configured Python
    # prints it to stderr, repeating the message we print ourselves.
    logger = logging.getLogger("azure")
    handler = logging.NullHandler()
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)


def run_token(
    scope: str,
    kind: str = "default",
    *,
    as_json: bool = False,
    show_token: bool = False,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """The `token` command: 0 on success, 1 when no token could be had, 2 for bad input."""
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    scope = scope.strip()
    if not scope:
        print("azure-ad-token-auth token: error: --scope must not be empty", file=err)
        return 2
    with quiet_azure_logs():
        try:
            acquired = acquire(kind, scope)
        except Exception as error:  # noqa: BLE001 - shown as a message, never a traceback
            what, fix = explain_failure(error, kind, scope)
            indented = what.replace("\n", "\n    ")
            print(
                f"azure-ad-token-auth token: no token for {scope} from {CREDENTIALS[kind]}.\n"
                f"  What failed: {indented}\n  Likely fix: {fix}",
                file=err,
            )
            return 1
    report = build_report(acquired, scope, show_token=show_token)
    print(json.dumps(report, indent=2) if as_json else render_table(report), file=out)
    return 0
