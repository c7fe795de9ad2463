"""Bar charts for the dashboard, computed here and drawn by the template as plain SVG.

Coordinates are in SVG user units inside a ``viewBox`` of WIDTH x HEIGHT; the
template only copies them into ``<rect>`` and ``<text>`` elements.
"""

import math
from dataclasses import dataclass
from datetime import timedelta

WIDTH = 480
HEIGHT = 140
LEFT = 34       # room for the value labels of the y axis
BOTTOM = 18     # room for the hour labels of the x axis
TOP = 8
BAR_GAP = 2


@dataclass(frozen=True)
class Bar:
    """One hour's bar; ``label`` is its tooltip text."""

    x: float
    y: float
    width: float
    height: float
    count: int
    label: str


@dataclass(frozen=True)
class Tick:
    """An axis label at position ``at`` (y for the value axis, x for the time axis)."""

    at: float
    label: str


@dataclass(frozen=True)
class BarChart:
    """A chart ready to draw: its bars, axis labels and totals."""

    title: str
    css_class: str
    bars: tuple
    value_ticks: tuple
    time_ticks: tuple
    total: int
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    baseline: float = HEIGHT - BOTTOM


def _nice_ceiling(value):
    """Return the smallest of 1, 2, 5, 10, 20, 50, ... that is at least ``value``."""
    if value <= 1:
        return 1
    magnitude = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if step * magnitude >= value:
            return step * magnitude
    return 10 * magnitude


def hourly_chart(title, css_class, counts, start, noun):
    """Return a BarChart of per-hour ``counts``; ``start`` is the UTC start of the first hour.

    ``noun`` completes the tooltips, as in "14:00-15:00 UTC: 12 failed".
    """
    plot_width = WIDTH - LEFT
    plot_height = HEIGHT - BOTTOM - TOP
    baseline = HEIGHT - BOTTOM
    scale_max = _nice_ceiling(max(counts, default=0))
    slot = plot_width / max(len(counts), 1)

    bars = []
    time_ticks = []
    for index, count in enumerate(counts):
        hour = start + timedelta(hours=index)
        height = plot_height * count / scale_max
        x = LEFT + index * slot
        label = f"{hour:%H:00}-{hour + timedelta(hours=1):%H:00} UTC: {count} {noun}"
        bars.append(Bar(round(x + BAR_GAP / 2, 2), round(baseline - height, 2), round(slot - BAR_GAP, 2),
                        round(height, 2), count, label))
        if index % 6 == 0:
            time_ticks.append(Tick(round(x + slot / 2, 2), f"{hour:%H:00}"))

    value_ticks = (Tick(baseline, "0"), Tick(round(baseline - plot_height / 2, 2), _short(scale_max / 2)),
                   Tick(TOP, _short(scale_max)))
    return BarChart(title, css_class, tuple(bars), value_ticks, tuple(time_ticks), sum(counts))


def _short(value):
    """Format an axis value compactly: 5, 2.5, 1.2k, 3M."""
    if value >= 1_000_000:
        return f"{value / 1_000_000:g}M"
    if value >= 1000:
        return f"{value / 1000:g}k"
    return f"{value:g}"
