"""SVG bar charts from a run's numbers: plain SVG text, no plotting library.

Standard library only, so tests and docs tooling can import it without the benchmark's
dependencies.

The layout is sized from the text it holds: the label column from the widest label, the right
margin from the widest printed value, the width from the title and headings, so no text overlaps
a bar or another text, or runs off the image. A reader's browser picks the font, so widths are
estimated with the advance widths of DejaVu Sans (its bold for bold text), wider than Helvetica,
Arial or Segoe UI in every character used here: an estimate that errs towards room to spare.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape

__all__ = ["Bar", "Group", "bar_chart", "charts", "text_width"]

FONT_SIZE, TITLE_SIZE, AXIS_SIZE = 12, 15, 11
_MARGIN = 8  # between a text and the edge, a bar or another text
_SPAN = 360  # the longest bar
_MIN_WIDTH = 640
_BAR, _GAP, _HEADING = 20, 6, 26
_OURS, _OTHER = "#2b6cb0", "#a0aec0"

# Advance widths in thousandths of an em for the printable ASCII characters, space (32) to
# tilde (126), read from DejaVu Sans and DejaVu Sans Bold; any other character counts as a full em.
# fmt: off
_REGULAR = (
    318, 401, 460, 838, 636, 950, 780, 275, 390, 390, 500, 838, 318, 361, 318, 337, 636, 636, 636, 636, 636, 636,
    636, 636, 636, 636, 337, 337, 838, 838, 838, 531, 1000, 684, 686, 698, 770, 632, 575, 775, 752, 295, 295, 656,
    557, 863, 748, 787, 603, 787, 695, 635, 611, 732, 684, 989, 685, 611, 685, 390, 337, 390, 838, 500, 500, 613,
    635, 550, 635, 615, 352, 635, 634, 278, 278, 579, 278, 974, 634, 612, 635, 635, 411, 521, 392, 634, 592, 818,
    592, 592, 525, 636, 337, 636, 838,
)
_BOLD = (
    348, 456, 521, 838, 696, 1002, 872, 306, 457, 457, 523, 838, 380, 415, 380, 365, 696, 696, 696, 696, 696, 696,
    696, 696, 696, 696, 400, 400, 838, 838, 838, 580, 1000, 774, 762, 734, 830, 683, 683, 821, 837, 372, 372, 775,
    637, 995, 837, 850, 733, 850, 770, 720, 682, 812, 774, 1103, 771, 724, 725, 457, 365, 457, 838, 500, 500, 675,
    716, 593, 716, 678, 435, 716, 712, 343, 343, 665, 343, 1042, 712, 687, 716, 716, 493, 595, 478, 712, 652, 924,
    645, 652, 582, 712, 365, 712, 838,
)
# fmt: on


def text_width(text: str, size: float = FONT_SIZE, *, bold: bool = False) -> float:
    """The width `text` takes at `size` px, estimated on the wide side (see the module's docstring)."""
    table = _BOLD if bold else _REGULAR
    return size * sum(table[ord(c) - 32] if 32 <= ord(c) < 127 else 1000 for c in text) / 1000


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
    unit_one: str | None = None,
    fmt: Callable[[float], str] = _default_format,
    clip: float | None = None,
) -> str:
    """Horizontal bars, one scale for the whole chart (from 0 to the largest value, or to `clip`).

    Each value is printed after its bar with `unit` (`unit_one` when it prints as "1": "1 call",
    "64 calls"). A bar longer than `clip` is drawn to the edge with a break mark; its printed value
    stays exact.
    """
    values = [bar.value for group in groups for bar in group.bars]
    if not values:
        raise ValueError("a chart needs at least one bar")
    if any(value < 0 for value in values):
        raise ValueError("bar values must not be negative")

    def with_unit(value: float) -> str:
        number = fmt(value)
        return f"{number} {unit_one if unit_one is not None and number == '1' else unit}"

    top = clip if clip is not None else max(values)
    axis = "Scale: 0 to " + with_unit(top) + (" (longer bars cut)" if clip is not None and max(values) > clip else "")
    labels = [bar.label for group in groups for bar in group.bars]
    label_width = _MARGIN + max(text_width(label) for label in labels) + _MARGIN
    value_width = 6 + max(text_width(with_unit(value)) for value in values) + _MARGIN
    width = round(
        max(
            _MIN_WIDTH,
            label_width + _SPAN + value_width,
            _MARGIN + text_width(title, TITLE_SIZE, bold=True) + _MARGIN,
            *(_MARGIN + text_width(group.heading, bold=True) + _MARGIN for group in groups),
            label_width + text_width(axis, AXIS_SIZE) + _MARGIN,
        )
    )
    bars_x = round(label_width)
    scale = _SPAN / top if top > 0 else 0.0
    body: list[str] = []
    y = 44
    for group in groups:
        body.append(f'<text class="heading" x="{_MARGIN}" y="{y + 14}">{escape(group.heading)}</text>')
        y += _HEADING
        for bar in group.bars:
            clipped = clip is not None and bar.value > clip
            length = _SPAN if clipped else bar.value * scale
            colour = _OURS if bar.ours else _OTHER
            middle = y + _BAR / 2 + 4
            printed = escape(with_unit(bar.value))
            body.append(f'<text class="label" x="{bars_x - _MARGIN}" y="{middle}">{escape(bar.label)}</text>')
            body.append(
                f'<rect class="bar" x="{bars_x}" y="{y}" width="{length:.1f}" height="{_BAR}" fill="{colour}">'
                f"<title>{escape(bar.label)}: {printed}</title></rect>"
            )
            if clipped:
                x = bars_x + _SPAN * 0.85
                body.append(
                    f'<path class="break" d="M{x:.1f},{y + _BAR} l6,-{_BAR} M{x + 6:.1f},{y + _BAR} l6,-{_BAR}" '
                    'stroke="#ffffff" stroke-width="3"/>'
                )
            body.append(f'<text class="value" x="{bars_x + length + 6:.1f}" y="{middle}">{printed}</text>')
            y += _BAR + _GAP
        y += _GAP
    height = y + 24
    return "\n".join(
        [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title, {chr(34): "&quot;"})}">',
            f"<title>{escape(title)}</title>",
            "<style>text{font-family:-apple-system,'Segoe UI',Helvetica,Arial,'DejaVu Sans',sans-serif;"
            f"font-size:{FONT_SIZE}px;fill:#1a202c}}"
            f".title{{font-size:{TITLE_SIZE}px;font-weight:600}}.heading{{font-weight:600}}.label{{text-anchor:end}}"
            f".axis{{fill:#4a5568;font-size:{AXIS_SIZE}px}}</style>",
            f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
            f'<text class="title" x="{_MARGIN}" y="24">{escape(title)}</text>',
            *body,
            f'<text class="axis" x="{bars_x}" y="{height - 8}">{escape(axis)}</text>',
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
            "Per-request cost with a cached token, in nanoseconds (lower is better)",
            per,
            unit="ns",
            clip=2.5 * cookbook if cookbook else None,
        )
    herd: list[Group] = [*figures.get("herds", []), *figures.get("fleet", []), *figures.get("azure_sdk", [])]
    if figures.get("async_herd"):
        herd.append(figures["async_herd"])
    if herd:
        out["bench-herd.svg"] = bar_chart(
            "Credential calls when many ask at once (lower is better)", herd, unit="calls", unit_one="call"
        )
    group = figures.get("end_to_end")
    if group:
        out["bench-end-to-end.svg"] = bar_chart(
            "A real https request on loopback, and the adapter's auth step inside it, in microseconds",
            [Group(group.heading, [Bar(b.label, b.value / 1e3, b.ours) for b in group.bars])],
            unit="µs",
            fmt=lambda us: f"{us:,.1f}",
        )
    return out
