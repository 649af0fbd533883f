"""What ``torchscope query`` costs on a million spans: building the tables, then a GROUP BY.

The trace is written through the recorder's own columns-to-block path (as
``bench_tracer`` does): DataParallel steps, each a ``step`` span holding a
``parallel_apply`` whose two replica threads run 8 modules with a forward hook
each (every hook span has 4 attributes). DuckDB (what ``query`` uses) is
measured against SQLite in memory fed the same columns, side by side.

    python -m benchmarks.bench_query
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
import time
from statistics import median

import tracer
from benchmarks.bench_tracer import _dp_records
from reimpl import _trace
from tracer.analyze import query
from tracer.recording.recorder import Recorder

N_SPANS = 1_000_000
GROUP_BY = (
    "SELECT step, kind, name, count(*) AS calls, sum(self_ns) AS self_ns "
    "FROM spans WHERE NOT is_import GROUP BY step, kind, name ORDER BY self_ns DESC LIMIT 10"
)
HOOKS_PER_THREAD = (
    "SELECT s.thread, a.value AS hook, count(*) AS calls FROM spans s "
    "JOIN attrs a ON a.span = s.id AND a.key = 'hook' "
    "WHERE s.kind = 'hook.forward' GROUP BY ALL ORDER BY calls DESC"
)


def _records(n: int) -> list[tuple]:
    """``bench_tracer``'s DataParallel million with a ``step`` span around each
    ``parallel_apply``: ids doubled so that each step's id comes just before its
    apply's (ids are in start order), the step closing right after it."""
    out: list[tuple] = []
    step = 0
    for sid, link, tid, start, end, kind, name, func, attrs in _dp_records(n):
        out.append((2 * sid, 2 * link, tid, start, end, kind, name, func, attrs))
        if kind == "dp.parallel_apply":
            out.append((2 * sid - 1, 0, tid, start, end + 1, "step", "step", "s", {"index": step}))
            step += 1
    return out


def make_trace(path: str, n: int = N_SPANS) -> None:
    """Writes about ``n`` spans in one block."""
    rec = Recorder(path, flush_interval=3600).start()
    _trace.detach()
    rec._store.write(rec._part, rec._columns(_records(n)), rec._threads_dirty, [])
    rec._threads_dirty = []
    rec.stop()


def _timed(fn, repeats: int = 3) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return median(times), result


def _sqlite(trace: tracer.Trace) -> sqlite3.Connection:
    """The same spans table in SQLite (in memory): one row inserted per span."""
    con = sqlite3.connect(":memory:")
    con.execute(
        "CREATE TABLE spans(id INTEGER, parent INTEGER, thread TEXT, kind TEXT, name TEXT, "
        "start_ns INTEGER, dur_ns INTEGER, self_ns INTEGER, step INTEGER, is_import INTEGER)"
    )
    strings = trace.strings.tolist()
    cols = query._span_columns(trace)
    rows = zip(
        cols["id"].tolist(),
        cols["parent"].tolist(),
        [str(t) for t in cols["lane"].tolist()],
        [strings[k] for k in cols["kind_code"].tolist()],
        [strings[k] for k in cols["name_code"].tolist()],
        cols["start_ns"].tolist(),
        cols["dur_ns"].tolist(),
        cols["self_ns"].tolist(),
        [None if s < 0 else s for s in cols["step"].tolist()],
        cols["is_import"].tolist(),
    )
    con.executemany("INSERT INTO spans VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    con.commit()
    return con


def measure(path: str) -> dict[str, float]:
    """Load, build, GROUP BY: DuckDB and SQLite side by side."""
    tracer.load(path)  # warm-up: imports numba and compiles the kernels
    query.connect(tracer.load(path, show_internal=False))
    load_s, trace = _timed(lambda: tracer.load(path))
    build_s, con = _timed(lambda: query.connect(trace))
    group_s, (_, rows) = _timed(lambda: query.run(con, GROUP_BY), repeats=5)
    hooks_s, (_, hook_rows) = _timed(lambda: query.run(con, HOOKS_PER_THREAD), repeats=5)
    sqlite_build_s, lite = _timed(lambda: _sqlite(trace), repeats=1)
    lite_sql = GROUP_BY.replace("NOT is_import", "is_import = 0")
    sqlite_group_s, lite_rows = _timed(lambda: lite.execute(lite_sql).fetchall(), repeats=3)
    assert [r[4] for r in rows] == [r[4] for r in lite_rows]  # same answer from both
    return {
        "spans": trace.n,
        "load_s": load_s,
        "build_s": build_s,
        "group_s": group_s,
        "hooks_s": hooks_s,
        "hook_rows": len(hook_rows),
        "sqlite_build_s": sqlite_build_s,
        "sqlite_group_s": sqlite_group_s,
    }


def run() -> str:
    """Measures and returns the markdown section."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "q.tsdb")
        make_trace(path)
        m = measure(path)
    load = os.getloadavg()[0]
    return "\n".join(
        [
            "### `torchscope query` (DuckDB) on a million spans",
            "",
            f"{m['spans']:,} spans of DataParallel steps (a step, a parallel_apply, two replica "
            "threads of 8 modules with a 4-attribute forward hook each). Medians; the GROUP BY "
            "and the attribute join run on the tables built once. Same machine, same run: "
            "SQLite in memory fed the same columns row by row. "
            f"Load average at the start: {load:.2f}.",
            "",
            "| what | DuckDB | SQLite (in memory) | goal |",
            "| --- | ---: | ---: | ---: |",
            f"| `tracer.load` (file -> columns, parents) | {m['load_s']:.3f} s | same | |",
            f"| build the tables (spans, attrs, threads, ...) | {m['build_s']:.3f} s | "
            f"{m['sqlite_build_s']:.3f} s (spans only) | |",
            f"| GROUP BY step, kind, name: calls and self time, top 10 | {m['group_s']:.3f} s | "
            f"{m['sqlite_group_s']:.3f} s | < 1 s |",
            f"| hook calls per thread (spans JOIN attrs, {m['hook_rows']} rows) | "
            f"{m['hooks_s']:.3f} s | | |",
            "",
            f"DuckDB's GROUP BY is {m['sqlite_group_s'] / m['group_s']:.0f}x faster than "
            f"SQLite's here, and its tables build {m['sqlite_build_s'] / m['build_s']:.1f}x "
            "faster (it scans the numpy columns in place; SQLite takes one row per span).",
        ]
    )


if __name__ == "__main__":
    print(run())
