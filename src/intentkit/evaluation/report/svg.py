"""Small SVG charts built as strings: axes, line charts, bar charts.

Why hand-built SVG rather than a charting library: the page must be one offline file under ~2 MB
for 150 labels. An inlined library (Plotly ~3.5 MB, Vega ~800 KB, Chart.js ~200 KB) would be most
of the page and render only after its JS runs; a few hundred lines of SVG text are ~30 KB in all,
show without JS, print and scale cleanly, and a ``<title>`` per mark gives hover text for free.
matplotlib's SVG backend was the other candidate: ~10x larger output (every glyph a path) and
no stable ids/attributes for the page's JS to hook into.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

PALETTE = ("#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2")


def esc(value: Any) -> str:
    """HTML/XML-escape ``value`` (quotes included: safe inside attributes)."""
    return html.escape(str(value), quote=True)


def fmt(value: float | None, digits: int = 3) -> str:
    """A number for display: fixed ``digits`` decimals, or an em dash for None/NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:.{digits}f}"


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round tick values covering [lo, hi] (steps of 1, 2 or 5 x 10^k)."""
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / max(n, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    start = math.ceil(lo / step - 1e-9) * step
    ticks = []
    v = start
    while v <= hi + 1e-9 * step:
        ticks.append(round(v, 10))
        v += step
    return ticks


def _tick_label(v: float) -> str:
    if abs(v) >= 1000:
        return f"{v / 1000:g}k"
    return f"{v:g}"


@dataclass
class Frame:
    """A plot area inside a ``width`` x ``height`` SVG, with data ranges and scaling."""

    width: int
    height: int
    x_range: tuple[float, float]
    y_range: tuple[float, float]
    left: int = 52
    right: int = 16
    top: int = 28
    bottom: int = 44

    def sx(self, x: float) -> float:
        """Data x to pixel x."""
        lo, hi = self.x_range
        span = (hi - lo) or 1.0
        return self.left + (x - lo) / span * (self.width - self.left - self.right)

    def sy(self, y: float) -> float:
        """Data y to pixel y (SVG's y grows downwards)."""
        lo, hi = self.y_range
        span = (hi - lo) or 1.0
        return self.height - self.bottom - (y - lo) / span * (self.height - self.top - self.bottom)

    def axes(self, x_label: str, y_label: str, *, x_ticks: bool = True) -> str:
        """Grid lines, tick labels and axis titles."""
        parts = []
        x0, x1 = self.left, self.width - self.right
        y0, y1 = self.height - self.bottom, self.top
        for t in nice_ticks(*self.y_range):
            y = self.sy(t)
            parts.append(f'<line class="grid" x1="{x0}" x2="{x1}" y1="{y:.1f}" y2="{y:.1f}"/>')
            parts.append(
                f'<text class="tick" x="{x0 - 6}" y="{y + 4:.1f}" text-anchor="end">'
                f"{_tick_label(t)}</text>"
            )
        if x_ticks:
            for t in nice_ticks(*self.x_range):
                x = self.sx(t)
                parts.append(
                    f'<text class="tick" x="{x:.1f}" y="{y0 + 16}" text-anchor="middle">'
                    f"{_tick_label(t)}</text>"
                )
        parts.append(f'<line class="axis" x1="{x0}" x2="{x1}" y1="{y0}" y2="{y0}"/>')
        parts.append(f'<line class="axis" x1="{x0}" x2="{x0}" y1="{y0}" y2="{y1}"/>')
        parts.append(
            f'<text class="label" x="{(x0 + x1) / 2:.0f}" y="{self.height - 8}" '
            f'text-anchor="middle">{esc(x_label)}</text>'
        )
        parts.append(
            f'<text class="label" transform="translate(14,{(y0 + y1) / 2:.0f}) rotate(-90)" '
            f'text-anchor="middle">{esc(y_label)}</text>'
        )
        return "".join(parts)

    def legend(self, items: Sequence[tuple[str, str]], *, dashed: Sequence[bool] = ()) -> str:
        """A one-row legend above the plot area: (name, colour) pairs."""
        parts, x = [], self.left
        for k, (name, color) in enumerate(items):
            dash = ' stroke-dasharray="5 3"' if k < len(dashed) and dashed[k] else ""
            parts.append(
                f'<line x1="{x}" x2="{x + 18}" y1="12" y2="12" stroke="{color}" '
                f'stroke-width="2.5"{dash}/>'
                f'<text class="legend" x="{x + 23}" y="16">{esc(name)}</text>'
            )
            x += 30 + 7 * len(name)
        return "".join(parts)


def svg(width: int, height: int, body: str, *, label: str, css_class: str = "chart") -> str:
    """Wrap ``body`` in an ``<svg>`` with a viewBox (scales with the page) and an aria label."""
    return (
        f'<svg class="{css_class}" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" role="img" aria-label="{esc(label)}">{body}</svg>'
    )


@dataclass
class Series:
    """One line of a :func:`line_chart`."""

    name: str
    xs: Sequence[float]
    ys: Sequence[float | None]
    color: str
    dashed: bool = False
    points: bool = False  # draw a dot with a hover title at every point (few-point series)


def line_chart(
    series: Sequence[Series],
    *,
    x_label: str,
    y_label: str,
    label: str,
    width: int = 560,
    height: int = 300,
    x_range: tuple[float, float] | None = None,
    y_range: tuple[float, float] | None = None,
    marker: tuple[float, str] | None = None,
) -> str:
    """Lines (None values break a line) with optional dots and one vertical marker line."""
    xs = [x for s in series for x in s.xs]
    ys = [y for s in series for y in s.ys if y is not None]
    if not xs or not ys:
        return '<p class="muted">no data</p>'
    if y_range is None:
        lo, hi = min(ys), max(ys)
        pad = (hi - lo) * 0.08 or 0.5
        y_range = (lo - pad if lo - pad > 0 or lo < 0 else 0.0, hi + pad)
    if x_range is None:
        # A single evaluation (one epoch) has one x: give it room instead of a zero-width axis.
        x_range = (min(xs), max(xs)) if max(xs) > min(xs) else (min(xs) - 1, max(xs) + 1)
    f = Frame(width, height, x_range, y_range)
    parts = [
        f.axes(x_label, y_label),
        f.legend([(s.name, s.color) for s in series], dashed=[s.dashed for s in series]),
    ]
    for s in series:
        dash = ' stroke-dasharray="5 3"' if s.dashed else ""
        run: list[str] = []
        runs = [run]
        for x, y in zip(s.xs, s.ys, strict=True):
            if y is None:
                run = []
                runs.append(run)
                continue
            run.append(f"{f.sx(x):.1f},{f.sy(y):.1f}")
        for r in runs:
            if len(r) > 1:
                parts.append(
                    f'<polyline fill="none" stroke="{s.color}" stroke-width="2"{dash} '
                    f'points="{" ".join(r)}"><title>{esc(s.name)}</title></polyline>'
                )
        if s.points:
            for x, y in zip(s.xs, s.ys, strict=True):
                if y is not None:
                    parts.append(
                        f'<circle cx="{f.sx(x):.1f}" cy="{f.sy(y):.1f}" r="3.5" fill="{s.color}">'
                        f"<title>{esc(s.name)} at {x:g}: {y:.4f}</title></circle>"
                    )
    if marker is not None:
        mx, text = marker
        x = f.sx(mx)
        parts.append(
            f'<line class="marker" x1="{x:.1f}" x2="{x:.1f}" y1="{f.top}" '
            f'y2="{height - f.bottom}"/><text class="marker-label" x="{x + 4:.1f}" '
            f'y="{f.top + 12}">{esc(text)}</text>'
        )
    return svg(width, height, "".join(parts), label=label)


def bar_chart(
    categories: Sequence[str],
    stacks: Sequence[tuple[str, Sequence[float], str]],
    *,
    y_label: str,
    label: str,
    width: int = 900,
    height: int = 260,
) -> str:
    """Stacked vertical bars, one per category; each bar's ``<title>`` lists its parts.

    Category names are drawn under the bars when there are at most 40 of them; beyond that they
    would overlap, so only the hover title names the bar.
    """
    n = len(categories)
    if n == 0:
        return '<p class="muted">no data</p>'
    totals = [sum(s[1][i] for s in stacks) for i in range(n)]
    show_names = n <= 40
    bottom = 110 if show_names else 30
    f = Frame(
        width,
        height + (80 if show_names else 0),
        (0, n),
        (0, max(totals) * 1.05 or 1),
        bottom=bottom,
    )
    parts = [f.axes("", y_label, x_ticks=False), f.legend([(s[0], s[2]) for s in stacks])]
    step = f.sx(1) - f.sx(0)
    bar = max(step * 0.8, 1.0)
    for i, name in enumerate(categories):
        x = f.sx(i) + (step - bar) / 2
        base = 0.0
        tip = esc(name) + "".join(f"&#10;{esc(s[0])}: {s[1][i]:g}" for s in stacks)
        parts.append("<g>")
        for _, values, color in stacks:
            v = values[i]
            if v:
                y_top, y_bot = f.sy(base + v), f.sy(base)
                parts.append(
                    f'<rect x="{x:.1f}" y="{y_top:.1f}" width="{bar:.1f}" '
                    f'height="{y_bot - y_top:.1f}" fill="{color}"/>'
                )
            base += v
        parts.append(f"<title>{tip}</title></g>")
        if show_names:
            cx = x + bar / 2
            y = f.sy(0) + 8
            parts.append(
                f'<text class="tick" transform="translate({cx:.1f},{y:.1f}) rotate(55)">'
                f"{esc(name)}</text>"
            )
    return svg(width, f.height, "".join(parts), label=label)
