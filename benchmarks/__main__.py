"""`python -m benchmarks`: run the scenarios, print the report, optionally write docs and charts.

    python -m benchmarks                      # full run (a few minutes)
    python -m benchmarks --short              # CI: same tables, fewer rounds
    python -m benchmarks --baseline 54a2ef3   # also this checkout beside another revision, same run
    python -m benchmarks --markdown docs/benchmarks.md   # also rewrite its generated block + charts
    python -m benchmarks --readme README.md   # also rewrite the README's headline figures
    python -m benchmarks --openai-at DIR      # also the providers on the openai installed in DIR

Progress goes to stderr, the Markdown report to stdout. Figures are printed, never asserted:
a missed target shows as ✗ with a note, and the exit status stays 0.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from types import ModuleType

from . import (
    _baseline,
    async_provider,
    azure_sdk,
    end_to_end,
    fleet,
    herds,
    per_request,
    postgres,
    providers,
    redis_pools,
    side_by_side,
    slow_credential,
)
from ._base import FULL, SHORT, SUMMARY_BEGIN, SUMMARY_END, Context, Report, progress, write_markdown
from ._charts import charts
from ._contenders import lib

# The scenarios, in the order they run and appear; each adds rows and figures to the report.
SCENARIOS: tuple[ModuleType, ...] = (
    per_request,
    herds,
    slow_credential,
    end_to_end,
    async_provider,
    providers,
    fleet,
    azure_sdk,
    redis_pools,
    side_by_side,
    postgres,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--short", action="store_true", help="fewer rounds (CI)")
    parser.add_argument(
        "--baseline",
        metavar="REV_OR_DIR",
        help="also measure another copy of the library, side by side in the same run: a git revision of "
        "this repository (extracted with git archive into a temporary directory) or a checkout / its src",
    )
    parser.add_argument(
        "--markdown", type=Path, metavar="FILE", help="rewrite FILE's generated block; charts go to img/ beside it"
    )
    parser.add_argument(
        "--readme", type=Path, metavar="FILE", help="rewrite FILE's generated summary block (the headline figures)"
    )
    parser.add_argument("--charts", type=Path, metavar="DIR", help="write the SVG charts into DIR")
    parser.add_argument(
        "--openai-at",
        action="append",
        default=[],
        metavar="DIR",
        help="also measure the providers on the openai installed in DIR (pip install --target DIR openai==X), "
        "in a child process; repeatable",
    )
    parser.add_argument("--only", nargs="+", metavar="SCENARIO", help="run only these scenarios (module names)")
    args = parser.parse_args(argv)
    mode = SHORT if args.short else FULL
    given = list(argv if argv is not None else sys.argv[1:])
    for i in reversed(range(len(given))):  # the nox session adds --openai-at itself: not the user's command
        if given[i] == "--openai-at":
            del given[i : i + 2]
    command = " ".join(["python3 dev.py bench", *given])
    scenarios = [s for s in SCENARIOS if not args.only or s.__name__.rsplit(".", 1)[-1] in args.only]
    if args.only and len(scenarios) != len(args.only):
        known = ", ".join(s.__name__.rsplit(".", 1)[-1] for s in SCENARIOS)
        parser.error(f"--only takes scenario names: {known}")
    report = Report(mode, command)
    ctx = Context(mode, report, openai_at=args.openai_at)
    with _baseline.temporary() as work:
        if args.baseline:
            src, ctx.baseline_name = _baseline.source(args.baseline, Path(work))
            ctx.baseline = _baseline.load(src)
            progress(f"baseline {ctx.baseline_name}: {ctx.baseline.__file__} (this checkout: {lib.__file__})")
        started = time.monotonic()
        for scenario in scenarios:
            scenario.run(ctx)
        report.seconds = time.monotonic() - started
    svgs = charts(report.figures)
    chart_dir = args.charts or (args.markdown.parent / "img" if args.markdown else None)
    links: list[str] = []
    if chart_dir is not None:
        chart_dir.mkdir(parents=True, exist_ok=True)
        for name, svg in svgs.items():
            (chart_dir / name).write_text(svg, encoding="utf-8")
            links.append(
                f"img/{name}" if args.markdown and chart_dir == args.markdown.parent / "img" else str(chart_dir / name)
            )
        progress(f"charts: {', '.join(str(chart_dir / name) for name in svgs)}")
    text = report.markdown(links)
    if args.markdown:
        write_markdown(args.markdown, text)
        progress(f"wrote the generated block of {args.markdown}")
    if args.readme:
        write_markdown(args.readme, report.summary_markdown(), SUMMARY_BEGIN, SUMMARY_END)
        progress(f"wrote the generated summary of {args.readme}")
    print(text)
    if report.missed:
        progress(f"targets missed (figures are not asserted): {'; '.join(report.missed)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
