"""What both demos (one process, `--workers`) share: the stand-ins, the completion, the errors.

`start_identity` starts the loopback stand-in of an identity service and builds the
real azure-identity credential that asks it; `complete` runs the cookbook's completion
the way the installed openai does it; `user_error` turns what a user can fix (an http
endpoint, a missing package, no credential, an unreachable endpoint) into one or two
lines instead of a traceback.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from ._errors import InsecureTransportError, InvalidTokenError, TokenAcquisitionTimeout

__all__ = [
    "DEMO_CREDENTIALS",
    "DEPLOYMENT",
    "PROMPT",
    "Identity",
    "complete",
    "configure",
    "elapsed_ms",
    "progress",
    "start_identity",
    "stderr",
    "user_error",
]

PROMPT = "The food was delicious and the waiter"
DEPLOYMENT = "gpt-35-turbo-instruct"

DEMO_CREDENTIALS = ("app-service", "workload-identity", "service-principal", "imds", "cli")
"""`demo --credential` choices: which azure-identity credential gets tokens, from which stand-in."""


def progress(message: str) -> None:
    """A set-up step that may take a second or more: say so before it starts."""
    print(f"[demo] {message}", flush=True)


def complete(openai: ModuleType, major: int, deployment: str, client: Any = None) -> str:
    """One completion: through `client` (openai >= 1), else openai's module-level API."""
    if client is not None:
        response: Any = client.completions.create(model=deployment, prompt=PROMPT, max_tokens=10)
    elif major == 0:
        response = openai.Completion.create(deployment_id=deployment, prompt=PROMPT, max_tokens=10)
    else:
        response = openai.completions.create(model=deployment, prompt=PROMPT, max_tokens=10)
    return str(response.choices[0].text)


def configure(openai: ModuleType, major: int, endpoint: str, api_version: str) -> None:
    """Point openai's module-level API at `endpoint` (the cookbook's way)."""
    openai.__dict__["api_base" if major == 0 else "azure_endpoint"] = endpoint
    openai.__dict__["api_version"] = api_version


@dataclass(frozen=True)
class Identity:
    """The identity side of a demo run: what answers, how its requests are counted, the credential."""

    description: str
    requests: Callable[[], int]
    unit: str
    credential: Any


def start_identity(kind: str, lifetime: float, registry: Any, stack: contextlib.ExitStack) -> Identity:
    """Start the stand-in for `kind`, point the environment at it, and build the real credential."""
    import azure.identity

    from .testing import EntraIdStandIn, FakeAzureCli, ImdsEndpoint, ManagedIdentityEndpoint, patched_environ

    if kind in ("workload-identity", "service-principal"):
        entra = stack.enter_context(EntraIdStandIn(registry=registry, lifetime=lifetime))
        if kind == "workload-identity":
            stack.enter_context(patched_environ(entra.env("workload-identity")))
            # Reads AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_FEDERATED_TOKEN_FILE and AZURE_AUTHORITY_HOST;
            # MSAL must not ask login.microsoftonline.com about a loopback authority.
            credential: Any = azure.identity.WorkloadIdentityCredential(disable_instance_discovery=True)
            name = "WorkloadIdentityCredential (federated token file)"
        else:
            stack.enter_context(patched_environ(entra.env("secret")))
            credential = azure.identity.ClientSecretCredential(
                entra.tenant,
                entra.client_id,
                entra.client_secret,
                authority=entra.authority,
                disable_instance_discovery=True,
            )
            name = "ClientSecretCredential"
        return Identity(f"{name} -> Entra ID at {entra.token_url}", lambda: entra.calls, "token requests", credential)
    if kind == "imds":
        imds = stack.enter_context(ImdsEndpoint(registry=registry, lifetime=lifetime))
        stack.enter_context(imds.patched_env())
        return Identity(
            f"ManagedIdentityCredential -> IMDS at {imds.url}",
            lambda: imds.calls,
            "IMDS requests",
            azure.identity.ManagedIdentityCredential(),
        )
    if kind == "cli":
        az = stack.enter_context(FakeAzureCli(registry=registry, lifetime=lifetime))
        stack.enter_context(az.patched_env())
        return Identity(
            f"AzureCliCredential -> az at {az.bin_dir}", lambda: az.runs, "az runs", azure.identity.AzureCliCredential()
        )
    identity = stack.enter_context(ManagedIdentityEndpoint(registry=registry, lifetime=lifetime))
    stack.enter_context(identity.patched_env())
    return Identity(
        f"DefaultAzureCredential -> App Service managed identity at {identity.url}",
        lambda: identity.calls,
        "managed-identity requests",
        azure.identity.DefaultAzureCredential(),
    )


def _root_cause(error: BaseException) -> BaseException:
    """The error behind the wrappers (openai wraps what its transport raised)."""
    seen = {id(error)}
    while True:
        inner = error.__cause__ or error.__context__
        if inner is None or id(inner) in seen:
            return error
        seen.add(id(inner))
        if type(error).__module__.startswith(("openai", "httpx", "httpx2")):
            error = inner
        else:
            return error


def user_error(error: BaseException, endpoint: str, scope: str) -> str | None:
    """One or two lines for an error the user can fix, or None for a bug (shown as a traceback)."""
    from ._advice import explain_failure, is_unavailable

    cause = _root_cause(error)
    if isinstance(cause, InsecureTransportError):
        return f"{cause}\n  Likely fix: use the https endpoint (https://<resource>.openai.azure.com)"
    if isinstance(cause, ImportError):
        missing = getattr(cause, "name", None) or getattr(cause.__cause__, "name", None)
        if missing:
            return (
                f"this demo needs the package {missing!r}, which is not installed\n  Likely fix: pip install {missing}"
            )
        return str(cause)  # our own ImportErrors name the package and the install
    if isinstance(cause, (TokenAcquisitionTimeout, InvalidTokenError)) or is_unavailable(cause) or _is_auth(cause):
        what, fix = explain_failure(cause, "default", scope)
        first = what.strip().splitlines()[0]
        # The demo shows the first line only: the attempts listed below it are not shown.
        fix = fix.replace("; each attempt above says why it was skipped", " (--verbose lists each attempt)")
        return f"no token for {scope}: {first}\n  Likely fix: {fix}"
    unreachable = type(error).__name__ in ("APIConnectionError", "APITimeoutError")
    if unreachable or isinstance(cause, (ConnectionError, OSError)):
        fix = "check the endpoint, the network and any proxy"
        return f"cannot reach {endpoint}: {type(cause).__name__}\n  Likely fix: {fix}"
    return None


def _is_auth(error: BaseException) -> bool:
    with contextlib.suppress(ImportError):
        from azure.core.exceptions import ClientAuthenticationError

        return isinstance(error, ClientAuthenticationError)
    return False


def elapsed_ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def stderr(message: str) -> None:
    print(f"azure-ad-token-auth demo: {message}", file=sys.stderr)
