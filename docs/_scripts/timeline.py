"""Draw docs/img/token-timeline.svg: the life of one token in the cache.

Run `python docs/_scripts/timeline.py` after changing it; tests/project/test_docs.py checks the
committed SVG is this script's output. The figures are the cache's defaults: a one-hour token
and `refresh_margin=300`.
"""

from __future__ import annotations

import sys
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "img" / "token-timeline.svg"

LIFETIME = 60.0  # minutes
MARGIN = 5.0  # refresh_margin, 300 s
RENEWAL = 56.0  # the first request inside the window starts the renewal
LANDED = 56.5  # the credential answers
END = 66.0  # the axis runs a little past expiry

WIDTH, LEFT, RIGHT = 800, 90, 30
FRESH, WINDOW, NEXT, INK, MUTED = "#2e7d32", "#f9a825", "#1565c0", "#212121", "#616161"


def x(minute: float) -> str:
    return f"{LEFT + (WIDTH - LEFT - RIGHT) * minute / END:.1f}"


def text(at: float | str, y: int, words: str, *, anchor: str = "middle", size: int = 12, color: str = INK) -> str:
    where = at if isinstance(at, str) else x(at)
    return f'<text x="{where}" y="{y}" text-anchor="{anchor}" font-size="{size}" fill="{color}">{words}</text>'


def bar(start: float, end: float, y: int, color: str) -> str:
    width = float(x(end)) - float(x(start))
    return f'<rect x="{x(start)}" y="{y}" width="{width:.1f}" height="22" rx="3" fill="{color}"/>'


def line(minute: float, top: int, bottom: int, color: str = INK, dash: bool = False) -> str:
    style = ' stroke-dasharray="4 3"' if dash else ""
    return f'<line x1="{x(minute)}" y1="{top}" x2="{x(minute)}" y2="{bottom}" stroke="{color}"{style}/>'


def render() -> str:
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="300" viewBox="0 0 {WIDTH} 300"'
        ' font-family="Helvetica, Arial, sans-serif" role="img">',
        "<title>A token's life in the cache: issued, served, renewed in the background, expired</title>",
        '<rect width="100%" height="100%" fill="#ffffff"/>',
        # The bracket over the refresh window.
        line(LIFETIME - MARGIN, 40, 70, WINDOW),
        line(LIFETIME, 40, 70, WINDOW),
        f'<line x1="{x(LIFETIME - MARGIN)}" y1="44" x2="{x(LIFETIME)}" y2="44" stroke="{WINDOW}"/>',
        text(LIFETIME - MARGIN, 34, "refresh window: refresh_margin (300 s) before expiry", anchor="end"),
        # Issue and expiry of token 1, under the bars.
        line(0, 70, 195, MUTED, dash=True),
        text(0, 208, "token 1 issued"),
        line(LIFETIME, 70, 195, "#c62828", dash=True),
        text(LIFETIME, 208, "token 1 expires", color="#c62828"),
        # Token 1.
        text(f"{LEFT - 10}", 91, "token 1", anchor="end"),
        bar(0, LIFETIME - MARGIN, 75, FRESH),
        bar(LIFETIME - MARGIN, LIFETIME, 75, WINDOW),
        text((LIFETIME - MARGIN) / 2, 91, "served from the cache: no credential call", color="#ffffff"),
        # Token 2, and the renewal that fetched it.
        text(f"{LEFT - 10}", 141, "token 2", anchor="end"),
        bar(LANDED, END, 125, NEXT),
        text(LANDED, 119, "served from here on", anchor="start", size=11, color=NEXT),
        line(RENEWAL, 100, 125, INK),
        f'<path d="M {x(RENEWAL)} 125 l -4 -7 l 8 0 z" fill="{INK}"/>',
        text(RENEWAL, 160, "background renewal: the first request", anchor="end"),
        text(RENEWAL, 175, "in the window starts one credential call;", anchor="end"),
        text(RENEWAL, 190, "that request and the rest go out at once", anchor="end"),
        # The time axis.
        f'<line x1="{x(0)}" y1="225" x2="{x(END)}" y2="225" stroke="{MUTED}"/>',
    ]
    for minute in range(0, int(LIFETIME) + 1, 10):
        parts.append(line(minute, 225, 231, MUTED))
        parts.append(text(minute, 245, f"{minute} min", size=11, color=MUTED))
    notes = (
        "The window opens earlier at the credential's refresh_on, or at random with jitter; for a token shorter",
        "than twice refresh_margin, at half its lifetime. If the renewal fails, token 1 keeps being served.",
    )
    parts += [text(f"{LEFT}", 270 + 16 * i, note, anchor="start", size=11, color=MUTED) for i, note in enumerate(notes)]
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


if __name__ == "__main__":
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(render(), encoding="utf-8")
    sys.stdout.write(f"wrote {OUT}\n")
