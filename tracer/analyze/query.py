"""A trace as SQL tables (``torchscope query``), the way Perfetto's trace processor
lets people ask their own questions of a trace.

The engine is DuckDB: a columnar, vectorised engine that scans the loaded
trace's numpy columns in place (a dict of arrays is a table to it, no row is
copied through Python), so a GROUP BY over a million spans takes tens of
milliseconds. SQLite, which stores the trace file, would need every span
inserted as a row first and aggregates row by row (``benchmarks/bench_query.py``
measures both). The numbers are the ones ``summary`` shows: self time is
``Trace.self_ns`` (per thread, covered time), imports and compilations are
``tracer.analyze.scope``'s.

Nothing from the trace is ever put into SQL text: its values reach DuckDB as
arrays. The database is in memory, with file access, extension loading and
Python-variable scans switched off and the configuration locked, so a query
reads these tables and nothing else.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from tracer.analyze import aggregate
from tracer.analyze.lanes import thread_names
from tracer.analyze.scope import aside_mask
from tracer.file.trace import Trace

TABLES = ("spans", "attrs", "threads", "processes", "steps", "findings", "meta")

# File access, extensions and scans of Python variables off: a query sees the
# trace's tables only. DuckDB refuses to switch these back on while running.
_SAFE_CONFIG = {
    "enable_external_access": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "python_enable_replacements": False,
}


class QueryError(Exception):
    """A statement DuckDB refused: its message, first line only."""


def _text(values: np.ndarray) -> np.ndarray:
    """An object array of str or None (what DuckDB reads as VARCHAR)."""
    return np.array([None if v is None else str(v) for v in values], dtype=object)


def _value_columns(value: Any) -> tuple[str | None, float | None]:
    """An attribute value as (text, number): a string as itself, anything else
    as its JSON; numbers and booleans also as a DOUBLE for arithmetic."""
    if isinstance(value, str):
        return value, None
    if isinstance(value, bool):
        return ("true" if value else "false"), float(value)
    if isinstance(value, int):  # the common case, 20x faster than json.dumps
        return str(value), float(value)
    number = float(value) if isinstance(value, float) else None
    return json.dumps(value, default=str), number


def _span_columns(trace: Trace) -> dict[str, np.ndarray]:
    """One entry per span; strings as codes (joined to their text in SQL)."""
    n = trace.n
    set_of_row, sets = trace.attr_sets()
    internal_sets = np.array([v.get("internal") is True for v in sets] + [False], dtype=bool)
    step_code = trace.code("step")
    is_step = trace.kind == step_code if step_code >= 0 else np.zeros(n, dtype=bool)
    step_rows = np.flatnonzero(is_step)
    seed = np.full(n, -1, dtype=np.int64)
    seed[step_rows] = step_rows
    owner = aggregate.inherit(trace.parent, trace.start_order, seed) if n else seed
    index = np.full(n + 1, -1, dtype=np.int64)  # slot n: no step
    raw = trace.attr_values(step_rows, "index", None)
    index[step_rows] = [v if isinstance(v, int) and v >= 0 else -1 for v in raw]
    t0 = int(trace.start_ns.min()) if n else 0
    return {
        "id": trace.id,
        "parent": trace.parent,
        "depth": trace.depth.astype(np.int32),
        "part": trace.part,
        "seq": trace.seq,
        "lane": trace.thread,
        "kind_code": trace.kind,
        "name_code": trace.name,
        "func_code": trace.func,
        "start_ns": trace.start_ns,
        "end_ns": trace.end_ns,
        "dur_ns": trace.dur_ns,
        "self_ns": trace.self_ns,
        "start_ms": (trace.start_ns - t0) / 1e6,
        "dur_ms": trace.dur_ns / 1e6,
        "self_ms": trace.self_ns / 1e6,
        "step": index[np.where(owner >= 0, owner, n)],
        "is_import": aside_mask(trace),
        "internal": internal_sets[set_of_row],
        "attr_set": set_of_row,
    }


def _attr_set_columns(sets: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """One entry per (distinct attribute dict, key): the long format's source."""
    ids, keys, texts, numbers = [], [], [], []
    for i, values in enumerate(sets):
        for key, value in values.items():
            text, number = _value_columns(value)
            ids.append(i)
            keys.append(key)
            texts.append(text)
            numbers.append(np.nan if number is None else number)
    return {
        "attr_set": np.array(ids, dtype=np.int64),
        "key": np.array(keys, dtype=object),
        "value": np.array(texts, dtype=object),
        "number": np.array(numbers, dtype=np.float64),
    }


def _thread_columns(trace: Trace) -> dict[str, np.ndarray]:
    by_part = {p.part: p for p in trace.processes}
    labels = thread_names(trace)
    counts = np.bincount(trace.thread[trace.thread >= 0], minlength=len(trace.threads))
    th = trace.threads
    return {
        "lane": np.array([t.row for t in th], dtype=np.int64),
        "part": np.array([t.part for t in th], dtype=np.int64),
        "pid": np.array([by_part[t.part].pid for t in th], dtype=np.int64),
        "process": _text([by_part[t.part].label for t in th]),
        "tid": np.array([t.tid for t in th], dtype=np.int64),
        "name": _text([t.name for t in th]),
        "thread": _text([labels[t.row] for t in th]),
        "device": _text([t.device for t in th]),
        "spans": counts[: len(th)].astype(np.int64),
    }


_PROCESSES = """processes(part BIGINT, pid BIGINT, ppid BIGINT, role VARCHAR, role_index BIGINT,
    process VARCHAR, host VARCHAR, argv VARCHAR, start_ns BIGINT, end_ns BIGINT, status VARCHAR,
    spans BIGINT)"""
_FINDINGS = """findings(id BIGINT, rule VARCHAR, severity VARCHAR, message VARCHAR, span BIGINT,
    fix VARCHAR, data VARCHAR)"""
_META = "meta(key VARCHAR, value VARCHAR)"


def _process_rows(trace: Trace) -> list[tuple]:
    counts = np.bincount(
        trace.part, minlength=max((p.part for p in trace.processes), default=0) + 1
    )
    return [
        (p.part, p.pid, p.ppid, p.role, p.role_index, p.label, p.host, json.dumps(p.argv),
         p.start_ns, p.end_ns, p.status, int(counts[p.part]))
        for p in trace.processes
    ]  # fmt: skip


def _finding_rows(trace: Trace) -> list[tuple]:
    rows = []
    for f in trace.findings:
        data = f.get("data") if isinstance(f.get("data"), dict) else {}
        span = f.get("span")
        span = span if isinstance(span, int) and 0 <= span < trace.n else None
        fix = data.get("fix")
        rows.append((f.get("id"), f.get("detector"), f.get("severity"), f.get("message"), span,
                     None if fix is None else str(fix), json.dumps(data, default=str)))  # fmt: skip
    return rows


def _small_table(con: Any, schema: str, rows: list[tuple]) -> None:
    """A table of a few rows with declared types, filled through parameters."""
    con.execute(f"CREATE TABLE {schema}")
    if rows:
        name = schema.split("(", 1)[0]
        marks = ", ".join("?" * len(rows[0]))
        con.executemany(f"INSERT INTO {name} VALUES ({marks})", rows)


def _register(con: Any, name: str, columns: dict[str, np.ndarray]) -> None:
    """Copies a dict of arrays into a table (DuckDB scans the arrays in place)."""
    con.register(f"_{name}_arrays", columns)
    con.execute(f"CREATE TABLE {name} AS SELECT * FROM _{name}_arrays")
    con.unregister(f"_{name}_arrays")


def connect(trace: Trace) -> Any:  # -> duckdb.DuckDBPyConnection (imported lazily)
    """An in-memory DuckDB holding the trace's tables (``TABLES``; docs/query.md)."""
    import duckdb

    con = duckdb.connect(":memory:", config=dict(_SAFE_CONFIG))
    strings = {
        "code": np.arange(len(trace.strings), dtype=np.int64),
        "text": _text(trace.strings),
    }
    _register(con, "_strings", strings)
    _, sets = trace.attr_sets()
    _register(con, "_attr_sets", _attr_set_columns(sets))
    _register(con, "threads", _thread_columns(trace))
    _small_table(con, _PROCESSES, _process_rows(trace))
    con.register("_span_arrays", _span_columns(trace))
    con.execute(_SPANS_SQL)
    con.unregister("_span_arrays")
    con.execute(_VIEWS_SQL)
    _small_table(con, _FINDINGS, _finding_rows(trace))
    _small_table(con, _META, [(k, str(v)) for k, v in trace.meta.items()])
    con.execute("DROP TABLE _strings")
    con.execute("SET lock_configuration = true")  # no statement can switch any of it back
    return con


_SPANS_SQL = """
CREATE TABLE spans AS
SELECT s.id, nullif(s.parent, -1) AS parent, s.depth,
       th.pid, th.process, th.tid, th.thread, th.device,
       k.text AS kind, n.text AS name, f.text AS func,
       s.start_ns, s.end_ns, s.dur_ns, s.self_ns, s.start_ms, s.dur_ms, s.self_ms,
       nullif(s.step, -1) AS step, s.is_import, s.internal,
       s.part, s.seq, s.lane, nullif(s.attr_set, -1) AS attr_set
FROM _span_arrays s
JOIN threads th ON th.lane = s.lane
JOIN _strings k ON k.code = s.kind_code
JOIN _strings n ON n.code = s.name_code
JOIN _strings f ON f.code = s.func_code
ORDER BY s.id
"""

_VIEWS_SQL = """
CREATE VIEW attrs AS
SELECT s.id AS span, a.key, a.value, nullif(a.number, 'NaN'::DOUBLE) AS number
FROM spans s JOIN _attr_sets a ON a.attr_set = s.attr_set;
CREATE VIEW steps AS
SELECT st.step, st.id, st.pid, st.process, st.tid, st.thread,
       st.start_ns, st.end_ns, st.dur_ns, st.dur_ms,
       (SELECT count(*) FROM spans s WHERE s.step = st.step AND s.part = st.part) AS spans
FROM spans st WHERE st.kind = 'step';
"""


def run(con: Any, sql: str) -> tuple[list[str], list[tuple]]:
    """Runs ``sql`` (the last statement's result is returned): (column names, rows)."""
    import duckdb

    try:
        cur = con.execute(sql)
        if cur.description is None:
            return [], []
        return [d[0] for d in cur.description], cur.fetchall()
    except duckdb.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise QueryError(first) from exc
