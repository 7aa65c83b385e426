"""2. Herds: many threads asking at once, on an empty cache and when a valid token is due."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from ._base import Context, X, fmt_calls, fmt_s, median, perf_ns, progress, rotated, wait_until
from ._charts import Bar, Group
from ._contenders import ADAPTER, AZID, COLUMNS, COOKBOOK, PROVIDER, Auth, fake_credential, make, prepared

try:
    import time_machine
except ImportError:  # only the refresh-time herd needs it
    time_machine = None  # type: ignore[assignment]

KINDS = [ADAPTER, PROVIDER, AZID, COOKBOOK]
LABELS = {
    ADAPTER: "AzureADTokenAuth",
    PROVIDER: "token_provider",
    AZID: "get_bearer_token_provider",
    COOKBOOK: "cookbook TokenRefresh",
}


def run_herd(auth: Auth, threads: int) -> list[int]:
    """`threads` requests through `auth` at once; each one's auth-step latency (ns)."""
    reqs = [prepared() for _ in range(threads)]
    barrier = threading.Barrier(threads)
    latency = [0] * threads
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            barrier.wait()
            start = perf_ns()
            auth(reqs[i])
            latency[i] = perf_ns() - start
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=worker, args=(i,), name=f"herd-{i}") for i in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    if errors:
        raise errors[0]
    return latency


def cold_herd(kind: str, threads: int, delay: float) -> tuple[int, float]:
    credential = fake_credential(delay)
    latency = run_herd(make(kind, credential), threads)
    return credential.calls, max(latency) / 1e9


def refresh_herd(kind: str, threads: int, delay: float) -> tuple[int, float]:
    """Threads arriving when a valid token is due for renewal (200 s left)."""
    assert time_machine is not None
    credential = fake_credential()
    auth = make(kind, credential)
    first = prepared()
    auth(first)  # cache a token (no delay)
    credential.delay = delay
    before = credential.calls
    # 3400 s later: 200 s left, inside every contender's window (300 s; azure-core's
    # 300 s minus 0-60 s jitter; the cache's min(300, lifetime / 2)).
    with time_machine.travel(time.time() + 3400, tick=True):
        latency = run_herd(auth, threads)
        if kind in (ADAPTER, PROVIDER):  # their renewal runs in the background: let it land

            def renewed() -> bool:
                request = prepared()
                auth(request)  # the cached token, at once
                return bool(request.headers["Authorization"] != first.headers["Authorization"])

            wait_until(renewed, 10 * delay + 5)
    return credential.calls - before, max(latency) / 1e9


def run(ctx: Context) -> None:
    mode = ctx.mode
    n, d = mode.herd_threads, mode.herd_delay
    progress(f"2. herds: {mode.herd_rounds} rounds, {n} threads, credential {d:g} s")
    cold: dict[str, list[tuple[int, float]]] = {kind: [] for kind in KINDS}
    warm: dict[str, list[tuple[int, float]]] = {kind: [] for kind in KINDS}
    for r in range(mode.herd_rounds):
        for kind in rotated(KINDS, r):
            cold[kind].append(cold_herd(kind, n, d))
            if time_machine is not None:
                warm[kind].append(refresh_herd(kind, n, d))
    table = ctx.report.table("main", "Contenders side by side", COLUMNS)
    groups = []
    checks: tuple[tuple[str, dict[str, list[tuple[int, float]]], str, Callable[[float], bool], str], ...] = (
        (
            f"2a. Cold herd: {n} threads, empty cache, {d:g} s credential",
            cold,
            f"adapter ≤ 1.25 {X} {d:g} s (one call)",
            lambda s: s <= 1.25 * d,
            "waiters woke late after the single credential call landed",
        ),
        (
            f"2b. Refresh-time herd: {n} threads, valid token due for renewal",
            warm,
            "adapter < 50 ms (nobody waits)",
            lambda s: s < 0.05,
            "a request waited for the renewal although the cached token was valid",
        ),
    )
    for label, results, slow_target, slow_ok, slow_note in checks:
        if not results[ADAPTER]:
            progress("time-machine is not installed: the refresh-time herd rows are skipped")
            continue
        calls = {kind: [c for c, _ in results[kind]] for kind in KINDS}
        slow = {kind: median([s for _, s in results[kind]]) for kind in KINDS}
        table.add(
            f"{label}: credential calls",
            {kind: fmt_calls(calls[kind]) for kind in KINDS},
            "adapter: exactly 1",
            fmt_calls(calls[ADAPTER]),
            set(calls[ADAPTER]) == {1},
            "more than one credential call: the single flight let callers through",
        )
        ctx.report.summary.append(
            f"{label}: {fmt_calls(calls[ADAPTER])} credential call through `AzureADTokenAuth`, "
            f"{fmt_calls(calls[PROVIDER])} through `token_provider` (azure-identity's `get_bearer_token_provider`: "
            f"{fmt_calls(calls[AZID])}; the cookbook class: {fmt_calls(calls[COOKBOOK])})."
        )
        table.add(
            f"{label.split(':')[0]} … slowest request's auth step",
            {kind: fmt_s(slow[kind]) for kind in KINDS},
            slow_target,
            fmt_s(slow[ADAPTER]),
            slow_ok(slow[ADAPTER]),
            slow_note,
        )
        groups.append(Group(label, [Bar(LABELS[k], max(calls[k]), ours=k in (ADAPTER, PROVIDER)) for k in KINDS]))
    ctx.report.figures["herds"] = groups
