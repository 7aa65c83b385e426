"""6. The providers as openai calls them, on each openai measured, side by side in one run.

One child process per openai (`_provider_cost`): the one installed here, and each
`--openai-at DIR` (a `pip install --target DIR openai==X` directory put first on the child's
path; `python3 dev.py bench` adds the openai the target was set on). Each child times the
floor and the providers through openai's own token method, in interleaved rounds; a ratio is
the median over rounds of the ratio within each round.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from ._base import Context, X, fmt_ns, progress

ROOT = Path(__file__).resolve().parents[1]
TARGET = 1.5  # x a provider returning a fixed string, as openai calls it (issue 21)


def measure(directory: str | None, rounds: int, calls: int) -> dict[str, Any] | None:
    """`_provider_cost`'s figures in a child whose openai comes from `directory` (None: this one's)."""
    path = [str(ROOT)] if directory is None else [directory, str(ROOT)]
    inherited = os.environ.get("PYTHONPATH")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([*path, inherited] if inherited else path)}
    command = [sys.executable, "-m", "benchmarks._provider_cost", str(rounds), str(calls)]
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, timeout=1800, check=False)
    if result.returncode:
        progress(f"6. providers: the child for {directory or 'this openai'} failed: {result.stderr.strip()[-400:]}")
        return None
    figures: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return figures


def _version_key(figures: dict[str, Any]) -> tuple[int, ...]:
    return tuple(int(part) for part in figures["openai"].split(".")[:3] if part.isdigit())


def _cell(figures: dict[str, Any], side: str, kind: str) -> str:
    entry, floor = figures[side][kind], figures[side]["floor"]
    return f"{entry['ratio']:.2f}{X} ({fmt_ns(entry['ns'])}; floor {fmt_ns(floor['ns'])})"


def run(ctx: Context) -> None:
    if importlib.util.find_spec("openai") is None:
        progress("6. providers as openai calls them: no openai installed, skipped")
        return
    mode = ctx.mode
    targets: list[str | None] = [None, *ctx.openai_at]
    progress(
        f"6. providers as openai calls them, on {len(targets)} openai: {mode.cost_rounds} rounds x {mode.cost_calls:,}"
    )
    measured = [figures for target in targets if (figures := measure(target, mode.cost_rounds, mode.cost_calls))]
    if not measured:
        return
    measured.sort(key=_version_key)
    columns = {f["openai"]: f"openai {f['openai']}" for f in measured}
    table = ctx.report.table("providers", "The providers as openai calls them, per openai (a process each)", columns)
    for side, kind, label, floor in (
        ("sync", "provider", "`token_provider`: `AzureOpenAI._get_azure_ad_token()`", "`lambda: token`"),
        (
            "async",
            "provider",
            "`async_token_provider`: `await AsyncAzureOpenAI._get_azure_ad_token()`",
            "`async def f(): return token`",
        ),
    ):
        worst = max(f[side][kind]["ratio"] for f in measured)
        table.add(
            f"6. {label}, cached token ({X} {floor})",
            {f["openai"]: _cell(f, side, kind) for f in measured},
            f"≤ {TARGET:g}{X} on every openai",
            f"{worst:.2f}{X}",
            worst <= TARGET,
            f"above {TARGET:g}{X} its floor on some openai: compare the columns",
        )
    table.add(
        f"6. … the shapes not taken ({X} the same floors)",
        {
            f["openai"]: f"sync as a class with `__call__` {f['sync']['class']['ratio']:.2f}{X}; async as a plain "
            f"`async def` {f['async']['plain']['ratio']:.2f}{X}"
            for f in measured
        },
        "for comparison",
        "—",
        True,
    )
    table.add(
        f"6. azure-identity's `get_bearer_token_provider`, asked the same way ({X} the same floors)",
        {
            f["openai"]: f"sync {_cell(f, 'sync', 'azid')}; `azure.identity.aio` {_cell(f, 'async', 'azid')}"
            for f in measured
        },
        "for comparison",
        "—",
        True,
    )
    table.notes.append(
        "Row 6: each openai in a child process of its own (`benchmarks/_provider_cost.py`), the floor and the "
        "providers called through openai's own token method in the same interleaved rounds; the ratio is the "
        "median over rounds of the ratio within each round. The sync provider is a closure: an instance's "
        "`__call__` costs more to call. The async one is a function returning the coroutine, so that it can "
        "refuse a call with no running event loop (a sync client); it asks for the loop only until a call "
        "finds one, because `asyncio.get_running_loop()` makes a `getpid()` system call on Python 3.11."
    )
    ctx.report.summary.append(
        "`token_provider` / `async_token_provider` as openai calls them, per openai: "
        + "; ".join(
            f"{f['sync']['provider']['ratio']:.2f}{X} / {f['async']['provider']['ratio']:.2f}{X} a provider "
            f"returning a fixed string on openai {f['openai']} (azure-identity's `get_bearer_token_provider`: "
            f"{f['sync']['azid']['ratio']:.1f}{X} / {f['async']['azid']['ratio']:.1f}{X})"
            for f in measured
        )
        + "."
    )
