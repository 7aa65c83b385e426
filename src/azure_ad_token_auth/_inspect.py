"""`azure-ad-token-auth token`: get a token and show what it is, without showing it.

The pieces are separate so they can be tested alone: `acquire()` asks a credential
through a `TokenCache`; `decode_claims()`, `build_report()` and `render_table()` are pure
functions over what came back; the likely fix of a failure is `_advice.explain_failure()`.
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

from ._advice import CREDENTIALS, explain_failure
from ._cache import CacheStatus, TokenCache, fingerprint
from ._claims import decode_claims
from .testing._guard import is_loopback

if TYPE_CHECKING:
    from azure.core.credentials import AccessTokenInfo, SupportsTokenInfo, TokenRequestOptions

__all__ = [
    "Acquired",
    "acquire",
    "build_report",
    "decode_claims",
    "quiet_azure_logs",
    "render_table",
    "run_token",
]

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
