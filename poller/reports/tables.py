"""Rows for people and programs: aligned tables, CSV and JSON, durations and times.

Every ``poller`` command that prints rows (``report``, ``status``, ``watch``, ``demo``) formats
them here, so a duration or a moment reads the same everywhere:

* tables for people: aligned columns, times as ISO UTC to the second
  (``2025-03-01T12:00:05Z``), durations humanised (``12m05s``);
* CSV: a header row, then raw values (seconds as numbers, ISO 8601 times, ``true``/``false``);
* JSON: a list of objects with the same raw values (numbers as numbers, ``null`` for
  "not known").
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from poller.store.detail_records import EXACT_SOURCES
from poller.store.reports import Report, Value


def format_duration(seconds: float) -> str:
    """Seconds for people, to the second: ``45s``, ``12m05s``, ``1h02m03s``, ``2d03h04m05s``."""
    sign = "-" if seconds < 0 else ""
    rest = int(abs(seconds) + 0.5)
    days, rest = divmod(rest, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{sign}{days}d{hours:02d}h{minutes:02d}m{secs:02d}s"
    if hours:
        return f"{sign}{hours}h{minutes:02d}m{secs:02d}s"
    if minutes:
        return f"{sign}{minutes}m{secs:02d}s"
    return f"{sign}{secs}s"


def format_time(moment: datetime) -> str:
    """A moment for people: ISO UTC to the second (``2025-03-01T12:00:05Z``)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def raw_value(value: Value) -> Value:
    """A cell for CSV and JSON: full ISO 8601 UTC times; everything else as it is."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return value


Cell = Callable[[dict[str, Value]], str]
"""Renders one table cell from a row."""


@dataclass(frozen=True, slots=True)
class TableColumn:
    """One column of table output."""

    header: str
    cell: Cell
    right: bool = False
    """Right-align (numbers, durations)."""
    group: bool = False
    """Blank a value equal to the one above (section names)."""


def text_column(key: str, header: str | None = None, *, group: bool = False) -> TableColumn:
    """A column showing ``row[key]`` as text (blank when not known)."""
    return TableColumn(header or key, lambda row: "" if row[key] is None else str(row[key]),
                       group=group)


def number_column(key: str, header: str | None = None) -> TableColumn:
    """A right-aligned count."""
    return TableColumn(header or key, lambda row: "" if row[key] is None else str(row[key]),
                       right=True)


def time_column(key: str, header: str) -> TableColumn:
    """A moment, ISO UTC to the second."""
    def cell(row: dict[str, Value]) -> str:
        value = row[key]
        return format_time(value) if isinstance(value, datetime) else ""
    return TableColumn(header, cell)


def duration_column(key: str, header: str) -> TableColumn:
    """Seconds, humanised."""
    def cell(row: dict[str, Value]) -> str:
        value = row[key]
        return format_duration(float(value)) if isinstance(value, int | float) else ""
    return TableColumn(header, cell, right=True)


def flag_column(key: str, header: str) -> TableColumn:
    """A boolean as ``yes`` or blank."""
    return TableColumn(header, lambda row: "yes" if row[key] else "")




def exact_ends(joined: Value, left: Value) -> str:
    """Which ends of a stay the provider timed: ``both`` (a member still present: its join),
    ``joined``, ``left`` or ``none``."""
    exact_join, exact_left = joined in EXACT_SOURCES, left is None or left in EXACT_SOURCES
    if exact_join and exact_left:
        return "both"
    return "joined" if exact_join else "left" if exact_left and left is not None else "none"


def render_table(columns: list[TableColumn], rows: list[dict[str, Value]]) -> str:
    """Rows as aligned text columns under a header and a rule of dashes."""
    cells = [[column.cell(row) for column in columns] for row in rows]
    for index, column in enumerate(columns):
        if column.group:
            previous = None
            for line in cells:
                line[index], previous = ("" if line[index] == previous else line[index],
                                         line[index])
    widths = [max([len(column.header), *(len(line[i]) for line in cells)])
              for i, column in enumerate(columns)]

    def join(values: list[str]) -> str:
        padded = (value.rjust(width) if column.right else value.ljust(width)
                  for value, width, column in zip(values, widths, columns, strict=True))
        return "  ".join(padded).rstrip()

    lines = [join([c.header for c in columns]), join(["-" * w for w in widths])]
    lines += [join(line) for line in cells]
    return "\n".join(lines) + "\n"


def render_csv(report: Report) -> str:
    """A header row, then one line per row of raw values."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(report.columns)
    for row in report.rows:
        writer.writerow([_csv_value(row[name]) for name in report.columns])
    return buffer.getvalue()


def _csv_value(value: Value) -> Value:
    if isinstance(value, bool):
        return "true" if value else "false"
    return _report_value(value)


REPORT_DECIMALS = 3
"""Floats in CSV and JSON reports (averages of seconds and the like) are rounded to this many
decimals: SQL ``AVG`` otherwise prints float noise (``61.333333333333336``)."""


def _report_value(value: Value) -> Value:
    if isinstance(value, float):
        return round(value, REPORT_DECIMALS)
    return raw_value(value)


def render_json(report: Report) -> str:
    """A JSON list of objects, one per row, keys in column order."""
    objects = [{name: _report_value(row[name]) for name in report.columns}
               for row in report.rows]
    return json.dumps(objects, indent=2, ensure_ascii=False) + "\n"
