"""Server-side SVG charts: the geometry of stacked bars, computed here, drawn by a template.

No chart library and no script: the figures are small (a bar per day, a handful of series), an
SVG renders crisply at any width, prints, and passes the console's strict CSP. Every segment
carries its figure in a <title>, so hovering shows the exact number.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

# Colour-blind-safe (Okabe-Ito), in series order.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442",
           "#999999", "#000000")  # fmt: skip
WIDTH = 640
HEIGHT = 220
LEFT = 36  # room for the value axis
BOTTOM = 22  # room for the labels


@dataclass(frozen=True)
class Segment:
    x: float
    y: float
    width: float
    height: float
    colour: str
    title: str


@dataclass(frozen=True)
class Label:
    x: float
    text: str


@dataclass(frozen=True)
class Tick:
    y: float
    text: str


@dataclass(frozen=True)
class StackedBars:
    width: int
    height: int
    segments: list[Segment]
    labels: list[Label]
    ticks: list[Tick]
    legend: list[tuple[str, str]]  # (series, colour)
    empty: bool


def _nice_max(value: int) -> int:
    """A round top for the axis: 7 -> 10, 23 -> 25, 140 -> 150."""
    if value <= 5:
        return max(value, 1)
    magnitude = 10 ** (len(str(value)) - 1)
    for step in (1, 2, 2.5, 5, 10):
        top = int(step * magnitude)
        if top >= value:
            return top
    return value


def stacked_bars(
    groups: Sequence[tuple[str, Mapping[str, int]]],
    series: Sequence[str],
    *,
    label_every: int = 1,
) -> StackedBars:
    """One bar per group (a day, a bucket), stacked by series in `series` order."""
    colours = {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(series)}
    top = _nice_max(max((sum(values.values()) for _, values in groups), default=0))
    plot_height = HEIGHT - BOTTOM - 8
    slot = (WIDTH - LEFT) / max(len(groups), 1)
    bar = max(slot * 0.7, 1.0)
    segments: list[Segment] = []
    labels: list[Label] = []
    for index, (group, values) in enumerate(groups):
        x = LEFT + index * slot + (slot - bar) / 2
        base = float(HEIGHT - BOTTOM)
        for name in series:
            value = values.get(name, 0)
            if not value:
                continue
            height = value / top * plot_height
            base -= height
            segments.append(
                Segment(x, base, bar, height, colours[name], f"{group}: {name} {value}")
            )
        if index % label_every == 0:
            labels.append(Label(x + bar / 2, group))
    fractions = (0, 0.5, 1) if top % 2 == 0 else (0, 1)  # no "2" written at 1.5
    ticks = [Tick(HEIGHT - BOTTOM - plot_height * f, str(round(top * f))) for f in fractions]
    used = [name for name in series if any(values.get(name) for _, values in groups)]
    return StackedBars(
        width=WIDTH,
        height=HEIGHT,
        segments=segments,
        labels=labels,
        ticks=ticks,
        legend=[(name, colours[name]) for name in used],
        empty=not segments,
    )
