"""``torchscope query``: SQL over a trace's spans, threads, processes, steps, attributes
and findings (docs/query.md)."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from typing import Any

from tracer import progress
from tracer.commands.reporting import load_reporting
from tracer.file.errors import one_line

ORDER = 65  # place in --help


def _cell(value: Any) -> str:
    """A value as the text table shows it (control characters from the trace blanked)."""
    if value is None:
        return "NULL"
    if isinstance(value, float):
        return f"{value:.6g}"
    return one_line(str(value))


def render_text(columns: list[str], rows: list[tuple]) -> str:
    """An aligned table, numbers to the right, and the row count."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    numeric = [
        any(isinstance(r[i], (int, float)) for r in rows)
        and all(isinstance(r[i], (int, float)) or r[i] is None for r in rows)
        for i in range(len(columns))
    ]

    def line(values: list[str]) -> str:
        return "  ".join(
            v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)
        ).rstrip()

    out = [line(columns), line(["-" * w for w in widths])] if columns else []
    out += [line(r) for r in cells]
    out.append(f"({len(rows):,} row{'' if len(rows) == 1 else 's'})")
    return "\n".join(out)


def render_json(columns: list[str], rows: list[tuple]) -> str:
    """One JSON object per row, keyed by column name."""
    return json.dumps([dict(zip(columns, row)) for row in rows], indent=2, default=str)


def write_csv(columns: list[str], rows: list[tuple]) -> None:
    """CSV with a header row, to stdout."""
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(["" if v is None else v for v in row] for row in rows)


def run(ns: argparse.Namespace) -> int:
    """Loads the trace into SQL tables and prints the statement's result."""
    from tracer.analyze.query import QueryError, connect
    from tracer.analyze.query import run as run_query

    trace = load_reporting(ns.file)
    with progress.shown(), progress.task("building the SQL tables"):
        con = connect(trace)
    try:
        columns, rows = run_query(con, ns.sql)
    except QueryError as exc:
        print(
            one_line(f"torchscope: query: {exc} (the tables and examples: docs/query.md)"),
            file=sys.stderr,
        )
        return 2
    finally:
        con.close()
    if ns.csv:
        write_csv(columns, rows)
    else:
        print(render_json(columns, rows) if ns.json else render_text(columns, rows))
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Declares ``query``."""
    p = sub.add_parser(
        "query",
        help="SQL over the trace: spans, attrs, threads, processes, steps, findings",
        description="Runs one SQL statement (DuckDB's dialect) over the trace's tables: "
        "spans, attrs, threads, processes, steps, findings, meta. See docs/query.md.",
    )
    p.add_argument("file")
    p.add_argument("sql", help='for instance "SELECT kind, count(*) FROM spans GROUP BY kind"')
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="rows as a JSON list of objects")
    fmt.add_argument("--csv", action="store_true", help="rows as CSV with a header")
    p.set_defaults(func=run)
