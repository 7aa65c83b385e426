"""Fleets: 16 forked processes with and without `shared_cache`; the first request after an
idle spell with and without `keep_fresh`; the per-request cost with the store on."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

from azure.core.credentials import AccessTokenInfo

from ._base import Context, X, fmt_ns, fmt_s, median, paired_ratio, progress, wait_until
from ._charts import Bar, Group
from ._contenders import (
    ADAPTER,
    AZID,
    COLUMNS,
    COOKBOOK,
    SCOPE,
    TOKEN_LENGTH,
    Auth,
    FakeCredential,
    fake_credential,
    lib,
    make,
    per_call_samples,
    prepared,
)

try:
    import time_machine
except ImportError:
    time_machine = None  # type: ignore[assignment]

PROCESSES = 16
DELAY = 1.0  # seconds per credential call
KINDS = ["shared", "unshared", AZID, COOKBOOK]
LABELS = {
    "shared": "AzureADTokenAuth, shared_cache",
    "unshared": "AzureADTokenAuth, no shared_cache",
    AZID: "get_bearer_token_provider",
    COOKBOOK: "cookbook TokenRefresh",
}


class _FleetCredential:
    """Each process's own credential (1 s a call); every call is counted in a file shared by
    the fleet (one byte appended per call)."""

    def __init__(self, counter: str) -> None:
        self._counter = counter
        self._inner = FakeCredential(delay=DELAY, result=self._mint)

    @staticmethod
    def _mint() -> AccessTokenInfo:
        # Unique across processes: forked children share the parent's serial counter.
        unique = f"{os.getpid()}-{time.time_ns()}-"
        return AccessTokenInfo(unique + "x" * (TOKEN_LENGTH - len(unique)), int(time.time() + 3600))

    def _count(self) -> None:
        fd = os.open(self._counter, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, b"x")
        finally:
            os.close(fd)

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        self._count()
        return self._inner.get_token(*scopes, **kwargs)

    def get_token_info(self, *scopes: str, options: Any = None) -> Any:
        self._count()
        return self._inner.get_token_info(*scopes, options=options)


def _contender(kind: str, credential: Any, store: str) -> tuple[Auth, Callable[[], object]]:
    """A contender and a probe of its current token (to wait out a background renewal)."""
    if kind in ("shared", "unshared"):
        # The fleet's credential is the benchmark's own class, whose identity the store cannot
        # read: it is named, as an application names its own credential's identity.
        if kind == "shared":
            auth = lib.AzureADTokenAuth(credential, SCOPE, shared_cache=store, shared_cache_identity="bench-fleet")
        else:
            auth = lib.AzureADTokenAuth(credential, SCOPE, shared_cache=False)
        return auth, lambda: auth.cache.status().fingerprint
    return make(kind, credential), lambda: None


def _child(kind: str, counter: str, store: str, barrier: Any) -> None:
    auth, probe = _contender(kind, _FleetCredential(counter), store)
    auth(prepared())
    before = probe()
    barrier.wait()  # all have a token
    barrier.wait()  # the parent has counted
    with time_machine.travel(time.time() + 3_400, tick=True):
        auth(prepared())
        if before is not None:  # a background renewal: wait for it to land
            wait_until(lambda: probe() != before, 30)
    barrier.wait()


def fleet_calls(kind: str) -> tuple[int, int]:
    """Credential calls of a fleet of forked processes: at start, and for one renewal.

    Each process makes one request, then all move their clocks 3,400 s on (inside the 300 s
    renewal window of every contender) and make another.
    """
    work = tempfile.mkdtemp(prefix="bench-fleet-")
    counter = os.path.join(work, "calls")
    barrier = multiprocessing.get_context("fork").Barrier(PROCESSES + 1)
    children = []
    for _ in range(PROCESSES):
        pid = os.fork()
        if pid == 0:
            status = 1
            try:
                _child(kind, counter, os.path.join(work, "store"), barrier)
                status = 0
            finally:
                os._exit(status)
        children.append(pid)

    def calls() -> int:
        return os.path.getsize(counter) if os.path.exists(counter) else 0

    try:
        barrier.wait(60)
        at_start = calls()
        barrier.wait(60)
        barrier.wait(60)
        renewal = calls() - at_start
    finally:
        for pid in children:
            os.waitpid(pid, 0)
        shutil.rmtree(work, ignore_errors=True)
    return at_start, renewal


def idle_wait(keep_fresh: bool) -> float:
    """Seconds the first request waits after an idle spell longer than a token's life."""
    cache = lib.TokenCache(fake_credential(delay=DELAY, lifetime=4.0), keep_fresh=keep_fresh)
    cache.get_token()
    time.sleep(5.0)  # no request for longer than the token lives
    start = time.perf_counter()
    cache.get_token()
    return time.perf_counter() - start


def run(ctx: Context) -> None:
    mode = ctx.mode
    table = ctx.report.table("main", "Contenders side by side", COLUMNS)
    if time_machine is None or not hasattr(os, "fork"):
        progress("fleet rows need os.fork and time-machine: skipped")
        return
    progress(f"fleet: {PROCESSES} processes, a {DELAY:g} s credential, {len(KINDS)} contenders")
    counts = {kind: fleet_calls(kind) for kind in KINDS}
    shared = counts["shared"]
    table.add(
        f"Fleet of {PROCESSES} processes, {DELAY:g} s credential: credential calls at start / per renewal",
        {
            ADAPTER: f"{shared[0]} / {shared[1]} (`shared_cache`); "
            f"{counts['unshared'][0]} / {counts['unshared'][1]} (off)",
            AZID: f"{counts[AZID][0]} / {counts[AZID][1]}",
            COOKBOOK: f"{counts[COOKBOOK][0]} / {counts[COOKBOOK][1]}",
        },
        "1 / 1 with `shared_cache`",
        f"{shared[0]} / {shared[1]}",
        shared == (1, 1),
        "the store let more than one process call the credential",
    )
    ctx.report.figures["fleet"] = [
        Group(
            f"Fleet of {PROCESSES} processes: {when}", [Bar(LABELS[k], counts[k][i], ours=k == "shared") for k in KINDS]
        )
        for i, when in enumerate(("at start", "per renewal"))
    ]

    progress(f"fleet: first request after an idle spell past expiry, {mode.idle_rounds} round(s) of ~6 s")
    waits: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(mode.idle_rounds):
        results: dict[bool, float] = {}

        def one(keep: bool, results: dict[bool, float] = results) -> None:
            results[keep] = idle_wait(keep)

        threads = [threading.Thread(target=one, args=(keep,)) for keep in (True, False)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for keep, seconds in results.items():
            waits[keep].append(seconds)
    fresh, stale = median(waits[True]), median(waits[False])
    table.add(
        "First request after idling past expiry (4 s tokens, 1 s credential): wait",
        {ADAPTER: f"{fmt_s(fresh)} (`keep_fresh`); {fmt_s(stale)} (off)"},
        "no credential wait with `keep_fresh`",
        fmt_s(fresh),
        fresh < DELAY / 10,
        "the request waited for the credential: the timer did not renew ahead",
    )

    progress(f"fleet: per-call cost with shared_cache on: {mode.cost_rounds} rounds x {mode.cost_calls:,} calls")
    with tempfile.TemporaryDirectory() as work:
        credential = fake_credential()
        auths = {
            "off": lib.AzureADTokenAuth(credential, SCOPE, shared_cache=False),
            "on": lib.AzureADTokenAuth(
                credential, SCOPE, shared_cache=os.path.join(work, "store"), shared_cache_identity="bench-fleet"
            ),
        }
        samples = per_call_samples(auths, mode.cost_calls, mode.cost_rounds)
    on, off = median(samples["on"]), median(samples["off"])
    ratio = paired_ratio(samples, "on", "off")
    table.add(
        "Per-call cost with `shared_cache` on (ns/call)",
        {ADAPTER: f"{fmt_ns(on)} on; {fmt_ns(off)} off ({ratio:.2f}{X})"},
        f"unchanged (≤ 1.25{X} off: the same code path, so a gap is noise)",
        f"{ratio:.2f}{X}",
        ratio <= 1.25,
        "the store is read only when a token is due: a gap this size is a regression in the per-request path",
    )
