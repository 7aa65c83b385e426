"""Per-request cost of this checkout against a baseline copy of the library, in one run.

Runs only with `--baseline`. Both copies' contenders (and the floors and the cookbook class)
are measured in the same interleaved rounds; new/old is the median over rounds of the ratio
within each round, which a busy machine disturbs far less than a ratio of two runs.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable

from ._base import Context, X, fmt_ns, median, paired_ratio, progress
from ._charts import Bar, Group
from ._contenders import (
    ADAPTER,
    COOKBOOK,
    ENDPOINT,
    FLOOR,
    PROVIDER,
    SCOPE,
    endpoint_option,
    fake_async_credential,
    fake_credential,
    lib,
    make,
    per_call_samples,
)
from .async_provider import await_samples, fixed_token, openai_asking

NO_WORSE = 1.05  # new/old above this is a regression; below it, noise on a shared machine
LABELS = {
    ADAPTER: "`AzureADTokenAuth`",
    PROVIDER: "`token_provider` as openai asks, + header",
    "async": "`async_token_provider` as openai asks",
}
# The chart's labels: short, the heading says how the providers are called.
CHART_LABELS = {ADAPTER: "AzureADTokenAuth", PROVIDER: "token_provider + header", "async": "async_token_provider"}


def run(ctx: Context) -> None:
    if ctx.baseline is None:
        return
    mode = ctx.mode
    rounds, calls = mode.cost_rounds, mode.cost_calls
    progress(f"side by side with {ctx.baseline_name}: {rounds} rounds x {calls:,} calls")
    credential = fake_credential()
    auths = {FLOOR: make(FLOOR, credential), COOKBOOK: make(COOKBOOK, credential)}
    for kind in (ADAPTER, PROVIDER):
        auths[kind] = make(kind, credential)
        auths[kind + ".old"] = make(kind, credential, ctx.baseline)
    samples = per_call_samples(auths, calls, rounds)
    samples.update(asyncio.run(_async_samples(ctx, rounds)))
    med = {name: median(values) for name, values in samples.items()}
    table = ctx.report.table(
        "side_by_side",
        f"This checkout beside {ctx.baseline_name}, same run",
        {"new": "this checkout", "old": f"baseline {ctx.baseline_name}", "ratio": "new / old"},
    )
    for kind, floor in ((ADAPTER, FLOOR), (PROVIDER, FLOOR), ("async", "async.floor")):
        ratio = paired_ratio(samples, kind, kind + ".old")
        table.add(
            f"{LABELS[kind]}, cached token: ns per {'await' if kind == 'async' else 'request'} ({X} its floor)",
            {
                "new": f"{fmt_ns(med[kind])} ({med[kind] / med[floor]:.2f}{X})",
                "old": f"{fmt_ns(med[kind + '.old'])} ({med[kind + '.old'] / med[floor]:.2f}{X})",
                "ratio": f"{ratio:.3f}",
            },
            f"new / old ≤ {NO_WORSE:g} (no worse, within noise)",
            f"{ratio:.3f}",
            ratio <= NO_WORSE,
            "slower than the baseline, measured in the same rounds",
        )
    new_old = {kind: paired_ratio(samples, kind, kind + ".old") for kind in (ADAPTER, PROVIDER, "async")}
    ctx.report.summary.append(
        f"Beside {ctx.baseline_name}, same rounds: `AzureADTokenAuth` {new_old[ADAPTER]:.2f}{X} its per-request "
        f"cost there; the providers {new_old[PROVIDER]:.2f}{X} (sync) and {new_old['async']:.2f}{X} (async)."
    )
    for version, suffix in (("this checkout", ""), (f"baseline {ctx.baseline_name}", ".old")):
        versus_cookbook = paired_ratio(samples, ADAPTER + suffix, COOKBOOK)
        table.add(
            f"`AzureADTokenAuth` / cookbook `TokenRefresh` ({fmt_ns(med[COOKBOOK])}), {version}",
            {"new" if not suffix else "old": f"{versus_cookbook:.3f}"},
            "≤ 1 (never above the cookbook class)",
            f"{versus_cookbook:.3f}",
            versus_cookbook <= 1,
            "the adapter costs more per request than the pasted cookbook class",
        )
        versus_floor = paired_ratio(samples, "async" + suffix, "async.floor")
        table.add(
            f"`async_token_provider` / its floor ({fmt_ns(med['async.floor'])}), {version}",
            {"new" if not suffix else "old": f"{versus_floor:.2f}{X}"},
            f"≤ 1.5{X}",
            f"{versus_floor:.2f}{X}",
            versus_floor <= 1.5,
            "`async_token_provider` costs more than 1.5 times an empty coroutine",
        )
    table.notes.append(
        f"Same rounds: floor {fmt_ns(med[FLOOR])}, cookbook `TokenRefresh` {fmt_ns(med[COOKBOOK])}, async floor "
        f"{fmt_ns(med['async.floor'])}. Every ratio here is the median over {rounds} rounds of the ratio "
        "measured within each round."
    )
    baseline = ctx.baseline_name.strip("`")
    ctx.report.figures["side_by_side"] = Group(
        f"this checkout (new) beside {baseline}, providers as openai asks (ns per request or await)",
        [
            bar
            for kind in (ADAPTER, PROVIDER, "async")
            for bar in (
                Bar(f"{CHART_LABELS[kind]}, new", med[kind], ours=True),
                Bar(f"{CHART_LABELS[kind]}, {baseline}", med[kind + ".old"]),
            )
        ],
    )


async def _async_samples(ctx: Context, rounds: int) -> dict[str, list[float]]:
    """The async providers, as openai asks when it is installed (`openai_asking`), else directly."""
    assert ctx.baseline is not None
    credential = fake_async_credential()
    providers: dict[str, Callable[[], Awaitable[str]]] = {
        "async.floor": fixed_token,
        "async": lib.async_token_provider(credential, SCOPE, endpoint=ENDPOINT),
        "async.old": ctx.baseline.async_token_provider(credential, SCOPE, **endpoint_option(ctx.baseline)),
    }
    mode = dataclasses.replace(ctx.mode, cost_rounds=rounds)
    return await await_samples(openai_asking(providers) or providers, mode)
