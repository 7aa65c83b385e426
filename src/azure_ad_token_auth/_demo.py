"""`azure-ad-token-auth demo`: the README's openai >= 1 recipe (or the cookbook's, on openai
0.28) end to end, on loopback stand-ins or a real resource, with a summary that adds up."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import time
from typing import Any

from ._cache import CacheStatus, TokenCache
from ._clouds import rule_for_url
from ._demo_setup import (
    DEMO_CREDENTIALS,
    DEPLOYMENT,
    PROMPT,
    Identity,
    complete,
    configure,
    elapsed_ms,
    progress,
    start_identity,
    stderr,
    user_error,
)
from ._inspect import quiet_azure_logs
from ._policy import HostPolicy

__all__ = ["DEMO_CREDENTIALS", "describe_scope", "run_demo", "summary"]

_RECIPE_V1 = (
    "client = AzureOpenAI(azure_endpoint=endpoint, api_version={api_version!r},\n"
    "                     azure_ad_token_provider=token_provider(endpoint=endpoint))"
)
_RECIPE_V0 = "openai.api_base = endpoint\ninstall_openai_session()  # the cookbook's TokenRefresh, installed"


def describe_scope(endpoint: str) -> tuple[str, str]:
    """The scope the demo asks for at `endpoint`, and why (which cloud's rule chose it)."""
    from urllib.parse import urlsplit

    from ._clouds import scope_for_url

    host = urlsplit(endpoint).hostname or ""
    scope = scope_for_url(endpoint)
    rule = rule_for_url(endpoint)
    if rule is None:
        return scope, f"{host or 'this host'} is no known Azure host: the public cloud's default"
    where = "host and path" if rule.path else "host"
    return scope, f"{rule.cloud}, from the endpoint's {where}"


def summary(
    requests: int, used: list[str], status: CacheStatus, identity: Identity | None, checked: tuple[int, int] | None
) -> list[str]:
    """The closing lines: each count named, and how the counts relate."""
    fetched, calls, failures = status.refreshes, status.credential_calls, status.failures
    same = max(calls - fetched - failures, 0)
    rows: list[tuple[str, str]] = []
    if checked is not None:
        good, bad = checked
        rows.append(("requests", f"{requests}; the stand-in checked each: {good} carried a valid token, {bad} did not"))
    else:
        rows.append(("requests", str(requests)))
    rows.append(("tokens used", f"{len(used)} ({', '.join(used)})"))
    unused = fetched - len(used)
    note = f"; {unused} of them renewed in the background and not needed before the demo ended" if unused > 0 else ""
    rows.append(("tokens fetched", f"{fetched} = 1 first + {max(fetched - 1, 0)} renewed ahead of expiry{note}"))
    parts = [f"{fetched} brought a new token"]
    if same:
        parts.append(f"{same} answered from azure-identity's own cache with the token already held")
    if failures:
        parts.append(f"{failures} failed")
    rows.append(("credential calls", f"{calls} = " + " + ".join(parts)))
    if identity is not None:
        rows.append((identity.unit, f"{identity.requests()}, counted by the stand-in"))
    width = max(len(label) for label, _ in rows) + 1
    return ["", "Summary", *(f"  {label + ':':<{width}} {text}" for label, text in rows)]


def run_demo(args: argparse.Namespace) -> int:
    """The `demo` command: 0 when every request carried a valid token, 1 on failure, 2 for bad input."""
    if args.endpoint and not args.deployment:
        stderr("--endpoint needs --deployment")
        return 2
    if args.requests < 1:
        stderr("--requests must be at least 1")
        return 2
    if args.endpoint and args.credential:
        stderr(
            "--credential chooses a loopback stand-in; with --endpoint the DefaultAzureCredential of "
            "your environment is used"
        )
        return 2
    endpoint = args.endpoint or ""
    scope = describe_scope(endpoint)[0] if endpoint else ""
    try:
        if endpoint:
            HostPolicy().check_url(endpoint)  # before anything is loaded or sent
        with quiet_azure_logs():
            if getattr(args, "workers", 0):
                from ._demo_fleet import run_fleet_demo

                return run_fleet_demo(args)
            return _run(args)
    except Exception as error:
        message = user_error(error, endpoint or "the stand-in", scope or "the scope")
        if message is None or getattr(args, "verbose", False):
            raise
        stderr(message + "  (--verbose shows the traceback)")
        return 1


def _run(args: argparse.Namespace) -> int:
    progress("loading openai and azure-identity ...")
    try:
        openai = importlib.import_module("openai")
    except ImportError:
        stderr("the demo needs openai: pip install 'azure-ad-token-auth[openai]' (or openai==0.28.1 for the cookbook)")
        return 2
    from ._openai import install_openai_session, openai_major_version, uninstall_openai_session
    from ._providers import token_provider

    major = openai_major_version(openai)
    with contextlib.ExitStack() as stack:
        identity: Identity | None = None
        service: Any = None
        if args.endpoint:
            from azure.identity import DefaultAzureCredential

            endpoint = args.endpoint
            credential: Any = DefaultAzureCredential()
            print(f"Azure OpenAI at {endpoint}, deployment {args.deployment}; openai {openai.__version__}")
            print("Identity: DefaultAzureCredential of this environment")
        else:
            from .testing import AzureOpenAIStandIn, TokenRegistry

            kind = args.credential or "app-service"
            progress(f"starting loopback stand-ins: Azure OpenAI and the identity service for --credential {kind} ...")
            # Tokens far shorter than the 5-minute margin: the cache renews them at half-life
            # (see TokenCache), so a few seconds show several renewals.
            registry = TokenRegistry()
            identity = start_identity(kind, args.token_lifetime, registry, stack)
            service = stack.enter_context(AzureOpenAIStandIn(registry=registry))
            # https, as Azure: the recipe runs unchanged; its client trusts the stand-in's CA
            # through the environment (SSL_CERT_FILE, REQUESTS_CA_BUNDLE).
            stack.enter_context(service.patched_env())
            endpoint, credential = service.base_url, identity.credential
            print(f"Azure OpenAI stand-in at {endpoint}; openai {openai.__version__}")
            print(f"Identity: {identity.description} (tokens live {args.token_lifetime:g} s)")
        scope, why = describe_scope(endpoint)
        print(f"Scope: {scope} ({why})")
        cache = TokenCache(credential, scope)
        client = None
        if major >= 1:
            client = openai.AzureOpenAI(
                azure_endpoint=endpoint,
                api_version=args.api_version,
                azure_ad_token_provider=token_provider(cache, endpoint=endpoint),
            )
            recipe = _RECIPE_V1.format(api_version=args.api_version)
        else:
            configure(openai, major, endpoint, args.api_version)
            install_openai_session(cache, openai_module=openai)
            stack.callback(uninstall_openai_session, openai)
            recipe = _RECIPE_V0
        print("The code it runs:\n    " + recipe.replace("\n", "\n    "))
        deployment = args.deployment or DEPLOYMENT
        print(f'Prompt: "{PROMPT}"\n')
        used: list[str] = []
        for number in range(1, args.requests + 1):
            before = cache.status()
            started = time.perf_counter()
            text = complete(openai, major, deployment, client)
            elapsed = elapsed_ms(started)
            after = cache.status()
            print(PROMPT + text)
            token = str(service.requests[-1].token_fingerprint if service is not None else after.fingerprint)
            held = before if before.fingerprint == token else after
            expires = f"{held.expires_on - time.time():5.1f} s" if held.expires_on else "?"
            note = ""
            if token not in used:
                note = "  <- first token" if not used else "  <- renewed token"
                used.append(token)
            elif after.refreshes > before.refreshes:
                note = "  (still valid; a new token is being fetched in the background)"
            print(f"  request {number:2}: token {token}  expires in {expires}  {elapsed:6.1f} ms{note}")
            if number < args.requests:
                time.sleep(args.interval)
        checked = None
        if service is not None:
            bad = sum(r.token_status != "valid" for r in service.requests)
            checked = (len(service.requests) - bad, bad)
        for line in summary(args.requests, used, cache.status(), identity, checked):
            print(line)
        return 1 if checked is not None and checked[1] else 0
