"""`azure-ad-token-auth demo --workers N`: N worker processes sharing one token.

Each worker is a process of its own (like a gunicorn or celery worker) with its own
`DefaultAzureCredential` and `TokenCache`; the `AZURE_AD_TOKEN_AUTH_SHARED_CACHE`
environment variable switches the shared store on for all of them, with no change to
their code. On the loopback stand-ins the summary counts the managed-identity requests:
one per renewal for the whole fleet.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import multiprocessing
import os
import queue
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

from ._cache import TokenCache
from ._clouds import DEFAULT_SCOPE
from ._demo_setup import DEPLOYMENT, PROMPT, complete, configure, progress
from ._store import ENV_VAR

_DONE = "done"


def _worker(number: int, endpoint: str, api_version: str, deployment: str, args: tuple[int, float], out: Any) -> None:
    requests, interval = args
    cache = None
    try:
        from ._openai import install_openai_session, openai_major_version

        openai = importlib.import_module("openai")
        major = openai_major_version(openai)
        # The library's own DefaultAzureCredential: it shares through the store without a name.
        cache = TokenCache(None, DEFAULT_SCOPE)  # shared_cache from the environment
        configure(openai, major, endpoint, api_version)
        install_openai_session(cache, openai_module=openai)
        for request in range(1, requests + 1):
            started = time.perf_counter()
            complete(openai, major, deployment)
            elapsed = (time.perf_counter() - started) * 1000
            out.put((number, request, cache.status().fingerprint, elapsed))
            if request < requests:
                time.sleep(interval)
    except Exception as exc:  # noqa: BLE001 - reported by the parent
        out.put((number, 0, f"{type(exc).__name__}: {exc}", 0.0))
    finally:
        status = cache.status() if cache is not None else None
        # The last message carries the worker's credential calls and store hits.
        out.put((number, -1, _DONE, (status.credential_calls, status.store_hits) if status else (0, 0)))


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
        # https, as Azure: the workers inherit the variables that make their clients trust it.
        stack.enter_context(service.patched_env())
        yield service.base_url, identity, service


def run_fleet_demo(args: argparse.Namespace) -> int:
    """Run `args.workers` worker processes through the demo, sharing one token store."""
    if args.workers < 1:
        print("--workers must be at least 1", file=sys.stderr)
        return 2
    methods = multiprocessing.get_all_start_methods()
    context: Any = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    with contextlib.ExitStack() as stack:
        store = stack.enter_context(tempfile.TemporaryDirectory(prefix="azure-ad-token-auth-demo-"))
        os.chmod(store, 0o700)
        if args.endpoint:
            endpoint, identity, service = args.endpoint, None, None
            print(f"Azure OpenAI at {endpoint}, deployment {args.deployment}")
        else:
            progress("starting loopback stand-ins: Azure OpenAI and App Service managed identity ...")
            endpoint, identity, service = stack.enter_context(_stand_ins(args.token_lifetime))
            print(
                f"Loopback stand-ins: Azure OpenAI at {endpoint}, managed identity at {identity.url} "
                f"(tokens live {args.token_lifetime:g} s)"
            )
        # Set after the stand-ins, whose environment clears the variable.
        saved = os.environ.get(ENV_VAR)
        os.environ[ENV_VAR] = store
        stack.callback(lambda: os.environ.pop(ENV_VAR) if saved is None else os.environ.__setitem__(ENV_VAR, saved))
        print(f"{args.workers} worker processes, {ENV_VAR}={store}")
        print(
            f"Scope: {DEFAULT_SCOPE}; identity: each worker's own DefaultAzureCredential (App Service managed identity)"
        )
        print(f'Prompt: "{PROMPT}"\n')
        out = context.Queue()
        deployment = args.deployment or DEPLOYMENT
        workers = [
            context.Process(
                target=_worker,
                args=(n, endpoint, args.api_version, deployment, (args.requests, args.interval), out),
                daemon=True,
            )
            for n in range(1, args.workers + 1)
        ]
        progress(f"starting {args.workers} worker processes ...")
        for process in workers:
            process.start()
        tokens: dict[str, int] = {}
        calls = hits = 0
        failed = []
        running = len(workers)
        while running:
            try:
                number, request, fingerprint, elapsed = out.get(timeout=120)
            except queue.Empty:
                print("workers stopped answering", file=sys.stderr)
                return 1
            if fingerprint == _DONE:
                running -= 1
                calls, hits = calls + elapsed[0], hits + elapsed[1]
                continue
            if request == 0:
                failed.append(f"worker {number}: {fingerprint}")
                continue
            note = ""
            if fingerprint not in tokens:
                tokens[fingerprint] = number
                note = "  <- new token" + (f" (identity requests so far: {identity.calls})" if identity else "")
            print(f"  worker {number:2} request {request:2}: token {fingerprint}  {elapsed:6.1f} ms{note}")
        for process in workers:
            process.join(10)
        issued = [r["time"] for r in identity.requests if r["status"] == 200] if identity is not None else []
        print("\nSummary")
        print(f"  workers:            {args.workers}, {args.requests} requests each")
        print(f"  tokens used:        {len(tokens)} (each shared by every worker that needed it)")
        print(
            f"  credential calls:   {calls} in all workers (a worker whose token fell due took the "
            "store's lock and asked its credential)"
        )
        print(
            f"  taken from store:   {hits} (a worker whose token fell due found the one another worker "
            "had just renewed, and made no call)"
        )
        for line in failed:
            print(f"  failed: {line}")
        if identity is None or service is None:
            return 1 if failed else 0
        at = ", ".join(f"{t - issued[0]:.1f}" for t in issued)
        unused = len(issued) - len(tokens)
        late = f"; {unused} renewed after the last request, not used" if unused > 0 else ""
        print(
            f"  identity requests:  {len(issued)} for the whole fleet (at {at} s), counted by the stand-in: one per "
            f"renewal{late}; {args.workers} workers each on their own would have made {args.workers} per renewal"
        )
        bad = [r for r in service.requests if r.token_status != "valid"]
        print(
            f"  requests checked:   {len(service.requests)} by the stand-in: {len(service.requests) - len(bad)} "
            f"carried a valid token, {len(bad)} did not"
        )
        return 1 if failed or bad else 0
