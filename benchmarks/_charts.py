"""SVG bar charts from a run's numbers: plain SVG text, no plotting library.

Standard library only, so tests and docs tooling can import it without the benchmark's
dependencies.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape

__all__ = ["Bar", "Group", "bar_chart", "charts"]

_LABEL_WIDTH = 300  # left column for the bar labels
_VALUE_WIDTH = 110  # right margin for the value printed after each bar
_BAR, _GAP, _HEADING = 20, 6, 26
_OURS, _OTHER = "#2b6cb0", "#a0aec0"


@dataclass(frozen=True)
class Bar:
    label: str
    value: float
    ours: bool = False  # this library's contender: drawn in the accent colour


@dataclass(frozen=True)
class Group:
    heading: str
    bars: Sequence[Bar]


def _default_format(value: float) -> str:
    return f"{value:,.0f}"


def bar_chart(
    title: str,
    groups: Sequence[Group],
    *,
    unit: str,
    fmt: Callable[[float], str] = _default_format,
    clip: float | None = None,
    width: int = 760,
) -> str:
    """Horizontal bars, one scale for the whole chart (from 0 to the largest value, or to `clip`).

    A bar longer than `clip` is drawn to the edge with a break mark; its printed value stays exact.
    """
    values = [bar.value for group in groups for bar in group.bars]
    if not values:
        raise ValueError("a chart needs at least one bar")
    if any(value < 0 for value in values):
        raise ValueError("bar values must not be negative")
    top = clip if clip is not None else max(values)
    span = width - _LABEL_WIDTH - _VALUE_WIDTH
    scale = span / top if top > 0 else 0.0
    body: list[str] = []
    y = 44
    for group in groups:
        body.append(f'<text class="heading" x="8" y="{y + 14}">{escape(group.heading)}</text>')
        y += _HEADING
        for bar in group.bars:
            clipped = clip is not None and bar.value > clip
            length = span if clipped else bar.value * scale
            colour = _OURS if bar.ours else _OTHER
            middle = y + _BAR / 2 + 4
            body.append(f'<text class="label" x="{_LABEL_WIDTH - 8}" y="{middle}">{escape(bar.label)}</text>')
            body.append(
                f'<rect class="bar" x="{_LABEL_WIDTH}" y="{y}" width="{length:.1f}" height="{_BAR}" fill="{colour}">'
                f"<title>{escape(bar.label)}: {escape(fmt(bar.value))} {escape(unit)}</title></rect>"
            )
            if clipped:
                x = _LABEL_WIDTH + span * 0.85
                body.append(
                    f'<path class="break" d="M{x:.1f},{y + _BAR} l6,-{_BAR} M{x + 6:.1f},{y + _BAR} l6,-{_BAR}" '
                    'stroke="#ffffff" stroke-width="3"/>'
                )
            body.append(
                f'<text class="value" x="{_LABEL_WIDTH + length + 6:.1f}" y="{middle}">{escape(fmt(bar.value))}</text>'
            )
            y += _BAR + _GAP
        y += _GAP
    height = y + 24
    axis = f"0 to {fmt(top)} {unit}" + (" (longer bars cut)" if clip is not None and max(values) > clip else "")
    return "\n".join(
        [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title, {chr(34): "&quot;"})}">',
            f"<title>{escape(title)}</title>",
            "<style>text{font-family:-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;font-size:12px;fill:#1a202c}"
            ".title{font-size:15px;font-weight:600}.heading{font-weight:600}.label{text-anchor:end}"
            ".axis{fill:#4a5568;font-size:11px}</style>",
            f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
            f'<text class="title" x="8" y="24">{escape(title)}</text>',
            *body,
            f'<text class="axis" x="{_LABEL_WIDTH}" y="{height - 8}">Scale: {escape(axis)}</text>',
            "</svg>",
            "",
        ]
    )


def charts(figures: Mapping[str, Any]) -> dict[str, str]:
    """The SVG charts a run's figures make, by file name (a chart whose figures are missing is left out)."""
    out: dict[str, str] = {}
    per = [g for g in (figures.get("per_request"), figures.get("per_await"), figures.get("side_by_side")) if g]
    if per:
        cookbook = next((b.value for b in per[0].bars if "cookbook" in b.label), None)
        out["bench-per-request.svg"] = bar_chart(
            "Per-request cost with a cached token (lower is better)",
            per,
            unit="ns",
            clip=2.5 * cookbook if cookbook else None,
        )
    herd: list[Group] = [*figures.get("herds", []), *figures.get("fleet", []), *figures.get("azure_sdk", [])]
    if figures.get("async_herd"):
        herd.append(figures["async_herd"])
    if herd:
        out["bench-herd.svg"] = bar_chart("Credential calls (lower is better)", herd, unit="credential calls")
    group = figures.get("end_to_end")
    if group:
        out["bench-end-to-end.svg"] = bar_chart(
            "A real https request on loopback, and the adapter's auth step inside it",
            [Group(group.heading, [Bar(b.label, b.value / 1e3, b.ours) for b in group.bars])],
            unit="µs",
            fmt=lambda us: f"{us:,.1f}",
        )
    return out
