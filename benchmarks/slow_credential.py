"""3. A slow credential that does not cache (like `AzureCliCredential`), many sequential requests."""

from __future__ import annotations

from ._base import Context, X, fmt_calls, fmt_s, gc_paused, median, perf_ns, progress, rotated
from ._contenders import ADAPTER, AZID, COLUMNS, COOKBOOK, PROVIDER, fake_credential, make, prepared

KINDS = [ADAPTER, PROVIDER, AZID, COOKBOOK]


def slow_run(kind: str, requests: int, delay: float) -> tuple[int, float]:
    credential = fake_credential(delay)
    auth = make(kind, credential)
    req = prepared()
    clear = req.hooks["response"].clear
    with gc_paused():
        start = perf_ns()
        for _ in range(requests):
            auth(req)
            clear()
        elapsed = perf_ns() - start
    return credential.calls, elapsed / 1e9


def run(ctx: Context) -> None:
    mode = ctx.mode
    n, d = mode.slow_requests, mode.slow_delay
    progress(f"3. slow non-caching credential: {mode.slow_rounds} rounds, {n:,} requests, {d:g} s per call")
    runs: dict[str, list[tuple[int, float]]] = {kind: [] for kind in KINDS}
    for r in range(mode.slow_rounds):
        for kind in rotated(KINDS, r):
            runs[kind].append(slow_run(kind, n, d))
    calls = {kind: [c for c, _ in runs[kind]] for kind in KINDS}
    wall = {kind: median([w for _, w in runs[kind]]) for kind in KINDS}
    table = ctx.report.table("main", "Contenders side by side", COLUMNS)
    table.add(
        f"3. Slow credential that does not cache ({d:g} s/call), {n:,} sequential requests: credential calls",
        {kind: fmt_calls(calls[kind]) for kind in KINDS},
        "adapter: exactly 1",
        fmt_calls(calls[ADAPTER]),
        set(calls[ADAPTER]) == {1},
        "the cache asked the credential more than once per token lifetime",
    )
    table.add(
        "3. … wall time",
        {kind: fmt_s(wall[kind]) for kind in KINDS},
        f"adapter ≤ 1.25 {X} {d:g} s (one call)",
        fmt_s(wall[ADAPTER]),
        wall[ADAPTER] <= 1.25 * d,
        "per-request overhead adds up to a noticeable share of one credential call",
    )
