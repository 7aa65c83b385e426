"""`azure-ad-token-auth demo`: the cookbook's completion, through this package's auth."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import sys
import time
from collections.abc import Iterator
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


@contextlib.contextmanager
def _stand_ins(lifetime: float) -> Iterator[tuple[str, Any, Any]]:
    from .testing import AzureOpenAIStandIn, ManagedIdentityEndpoint, TokenRegistry

    registry = TokenRegistry()
    # Tokens far shorter than the 5-minute margin: the cache renews them at half-life
    # (see TokenCache), so a few seconds show several renewals.
    with contextlib.ExitStack() as stack:
        identity = stack.enter_context(ManagedIdentityEndpoint(registry=registry, lifetime=lifetime))
        service = stack.enter_context(AzureOpenAIStandIn(registry=registry))
        stack.enter_context(identity.patched_env())
        yield service.base_url, identity, service


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
    if getattr(args, "workers", 0):
        from ._demo_fleet import run_fleet_demo

        return run_fleet_demo(args, _stand_ins)
    from azure.identity import DefaultAzureCredential

    real = bool(args.endpoint)
    with contextlib.ExitStack() as stack:
        if real:
            endpoint, identity, service = args.endpoint, None, None
            print(f"Azure OpenAI at {endpoint}, deployment {args.deployment}, openai {openai.__version__}")
        else:
            endpoint, identity, service = stack.enter_context(_stand_ins(args.token_lifetime))
            print(
                f"Loopback stand-ins: Azure OpenAI at {endpoint}, managed identity at {identity.url} "
                f"(tokens live {args.token_lifetime:g} s); openai {openai.__version__}"
            )
        cache = TokenCache(DefaultAzureCredential(), DEFAULT_SCOPE)
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
            + (f", {identity.calls} managed-identity requests" if identity is not None else "")
        )
        if service is not None:
            bad = [r for r in service.requests if r.token_status != "valid"]
            print(
                f"The stand-in checked every request: {len(service.requests) - len(bad)} carried a valid token, "
                f"{len(bad)} did not."
            )
            return 1 if bad else 0
    return 0
