"""A report summary as one long-format CSV, for spreadsheets.

Long format (`section,key,subkey,value`, one figure a row) rather than one sheet per figure:
one download holds everything, a filter on `section` gives any one figure, and a pivot table
on `key` and `subkey` turns it back into a grid. Sections and their rows:

| section | key | subkey | value |
| --- | --- | --- | --- |
| `window` | `start`, `end`, `mailbox_id`, `generated_at` | | the report's parameters |
| `volume` | day (`YYYY-MM-DD`) | `total` | tickets created that day |
| `volume_by_state` | day | state | of those, in that state now |
| `volume_by_category` | day | category | of those, in that category |
| `first_response`, `resolution` | `count`, `median_seconds`, `p90_seconds` | | empty when no data |
| `backlog` | age bucket | `total` or an open state | open tickets now |
| `draft_acceptance` | `sent`, `unchanged`, `lightly_edited`, `rewritten`, `human_written` | | |
| `operators` | the user's email | a figure (`approvals`, `replies_sent`, ...) | count |
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

from communication_agent.services.reports import OPERATOR_FIGURES, DurationStats, ReportSummary

HEADER = ("section", "key", "subkey", "value")
Row = tuple[str, str, str, str | int | float | None]

# A spreadsheet runs a cell that starts with one of these as a formula; text we did not write
# (emails, categories) is prefixed with a quote so it stays text.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def summary_csv(summary: ReportSummary) -> str:
    """The whole summary as CSV text (RFC 4180: CRLF line ends, quoted where needed)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(HEADER)
    for section, key, subkey, value in _rows(summary):
        writer.writerow((section, _text(key), _text(subkey), "" if value is None else value))
    return out.getvalue()


def _text(value: str) -> str:
    return "'" + value if value.startswith(_FORMULA_STARTS) else value


def _rows(summary: ReportSummary) -> Iterator[Row]:
    yield "window", "start", "", summary.start.isoformat()
    yield "window", "end", "", summary.end.isoformat()
    yield "window", "mailbox_id", "", summary.mailbox_id
    yield "window", "generated_at", "", summary.generated_at.isoformat()
    for day in summary.volume:
        key = day.day.isoformat()
        yield "volume", key, "total", day.total
        yield from (("volume_by_state", key, s, n) for s, n in day.by_state.items())
        yield from (("volume_by_category", key, c, n) for c, n in day.by_category.items())
    yield from _durations("first_response", summary.first_response)
    yield from _durations("resolution", summary.resolution)
    for bucket in summary.backlog:
        yield "backlog", bucket.label, "total", bucket.total
        yield from (("backlog", bucket.label, s, n) for s, n in bucket.by_state.items())
    acceptance = summary.draft_acceptance
    for name in ("sent", "unchanged", "lightly_edited", "rewritten", "human_written"):
        yield "draft_acceptance", name, "", getattr(acceptance, name)
    for operator in summary.operators:
        for name in OPERATOR_FIGURES:
            yield "operators", operator.email, name, getattr(operator, name)


def _durations(section: str, stats: DurationStats) -> Iterator[Row]:
    yield section, "count", "", stats.count
    yield section, "median_seconds", "", stats.median_seconds
    yield section, "p90_seconds", "", stats.p90_seconds
