"""`azure-ad-token-auth demo`: the cookbook's completion, through this package's auth."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from ._cache import DEFAULT_SCOPE, TokenCache
from ._openai import install_openai_session, openai_major_version, uninstall_openai_session

PROMPT = "The food was delicious and the waiter"
DEPLOYMENT = "gpt-35-turbo-instruct"


def _complete(openai: ModuleType, major: int, deployment: str) -> str:
    """One completion, the cookbook's way for the installed openai."""
    if major == 0:
        response: Any = openai.Completion.create(deployment_id=deployment, prompt=PROMPT, max_tokens=10)
    else:
        response = openai.completions.create(model=deployment, prompt=PROMPT, max_tokens=10)
    return str(response.choices[0].text)


def _configure(openai: ModuleType, major: int, endpoint: str, api_version: str) -> None:
    openai.__dict__["api_base" if major == 0 else "azure_endpoint"] = endpoint
    openai.__dict__["api_version"] = api_version


CREDENTIALS = ("app-service", "workload-identity", "service-principal", "imds", "cli")
"""`demo --credential` choices: which azure-identity credential gets tokens, from which stand-in."""


@dataclass(frozen=True)
class _Identity:
    """The identity side of a demo run: what answers, how it is counted, the credential asking it."""

    description: str
    requests: Callable[[], int]
    unit: str
    credential: Any


def _identity(kind: str, lifetime: float, registry: Any, stack: contextlib.ExitStack) -> _Identity:
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
        return _Identity(f"{name} -> Entra ID at {entra.token_url}", lambda: entra.calls, "token requests", credential)
    if kind == "imds":
        imds = stack.enter_context(ImdsEndpoint(registry=registry, lifetime=lifetime))
        stack.enter_context(imds.patched_env())
        return _Identity(
            f"ManagedIdentityCredential -> IMDS at {imds.url}",
            lambda: imds.calls,
            "IMDS requests",
            azure.identity.ManagedIdentityCredential(),
        )
    if kind == "cli":
        az = stack.enter_context(FakeAzureCli(registry=registry, lifetime=lifetime))
        stack.enter_context(az.patched_env())
        return _Identity(
            f"AzureCliCredential -> az at {az.bin_dir}", lambda: az.runs, "az runs", azure.identity.AzureCliCredential()
        )
    identity = stack.enter_context(ManagedIdentityEndpoint(registry=registry, lifetime=lifetime))
    stack.enter_context(identity.patched_env())
    return _Identity(
        f"DefaultAzureCredential -> App Service managed identity at {identity.url}",
        lambda: identity.calls,
        "managed-identity requests",
        azure.identity.DefaultAzureCredential(),
    )


def run_demo(args: argparse.Namespace) -> int:
    try:
        openai = importlib.import_module("openai")
    except ImportError:
        print("The demo needs openai: pip install 'azure-ad-token-auth[openai]' (or openai==0.28.1)", file=sys.stderr)
        return 2
    major = openai_major_version(openai)
    if args.endpoint and not args.deployment:
        print("--endpoint needs --deployment", file=sys.stderr)
        return 2
    if args.requests < 1:
        print("--requests must be at least 1", file=sys.stderr)
        return 2
    if args.endpoint and args.credential:
        print(
            "--credential chooses a loopback stand-in; with --endpoint the DefaultAzureCredential of "
            "your environment is used",
            file=sys.stderr,
        )
        return 2
    if getattr(args, "workers", 0):
        from ._demo_fleet import run_fleet_demo

        return run_fleet_demo(args)

    real = bool(args.endpoint)
    with contextlib.ExitStack() as stack:
        identity: _Identity | None = None
        service: Any = None
        if real:
            from azure.identity import DefaultAzureCredential

            endpoint = args.endpoint
            credential: Any = DefaultAzureCredential()
            print(f"Azure OpenAI at {endpoint}, deployment {args.deployment}, openai {openai.__version__}")
        else:
            from .testing import AzureOpenAIStandIn, TokenRegistry

            # Tokens far shorter than the 5-minute margin: the cache renews them at half-life
            # (see TokenCache), so a few seconds show several renewals.
            registry = TokenRegistry()
            identity = _identity(args.credential or "app-service", args.token_lifetime, registry, stack)
            service = stack.enter_context(AzureOpenAIStandIn(registry=registry))
            endpoint, credential = service.base_url, identity.credential
            print(
                f"Loopback stand-ins: Azure OpenAI at {endpoint}; {identity.description} "
                f"(tokens live {args.token_lifetime:g} s); openai {openai.__version__}"
            )
        cache = TokenCache(credential, DEFAULT_SCOPE)
        _configure(openai, major, endpoint, args.api_version)
        install_openai_session(cache, openai_module=openai)
        stack.callback(uninstall_openai_session, openai)
        deployment = args.deployment or DEPLOYMENT
        print(f'Prompt: "{PROMPT}"\n')
        seen: str | None = None
        for number in range(1, args.requests + 1):
            before = cache.status()
            started = time.perf_counter()
            text = _complete(openai, major, deployment)
            elapsed = (time.perf_counter() - started) * 1000
            after = cache.status()
            print(PROMPT + text)
            used = service.requests[-1].token_fingerprint if service is not None else after.fingerprint
            held = before if before.fingerprint == used else after
            expires = f"{held.expires_on - time.time():5.1f} s" if held.expires_on else "?"
            note = ""
            if used != seen:
                note = "  <- first token" if seen is None else "  <- refreshed token"
                seen = used
            elif after.refreshes > before.refreshes:
                note = "  (still valid; a new token was fetched in the background)"
            print(f"  request {number:2}: token {used}  expires in {expires}  {elapsed:6.1f} ms{note}")
            if number < args.requests:
                time.sleep(args.interval)
        status = cache.status()
        print(
            f"\nSummary: {args.requests} requests, {status.refreshes} tokens "
            f"({max(status.refreshes - 1, 0)} refreshes), {status.credential_calls} credential calls"
            + (f", {identity.requests()} {identity.unit}" if identity is not None else "")
        )
        if service is not None:
            bad = [r for r in service.requests if r.token_status != "valid"]
            print(
                f"The stand-in checked every request: {len(service.requests) - len(bad)} carried a valid token, "
                f"{len(bad)} did not."
            )
            return 1 if bad else 0
    return 0
