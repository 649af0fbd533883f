"""Every SQL example of docs/query.md runs, and gives summary's numbers where summary has them."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest
from torchscope_cli import torchscope

import tracer
from tracer.analyze import query

DOCS = Path(__file__).parents[3] / "docs" / "query.md"
SAMPLE = Path(__file__).parents[2] / "data" / "sample_findings.tsdb"
EXAMPLES = dict(re.findall(r"<!-- example: (\w+) -->\n```sql\n(.*?)```", DOCS.read_text(), re.S))


@pytest.fixture(scope="module")
def summary() -> dict:
    done = torchscope("summary", str(SAMPLE), "--json", "--top", "1000")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def results() -> dict[str, list[dict]]:
    con = query.connect(tracer.load(SAMPLE))
    out = {}
    for name, sql in EXAMPLES.items():
        columns, rows = query.run(con, sql)
        out[name] = [dict(zip(columns, r)) for r in rows]
    return out


def test_the_docs_have_the_examples_this_test_checks() -> None:
    assert len(EXAMPLES) >= 10
    assert {"kinds", "top_self", "hooks_per_thread", "waits", "modules_per_step"} <= set(EXAMPLES)


def test_every_example_returns_rows(results: dict[str, list[dict]]) -> None:
    assert [name for name, rows in results.items() if not rows] == []


def test_self_time_per_kind_is_summarys(results, summary) -> None:
    def key(g: dict) -> tuple:
        return g["kind"], g["count"], g["incl_ns"], g["self_ns"]

    assert sorted(map(key, results["kinds"])) == sorted(map(key, summary["kinds"]))
    assert [r["self_ns"] for r in results["kinds"]] == [g["self_ns"] for g in summary["kinds"]]


def test_top_spans_by_self_time_are_summarys(results, summary) -> None:
    got = {
        (r["kind"], r["name"]): (r["count"], r["incl_ns"], r["self_ns"])
        for r in results["top_self"]
    }
    want = {
        (g["kind"], g["name"]): (g["count"], g["incl_ns"], g["self_ns"])
        for g in summary["top_self"]
    }
    assert len(got) == 15
    assert all(want[key] == value for key, value in got.items())
    assert [r["self_ns"] for r in results["top_self"]] == [
        g["self_ns"] for g in summary["top_self"][:15]
    ]


def test_hook_calls_per_thread_add_up_to_summarys_counts(results, summary) -> None:
    calls = Counter()
    for r in results["hooks_per_thread"]:
        calls[(r["kind"], r["hook"])] += r["calls"]
    hooks = {
        (g["kind"], g["name"]): g["count"]
        for g in summary["top_self"]
        if g["kind"].startswith("hook.")
    }
    assert dict(calls) == hooks
    assert {r["thread"] for r in results["hooks_per_thread"]} == {
        "replica 0 [sim:0]",
        "replica 1 [sim:1]",
    }


def test_waits_cover_every_collective_and_their_wait_attributes(results, summary) -> None:
    trace = tracer.load(SAMPLE)
    rows = [r for r in range(trace.n) if trace.kind_of(r).startswith("collective.")]
    waits = [trace.attrs(r)["wait_ns"] for r in rows]
    assert sum(r["calls"] for r in results["waits"]) == sum(
        g["count"] for g in summary["kinds"] if g["kind"].startswith("collective.")
    )
    assert sum(r["wait_ms"] for r in results["waits"]) == pytest.approx(sum(waits) / 1e6)


def test_modules_per_step_are_the_self_times_summary_adds_up(results, summary) -> None:
    con = query.connect(tracer.load(SAMPLE))
    sql = EXAMPLES["modules_per_step"].split("QUALIFY")[0]  # every module, not the top 3
    columns, rows = query.run(con, sql + " ORDER BY 1, 2")
    per_module = Counter()
    for row in rows:
        per_module[row[columns.index("module")]] += row[columns.index("calls")]
    modules = {g["name"]: g["count"] for g in summary["top_self"] if g["kind"] == "module.forward"}
    assert per_module == Counter(modules)  # every module call of the sample runs in a step
    assert all(
        len([r for r in results["modules_per_step"] if r["step"] == s]) <= 3 for s in range(3)
    )


def test_steps_threads_imports_and_findings_match_summary(results, summary) -> None:
    steps = next(g["count"] for g in summary["kinds"] if g["kind"] == "step")
    assert len(results["steps"]) == steps
    assert [r["spans"] for r in results["threads"]] == [t["spans"] for t in summary["threads"]]
    assert len(results["imports"]) == summary["imports"]["top_level"]
    assert sum(r["dur_ms"] for r in results["imports"]) == pytest.approx(
        summary["imports"]["incl_ns"] / 1e6
    )
    assert len(results["findings"]) == summary["findings"]


def test_an_example_through_the_command_as_json(summary) -> None:
    done = torchscope("query", str(SAMPLE), EXAMPLES["kinds"], "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)[0] == {
        k: summary["kinds"][0][k] for k in ("kind", "count", "incl_ns", "self_ns")
    }


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> str:
    """A real DataParallel run (replica threads, the user's hook, lockstep's hidden ones)."""
    from samples import dataparallel_hooks

    out = str(tmp_path_factory.mktemp("query_docs") / "dp.tsdb")
    with tracer.record(out):
        dataparallel_hooks.run("fixed", use_lockstep=True)
    return out


def test_the_examples_on_a_recorded_run_agree_with_summary(recorded) -> None:
    from tracer.analyze.summary import summarize

    trace = tracer.load(recorded)
    data = summarize(trace, top=100_000)
    con = query.connect(trace)
    for sql in EXAMPLES.values():
        query.run(con, sql)  # every example runs on a real trace too
    columns, rows = query.run(con, EXAMPLES["kinds"])
    got = sorted(tuple(r) for r in rows)
    want = sorted((g["kind"], g["count"], g["incl_ns"], g["self_ns"]) for g in data["kinds"])
    assert got == want
    columns, rows = query.run(con, EXAMPLES["hooks_per_thread"])
    calls = Counter()
    for row in rows:
        calls[row[columns.index("hook")]] += row[columns.index("calls")]
    hooks = {g["name"]: g["count"] for g in data["top_self"] if g["kind"] == "hook.forward"}
    assert dict(calls) == hooks and hooks  # the user's hook, not lockstep's
    assert not any("_lockstep" in h for h in hooks)
