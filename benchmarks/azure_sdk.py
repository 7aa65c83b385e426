"""7. Azure SDK clients: azure-core's bearer token policy on `CachedCredential`, beside the raw credential.

Every Azure SDK client authorizes its requests with `BearerTokenCredentialPolicy` (or its async
form). The sync policy has no lock: threads arriving at a client with no token yet each ask the
credential; and each client (a client per thread or per request is common) keeps its own
token. Measured here: the policy's `on_request` (the step that asks the credential), run by N
threads at once on a cold credential taking `herd_delay` seconds per call.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from azure.core.pipeline import PipelineContext, PipelineRequest
from azure.core.pipeline.policies import AsyncBearerTokenCredentialPolicy, BearerTokenCredentialPolicy
from azure.core.rest import HttpRequest

from ._base import Context, X, fmt_calls, fmt_s, median, perf_ns, progress, wait_until
from ._charts import Bar, Group
from ._contenders import fake_async_credential, fake_credential, lib

SCOPE = "https://storage.azure.com/.default"
CACHED, RAW = "cached", "raw"
COLUMNS = {CACHED: "`CachedCredential(credential)`", RAW: "the credential alone"}
COROUTINES, ASYNC_CLIENTS = 200, 8

try:
    import time_machine
except ImportError:  # only the renewal-time row needs it
    time_machine = None  # type: ignore[assignment]


def _request() -> PipelineRequest[Any]:
    return PipelineRequest(HttpRequest("GET", "https://account.blob.core.windows.net/c/b"), PipelineContext(None))


def threads_on_policies(
    credential: Any, threads: int, per_thread_client: bool, shared: BearerTokenCredentialPolicy[Any, Any] | None = None
) -> float:
    """`threads` threads authorizing one request each, through one shared client's policy or a
    policy each; the slowest one's seconds."""
    shared = shared or BearerTokenCredentialPolicy(credential, SCOPE)
    barrier = threading.Barrier(threads)
    slowest = [0]
    errors: list[BaseException] = []

    def worker() -> None:
        policy = BearerTokenCredentialPolicy(credential, SCOPE) if per_thread_client else shared
        try:
            barrier.wait()
            start = perf_ns()
            policy.on_request(_request())
            slowest[0] = max(slowest[0], perf_ns() - start)
        except BaseException as error:
            errors.append(error)

    workers = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    if errors:
        raise errors[0]
    return slowest[0] / 1e9


def renewal_time(kind: str, threads: int, delay: float) -> tuple[int, float]:
    """Threads arriving at a shared client whose token has 200 s left: both the policy and the
    cache want a new one. Credential calls and the slowest token step."""
    assert time_machine is not None
    raw = fake_credential()
    credential = lib.CachedCredential(raw) if kind == CACHED else raw
    policy = BearerTokenCredentialPolicy(credential, SCOPE)
    policy.on_request(_request())  # a token, cached by the policy (and by CachedCredential)
    raw.delay = delay
    before = raw.calls
    with time_machine.travel(time.time() + 3400, tick=True):
        slowest = threads_on_policies(credential, threads, False, policy)
        wait_until(lambda: raw.calls > before and len(raw.tokens) == raw.calls, 10 * delay + 5)  # let it land
    return raw.calls - before, slowest


async def coroutines_on_async_policies(credential: Any) -> None:
    policies = [AsyncBearerTokenCredentialPolicy(credential, SCOPE) for _ in range(ASYNC_CLIENTS)]
    await asyncio.gather(*(policies[i % ASYNC_CLIENTS].on_request(_request()) for i in range(COROUTINES)))


def run(ctx: Context) -> None:
    mode = ctx.mode
    n, d = mode.herd_threads, mode.herd_delay
    progress(f"7. Azure SDK clients: {mode.herd_rounds} rounds, {n} threads, credential {d:g} s")
    table = ctx.report.table("azure_sdk", "Azure SDK clients: azure-core's bearer token policy", COLUMNS)
    groups = []
    for label, per_thread in (("one client shared by", False), ("a client per thread,", True)):
        calls: dict[str, list[int]] = {CACHED: [], RAW: []}
        slow: dict[str, list[float]] = {CACHED: [], RAW: []}
        for _ in range(mode.herd_rounds):
            for kind in (CACHED, RAW):
                raw = fake_credential(d)
                credential = lib.CachedCredential(raw) if kind == CACHED else raw
                slow[kind].append(threads_on_policies(credential, n, per_thread))
                calls[kind].append(raw.calls)
        title = f"7a. Cold start, {label} {n} threads ({d:g} s credential)"
        table.add(
            f"{title}: credential calls",
            {kind: fmt_calls(calls[kind]) for kind in calls},
            "CachedCredential: exactly 1",
            fmt_calls(calls[CACHED]),
            set(calls[CACHED]) == {1},
            "more than one credential call under the policy",
        )
        table.add(
            f"{title}: slowest request's token step",
            {kind: fmt_s(median(slow[kind])) for kind in slow},
            f"≤ 1.25 {X} {d:g} s (one call)",
            fmt_s(median(slow[CACHED])),
            median(slow[CACHED]) <= 1.25 * d,
            "waiters woke late after the single credential call landed",
        )
        groups.append(
            Group(
                f"{title}, azure-core's bearer token policy",
                [Bar("CachedCredential", max(calls[CACHED]), ours=True), Bar("credential alone", max(calls[RAW]))],
            )
        )
        ctx.report.summary.append(
            f"Azure SDK clients, {label} {n} threads on a cold start: {fmt_calls(calls[CACHED])} credential call "
            f"through `CachedCredential`, {fmt_calls(calls[RAW])} with the credential alone."
        )
    if time_machine is not None:
        renewals = {CACHED: [renewal_time(CACHED, n, d) for _ in range(mode.herd_rounds)]}
        renewals[RAW] = [renewal_time(RAW, n, d) for _ in range(mode.herd_rounds)]
        title = f"7b. Renewal time (200 s left), one client shared by {n} threads"
        table.add(
            f"{title}: credential calls",
            {kind: fmt_calls([c for c, _ in renewals[kind]]) for kind in renewals},
            "CachedCredential: exactly 1",
            fmt_calls([c for c, _ in renewals[CACHED]]),
            {c for c, _ in renewals[CACHED]} == {1},
            "more than one renewal call",
        )
        slowest = {kind: median([s for _, s in renewals[kind]]) for kind in renewals}
        table.add(
            f"{title}: slowest request's token step",
            {kind: fmt_s(slowest[kind]) for kind in slowest},
            "CachedCredential < 50 ms (nobody waits)",
            fmt_s(slowest[CACHED]),
            slowest[CACHED] < 0.05,
            "a request waited for the renewal although the cached token was valid",
        )
    async_calls: dict[str, list[int]] = {CACHED: [], RAW: []}
    for _ in range(mode.herd_rounds):
        for kind in (CACHED, RAW):
            raw_async = fake_async_credential(mode.async_delay)
            asked = lib.AsyncCachedCredential(raw_async) if kind == CACHED else raw_async
            asyncio.run(coroutines_on_async_policies(asked))
            async_calls[kind].append(raw_async.calls)
    table.add(
        f"7c. Cold start, {COROUTINES} coroutines across {ASYNC_CLIENTS} async clients: credential calls",
        {kind: fmt_calls(async_calls[kind]) for kind in async_calls},
        "AsyncCachedCredential: exactly 1",
        fmt_calls(async_calls[CACHED]),
        set(async_calls[CACHED]) == {1},
        "more than one credential call under the async policies",
    )
    ctx.report.figures["azure_sdk"] = groups
