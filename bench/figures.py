"""Measured figures: one value per round, summarised as the median and the min-max spread."""

import math
import statistics
from dataclasses import dataclass, field


def percentile(values, fraction):
    """Return the nearest-rank percentile of ``values``; ``fraction`` 0.99 is p99."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("percentile of no values")
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


@dataclass
class Figure:
    """One measured quantity with its value in each round."""

    key: str
    label: str
    unit: str
    values: list = field(default_factory=list)
    # Share of all cores' capacity that other processes used during each round, when measured.
    others: list = field(default_factory=list)

    @property
    def measured(self):
        return bool(self.values)

    @property
    def median(self):
        return statistics.median(self.values)

    @property
    def others_median(self):
        return statistics.median(self.others) if self.others else None

    @property
    def low(self):
        return min(self.values)

    @property
    def high(self):
        return max(self.values)


class Figures:
    """Every figure of one run, in the order they were first recorded."""

    def __init__(self):
        self._figures = {}
        self.skipped = {}

    def add(self, key, label, unit, value, others=None):
        """Record one round's value of the figure ``key``, creating the figure on first use.

        ``others`` is the share of the CPU that other processes used during the round.
        """
        figure = self._figures.get(key)
        if figure is None:
            figure = self._figures[key] = Figure(key, label, unit)
        figure.values.append(value)
        if others is not None:
            figure.others.append(others)
        return figure

    def skip(self, key, label, unit, reason):
        """Record that a figure was not measured, and why."""
        self._figures.setdefault(key, Figure(key, label, unit))
        self.skipped[key] = reason

    def get(self, key):
        return self._figures.get(key)

    def median(self, key):
        """Return the median of ``key``, or None when it was not measured."""
        figure = self._figures.get(key)
        return figure.median if figure is not None and figure.measured else None

    def __iter__(self):
        return iter(self._figures.values())

    def to_json(self):
        """Return every figure with its round values as JSON-ready data; :meth:`from_json` reads it back."""
        return [{"key": figure.key, "label": figure.label, "unit": figure.unit, "values": figure.values,
                 "others": figure.others, "skipped": self.skipped.get(figure.key)} for figure in self]

    @classmethod
    def from_json(cls, rows):
        figures = cls()
        for row in rows:
            figures._figures[row["key"]] = Figure(row["key"], row["label"], row["unit"], list(row["values"]),
                                                  list(row["others"]))
            if row.get("skipped"):
                figures.skipped[row["key"]] = row["skipped"]
        return figures


def format_number(value, unit=""):
    """Format a figure for the table: thousands separators, precision by size."""
    if value is None:
        return "n/a"
    if unit in ("ms",) and abs(value) < 100:
        return f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"
