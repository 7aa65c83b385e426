"""5. Async: a cold herd of coroutines, and the per-await cost with a cached token."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from azure.identity.aio import get_bearer_token_provider as aio_get_bearer_token_provider

from ._base import Context, X, fmt_calls, fmt_ns, fmt_s, gc_paused, median, paired_ratio, perf_ns, progress, rotated
from ._charts import Bar, Group
from ._contenders import AZID, COLUMNS, ENDPOINT, FIXED, FLOOR, PROVIDER, SCOPE, fake_async_credential, lib

KINDS = [PROVIDER, AZID]
LABELS = {
    FLOOR: "Floor: coroutine returning a string",
    PROVIDER: "async_token_provider",
    AZID: "aio get_bearer_token_provider",
}


async def async_herd(kind: str, coroutines: int, delay: float) -> tuple[int, float]:
    credential = fake_async_credential(delay)
    provider = (
        lib.async_token_provider(credential, SCOPE, endpoint=ENDPOINT)
        if kind == PROVIDER
        else aio_get_bearer_token_provider(credential, SCOPE)
    )
    start = perf_ns()
    await asyncio.gather(*(provider() for _ in range(coroutines)))
    return credential.calls, (perf_ns() - start) / 1e9


async def per_await_ns(provider: Callable[[], Awaitable[str]], calls: int) -> float:
    with gc_paused():
        start = perf_ns()
        for _ in range(calls):
            await provider()
        elapsed = perf_ns() - start
    return elapsed / calls


async def fixed_token() -> str:
    return FIXED


async def _run(ctx: Context) -> None:
    mode = ctx.mode
    n, d = mode.async_coroutines, mode.async_delay
    progress(f"5. async: {mode.async_rounds} rounds, {n:,} coroutines, credential {d:g} s")
    herds: dict[str, list[tuple[int, float]]] = {kind: [] for kind in KINDS}
    for r in range(mode.async_rounds):
        for kind in rotated(KINDS, r):
            herds[kind].append(await async_herd(kind, n, d))
    calls = {kind: [c for c, _ in herds[kind]] for kind in KINDS}
    wall = {kind: median([w for _, w in herds[kind]]) for kind in KINDS}
    table = ctx.report.table("main", "Contenders side by side", COLUMNS)
    table.notes.append(
        "In the async rows the providers are `async_token_provider` and "
        "`azure.identity.aio.get_bearer_token_provider`; the floor there is a coroutine returning a fixed string, "
        "awaited the same way."
    )
    label = f"5. Async cold herd: {n:,} coroutines gathered, {d:g} s async credential"
    table.add(
        f"{label}: credential calls",
        {kind: fmt_calls(calls[kind]) for kind in KINDS},
        "`async_token_provider`: exactly 1",
        fmt_calls(calls[PROVIDER]),
        set(calls[PROVIDER]) == {1},
        "the async path was not single-flight",
    )
    table.add(
        "5. … wall time",
        {kind: fmt_s(wall[kind]) for kind in KINDS},
        f"≤ 1.25 {X} {d:g} s (one call)",
        fmt_s(wall[PROVIDER]),
        wall[PROVIDER] <= 1.25 * d,
        "registering and waking the waiters costs a noticeable share of one credential call",
    )
    ctx.report.figures["async_herd"] = Group(label, [Bar(LABELS[k], max(calls[k]), ours=k == PROVIDER) for k in KINDS])

    await _per_await(ctx, table)


def openai_asking(providers: dict[str, Callable[[], Awaitable[str]]]) -> dict[str, Callable[[], Awaitable[Any]]] | None:
    """Each provider as openai >= 1 calls it: `AsyncAzureOpenAI._get_azure_ad_token` of a
    client holding it (None without openai). That method is what the floor's ratio is of."""
    try:
        from openai import AsyncAzureOpenAI
    except ImportError:
        return None
    return {
        kind: AsyncAzureOpenAI(
            azure_endpoint=ENDPOINT, api_version="2024-10-21", azure_ad_token_provider=provider
        )._get_azure_ad_token
        for kind, provider in providers.items()
    }


async def await_samples(calls: dict[str, Callable[[], Awaitable[Any]]], mode: Any) -> dict[str, list[float]]:
    """`per_await_ns` of each in interleaved rounds, after a warm-up that fills the caches."""
    for call in calls.values():
        await per_await_ns(call, mode.cost_calls // 10)
    samples: dict[str, list[float]] = {kind: [] for kind in calls}
    for r in range(mode.cost_rounds):
        for kind in rotated(list(calls), r):
            samples[kind].append(await per_await_ns(calls[kind], mode.cost_calls))
    return samples


async def _per_await(ctx: Context, table: Any) -> None:
    """The per-await cost on a cached token, as openai asks (the target) and called directly."""
    credential = fake_async_credential()
    providers: dict[str, Callable[[], Awaitable[str]]] = {
        FLOOR: fixed_token,
        PROVIDER: lib.async_token_provider(credential, SCOPE, endpoint=ENDPOINT),
        AZID: aio_get_bearer_token_provider(credential, SCOPE),
    }
    asked = openai_asking(providers)
    if asked is not None:
        samples = await await_samples(asked, ctx.mode)
        asked_med = {kind: median(v) for kind, v in samples.items()}
        ratios = {kind: paired_ratio(samples, kind, FLOOR) for kind in samples}
        table.add(
            "5. Async per-call cost, cached token, as openai asks: `await AsyncAzureOpenAI._get_azure_ad_token()` "
            "(ns/await)",
            {kind: f"{fmt_ns(asked_med[kind])} ({ratios[kind]:.2f}{X})" for kind in providers},
            f"`async_token_provider` ≤ 1.5{X} floor",
            f"{ratios[PROVIDER]:.2f}{X}",
            ratios[PROVIDER] <= 1.5,
            f"`async_token_provider` adds {asked_med[PROVIDER] - asked_med[FLOOR]:.0f} ns per await over the floor "
            "(row 6 measures it on each openai, in a process of its own)",
        )
        ctx.report.summary.append(
            f"`async_token_provider` as openai calls it: {ratios[PROVIDER]:.2f}{X} a coroutine returning a fixed "
            f"string; azure-identity's async `get_bearer_token_provider`: {ratios[AZID]:.1f}{X}."
        )
    direct = await await_samples(providers, ctx.mode)
    med = {kind: median(v) for kind, v in direct.items()}
    table.notes.append(
        f"Called directly, outside any openai client, `async_token_provider` costs {fmt_ns(med[PROVIDER])} per "
        f"await against {fmt_ns(med[FLOOR])} for an empty coroutine ({paired_ratio(direct, PROVIDER, FLOOR):.2f}"
        f"{X}): the call that makes the coroutine, then the cached token's read."
    )
    figures = asked_med if asked is not None else med
    ctx.report.figures["per_await"] = Group(
        "async providers, cached token, as openai asks (ns per await)"
        if asked is not None
        else "async providers, cached token (ns per await)",
        [Bar(LABELS[k], figures[k], ours=k == PROVIDER) for k in providers],
    )


def run(ctx: Context) -> None:
    asyncio.run(_run(ctx))
