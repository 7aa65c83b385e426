"""8. Redis across token renewals: pooled connections x threads (sync) and x coroutines (async).

Each contender serves a real Redis server behind Azure's token check (the testing kit's
`AzureRedisStandIn`), with 4 s tokens from the loopback managed-identity endpoint (each
request takes 0.2 s, as an identity endpoint may), for about three token lifetimes:

- credential calls: requests that reached the identity endpoint;
- errors: commands that raised; closed: connections the server closed for an expired token;
- loop stall (async): the longest the event loop went without a turn (a 5 ms ticker).

Contenders: this library's `credential_provider` and redis-entraid's
`create_from_default_azure_credential` (installed in the bench session only), both on
azure-identity's `DefaultAzureCredential`.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import importlib.util
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from ._base import Context, fmt_s, progress

LIFETIME = 4  # seconds
DELAY = 0.2  # seconds per identity request
SCOPE = "https://redis.azure.com/.default"
OURS, ENTRAID = "azure-ad-token-auth", "redis-entraid"


def _provider(kind: str) -> Any:
    from azure.identity import DefaultAzureCredential

    if kind == OURS:
        from azure_ad_token_auth.redis import credential_provider

        return credential_provider(DefaultAzureCredential())
    from redis_entraid.cred_provider import create_from_default_azure_credential

    return create_from_default_azure_credential((SCOPE,))


class _EntraidAfterItsServer(logging.Filter):
    """Drops what redis-entraid's token manager logs once its stand-in has stopped.

    Its renewal loop has no public stop, so it keeps renewing against a closed port for the rest
    of the run, each failure a traceback through the `asyncio` logger. Counted, not shown: the
    rows count the errors its clients saw while the server ran.
    """

    dropped = 0

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if error is not None and type(error).__module__.startswith(("redis.", "redis_entraid")):
            _EntraidAfterItsServer.dropped += 1
            return False
        return True


def _sync_run(kind: str, connections: int, threads: int, seconds: float, azure: Any) -> dict[str, float]:
    import redis

    client = redis.Redis(**azure.client_kwargs(), credential_provider=_provider(kind), max_connections=connections)
    errors, ops = [0], [0]
    until = time.monotonic() + seconds
    gate = threading.Semaphore(connections)  # never more users than connections: the pool never runs out

    def work(number: int) -> None:
        while time.monotonic() < until:
            try:
                with gate:
                    client.set(f"k{number}", number)
                    client.get(f"k{number}")
                ops[0] += 1
            except Exception:
                errors[0] += 1
                time.sleep(0.05)
            time.sleep(0.002)

    workers = [threading.Thread(target=work, args=(n,), daemon=True) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(seconds + 60)
    client.close()
    return {"errors": errors[0], "ops": ops[0], "stall": 0.0}


def _async_run(kind: str, connections: int, coroutines: int, seconds: float, azure: Any) -> dict[str, float]:
    import redis.asyncio as aioredis

    async def main() -> dict[str, float]:
        stall, last = 0.0, time.monotonic()
        stop = asyncio.Event()

        async def ticker() -> None:
            nonlocal stall, last
            while not stop.is_set():
                await asyncio.sleep(0.005)
                now = time.monotonic()
                stall, last = max(stall, now - last - 0.005), now

        tick = asyncio.create_task(ticker())
        provider = _provider(kind)
        pool = aioredis.BlockingConnectionPool(max_connections=connections, timeout=30, **azure.client_kwargs(),
                                               credential_provider=provider)  # fmt: skip
        client = aioredis.Redis(connection_pool=pool, credential_provider=provider)
        errors, ops = 0, 0
        until = time.monotonic() + seconds

        async def work(number: int) -> None:
            nonlocal errors, ops
            while time.monotonic() < until:
                try:
                    await client.set(f"k{number}", number)
                    await client.get(f"k{number}")
                    ops += 1
                except Exception:
                    errors += 1
                    await asyncio.sleep(0.05)
                await asyncio.sleep(0.002)

        await asyncio.gather(*(work(n) for n in range(coroutines)))
        stop.set()
        await tick
        await client.aclose()
        return {"errors": errors, "ops": ops, "stall": stall}

    return asyncio.run(main())


def _measure(
    kind: str, run: Callable[..., dict[str, float]], size: tuple[int, int], seconds: float
) -> dict[str, float]:
    from azure_ad_token_auth.testing import AzureRedisStandIn, ManagedIdentityEndpoint, TokenRegistry

    registry = TokenRegistry()
    identity = ManagedIdentityEndpoint(registry=registry, lifetime=LIFETIME, delay=DELAY)
    with identity, identity.patched_env(), AzureRedisStandIn(registry=registry) as azure:
        figures = run(kind, *size, seconds, azure)
        return {**figures, "calls": identity.calls, "closed": azure.closed_for_expiry}


def run(ctx: Context) -> None:
    if importlib.util.find_spec("redis") is None:
        progress("redis: redis-py is not installed; skipped")
        return
    kinds = [OURS] + ([ENTRAID] if importlib.util.find_spec("redis_entraid") else [])
    if ENTRAID in kinds:
        logging.getLogger("asyncio").addFilter(_EntraidAfterItsServer())
    short = ctx.mode.name == "short"
    seconds = LIFETIME * (1.5 if short else 3)
    sizes = [(4, 8)] if short else [(4, 8), (16, 32)]
    versions = ", ".join(f"{name} {importlib.metadata.version(name)}" for name in ("redis", *kinds[1:]))
    table = ctx.report.table(
        "redis",
        f"Redis across renewals ({versions}): {LIFETIME} s tokens, {seconds:g} s per row, "
        f"identity requests of {fmt_s(DELAY)}",
        {kind: kind for kind in kinds},
    )
    for row, label, runner, unit in (("8a", "sync", _sync_run, "threads"), ("8b", "async", _async_run, "coroutines")):
        for size in sizes:
            found = {}
            for kind in kinds:
                progress(f"redis {label}: {kind}, {size[0]} connections x {size[1]} {unit}")
                found[kind] = _measure(kind, runner, size, seconds)
            ours = found[OURS]
            cells = {
                kind: f"{f['calls']:.0f} calls, {f['errors']:.0f} errors, {f['closed']:.0f} closed"
                + (f", stall {fmt_s(f['stall'])}" if label == "async" else "")
                for kind, f in found.items()
            }
            ok = ours["errors"] == 0 and ours["closed"] == 0 and (label == "sync" or ours["stall"] < DELAY)
            table.add(
                f"{row}. {label}: {size[0]} pooled connections x {size[1]} {unit}",
                cells,
                "no errors, none closed" + (", loop stalls less than one credential call" if label == "async" else ""),
                f"{ours['calls']:.0f} calls",
                ok,
                "a command failed, a connection outlived its token, or the loop stalled for a credential call",
            )
            ctx.report.figures[f"redis_{label}_{size[0]}x{size[1]}"] = found
    if _EntraidAfterItsServer.dropped:
        dropped = _EntraidAfterItsServer.dropped
        progress(f"redis-entraid: {dropped} renewal tracebacks after its server stopped, not shown")
