"""``torchscope query``: tables built from the loaded columns, one-line errors, no
access beyond the trace, values from the trace never read as SQL."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
from handmade import Span, write
from torchscope_cli import torchscope

import tracer
from tracer.analyze import query

NASTY = "x'); DROP TABLE spans; --\x1b[31m"


@pytest.fixture(scope="module")
def path(tmp_path_factory) -> str:
    out = str(tmp_path_factory.mktemp("query") / "q.tsdb")
    replica = (9001, "replica 0", "sim:0")
    write(
        out,
        [
            Span("import", "torch", 0, 50, [Span("import", "torch.nn", 10, 40)]),
            Span(
                "step",
                "step",
                100,
                1000,
                [
                    Span(
                        "dp.parallel_apply",
                        "parallel_apply",
                        110,
                        300,
                        [Span("dp.replica", "replica 0", 120, 900, thread=replica)],
                    ),
                    Span(
                        "hook.forward",
                        NASTY,
                        400,
                        450,
                        attrs={"hook_id": 7, "flag": True, "shape": [2, 3]},
                    ),
                    Span("hook.forward", "lockstep", 460, 470, attrs={"internal": True}),
                ],
                attrs={"index": 4},
            ),
        ],
    )
    return out


def _rows(con, sql: str) -> list[dict]:
    columns, rows = query.run(con, sql)
    return [dict(zip(columns, r)) for r in rows]


def test_spans_carry_the_loaded_columns_and_summarys_self_time(path) -> None:
    trace = tracer.load(path)
    rows = _rows(query.connect(trace), "SELECT * FROM spans ORDER BY id")
    assert [r["id"] for r in rows] == list(range(trace.n))
    assert [r["self_ns"] for r in rows] == trace.self_ns.tolist()
    assert [r["parent"] for r in rows] == [None if p < 0 else p for p in trace.parent.tolist()]
    apply = next(r for r in rows if r["kind"] == "dp.parallel_apply")
    replica = next(r for r in rows if r["kind"] == "dp.replica")
    assert replica["parent"] == apply["id"] and replica["thread"] == "replica 0 [sim:0]"
    assert replica["device"] == "sim:0" and replica["step"] == 4
    # the replica ran beside parallel_apply, on its own thread: not taken off its self time
    assert apply["self_ns"] == apply["dur_ns"] == 190
    assert [r["name"] for r in rows if r["is_import"]] == ["torch.nn", "torch"]
    assert {r["step"] for r in rows if not r["is_import"]} == {4}
    assert not any(r["internal"] for r in rows)  # internal spans are not loaded by default


def test_internal_spans_come_with_the_switch_and_are_marked(path) -> None:
    con = query.connect(tracer.load(path, show_internal=True))
    marked = _rows(con, "SELECT name FROM spans WHERE internal")
    assert marked == [{"name": "lockstep"}]


def test_attrs_long_format_text_and_number(path) -> None:
    con = query.connect(tracer.load(path))
    got = _rows(
        con,
        "SELECT a.key, a.value, a.number FROM attrs a JOIN spans s ON s.id = a.span "
        "WHERE s.kind = 'hook.forward' ORDER BY a.key",
    )
    assert got == [
        {"key": "flag", "value": "true", "number": 1.0},
        {"key": "hook_id", "value": "7", "number": 7.0},
        {"key": "shape", "value": "[2, 3]", "number": None},
    ]
    assert _rows(con, "SELECT step, spans FROM steps") == [{"step": 4, "spans": 4}]


def test_a_value_from_the_trace_is_data_never_sql(path) -> None:
    con = query.connect(tracer.load(path))
    assert _rows(con, "SELECT name FROM spans WHERE kind = 'hook.forward'") == [{"name": NASTY}]
    assert _rows(con, "SELECT count(*) AS n FROM spans")[0]["n"] == tracer.load(path).n


def test_the_database_reads_nothing_but_the_trace(path, tmp_path) -> None:
    con = query.connect(tracer.load(path))
    outside = tmp_path / "secret.csv"
    outside.write_text("a\n1\n")
    for sql in (
        f"SELECT * FROM read_csv('{outside}')",
        f"COPY spans TO '{tmp_path / 'out.csv'}'",
        "SET enable_external_access = true",
        "SET python_enable_replacements = true",  # the configuration is locked
        "SELECT * FROM np",  # a Python variable: not scanned
    ):
        with pytest.raises(query.QueryError):
            query.run(con, sql)
    assert not (tmp_path / "out.csv").exists()


def test_command_formats_and_one_line_errors(path) -> None:
    sql = "SELECT kind, count(*) AS n FROM spans GROUP BY kind ORDER BY kind"
    as_json = json.loads(torchscope("query", path, sql, "--json").stdout)
    assert {"kind": "dp.replica", "n": 1} in as_json
    as_csv = list(csv.DictReader(io.StringIO(torchscope("query", path, sql, "--csv").stdout)))
    assert [dict(r) for r in as_csv] == [{k: str(v) for k, v in r.items()} for r in as_json]
    text = torchscope("query", path, "SELECT name FROM spans WHERE kind = 'hook.forward'")
    assert "\x1b" not in text.stdout and "DROP TABLE" in text.stdout  # control characters blanked
    bad = torchscope("query", path, "SELECT nope FROM spans")
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.count("\n") == 1 and "nope" in bad.stderr
    assert bad.stderr.startswith("torchscope: query: ")


def test_an_empty_result_and_a_statement_without_rows(path) -> None:
    con = query.connect(tracer.load(path))
    assert query.run(con, "SELECT * FROM spans WHERE false")[1] == []
    assert query.run(con, "CREATE TABLE mine AS SELECT 1 AS x")[1] in ([], [(1,)])
    assert np.array(query.run(con, "SELECT x FROM mine")[1]).tolist() == [[1]]
