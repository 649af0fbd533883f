"""Chrome JSON -> trace file: round trip of our export, and foreign traces of every form."""

from __future__ import annotations

import json

import pytest

import tracer
from tracer.cli import main
from tracer.export import chrome as export_chrome
from tracer.export.import_chrome import import_chrome
from tracer.file.errors import TraceError
from tracer.graphs import synth


def _tree(t: tracer.Trace) -> list:
    """Each span as (its kind/name path to the root, duration in µs, process role)."""
    out = []
    for row in t.start_order.tolist():
        chain, p = [], row
        while p >= 0:
            chain.append((t.kind_of(p), t.name_of(p)))
            p = int(t.parent[p])
        proc = t.process_of(row)
        out.append((tuple(chain), int(t.dur_ns[row]) // 1000, proc.role, proc.role_index))
    return sorted(out)


@pytest.mark.parametrize("which", ["dataparallel", "syncbn"])
def test_round_trip_keeps_the_span_tree(which, tmp_path):
    src = str(tmp_path / "a.tsdb")
    if which == "dataparallel":
        synth.record_dataparallel(src, steps=2)  # threads, links, an error attribute
    else:
        synth.record_syncbn(src, world_size=2, steps=1)  # three processes, rank roles
    original = tracer.load(src)
    export_chrome.export(original, str(tmp_path / "a.json"))
    assert main(["import-chrome", str(tmp_path / "a.json"), "-o", str(tmp_path / "b.tsdb")]) == 0
    back = tracer.load(str(tmp_path / "b.tsdb"))
    assert back.n == original.n and back.warnings == []
    assert _tree(back) == _tree(original)
    # the lanes come back under the names the export gave them (a thread name met
    # again in one process is numbered there: each step's replica threads)
    assert {t.label for t in back.threads} == set(export_chrome.thread_names(original).values())
    assert sorted(back.dur_ns.tolist()) == sorted(original.dur_ns.tolist())  # to the ns
    row = (
        next(r for r in range(back.n) if back.kind_of(r) == "collective.all_gather")
        if (which == "syncbn")
        else next(r for r in range(back.n) if "error" in back.attrs(r))
    )
    assert back.func_of(row).startswith(("tracer.graphs.synth", "reimpl"))


def test_foreign_events_begin_end_instants_metadata_and_string_tids(tmp_path):
    events = [
        {"ph": "M", "name": "process_name", "pid": 7, "args": {"name": "python"}},
        {"ph": "M", "name": "thread_name", "pid": 7, "tid": 1, "args": {"name": "MainThread"}},
        {"ph": "B", "name": "train", "pid": 7, "tid": 1, "ts": 1000.5, "args": {"a": 1}},
        {"ph": "X", "name": "forward", "cat": "cpu_op", "pid": 7, "tid": 1, "ts": 1001,
         "dur": 2.25},
        {"ph": "i", "name": "mark", "pid": 7, "tid": 1, "ts": 1003.25, "s": "t"},
        {"ph": "X", "name": "next", "pid": 7, "tid": 1, "ts": 1003.25, "dur": 1},
        {"ph": "E", "pid": 7, "tid": 1, "ts": 1010, "args": {"b": 2.5}},
        {"ph": "X", "name": "kernel", "cat": "kernel", "pid": 0, "tid": "stream 7",
         "ts": "ABSOLUTE", "dur": 3.5},
        {"ph": "C", "name": "mem", "pid": 7, "ts": 1002, "args": {"v": 3}},
        {"ph": "E", "pid": 7, "tid": 2, "ts": 5},
    ]  # fmt: skip
    src = tmp_path / "foreign.json"
    # the bare array form; a torch.profiler timestamp float64 cannot hold to the ns
    src.write_text(json.dumps(events).replace('"ABSOLUTE"', "1705000000123456.789"))
    result = import_chrome(str(src), str(tmp_path / "f.tsdb"))
    assert result.spans == 5 and result.skipped == {"ph C": 1, "E without B": 1}
    t = tracer.load(str(tmp_path / "f.tsdb"))
    by_name = {t.name_of(r): r for r in range(t.n)}
    train = by_name["train"]
    assert t.attrs(train) == {"a": 1, "b": 2.5} and t.dur_ns[train] == 9500
    assert t.kind_of(train) == "chrome" and t.kind_of(by_name["forward"]) == "cpu_op"
    assert int(t.parent[by_name["forward"]]) == train
    assert int(t.parent[by_name["next"]]) == train
    # an instant where forward ends and next starts belongs to next, not forward
    assert int(t.parent[by_name["mark"]]) == by_name["next"] and t.dur_ns[by_name["mark"]] == 0
    kernel = by_name["kernel"]
    assert t.start_ns[kernel] == 1705000000123456789  # absolute µs keep their nanoseconds
    assert {th.name for th in t.threads} == {"MainThread", "stream 7"}
    assert {p.role for p in t.processes} >= {"python"}


def test_object_form_truncated_array_and_unclosed_begin(tmp_path):
    obj = tmp_path / "o.json"
    obj.write_text(json.dumps({"traceEvents": [{"ph": "X", "name": "a", "ts": 1, "dur": 2}]}))
    assert import_chrome(str(obj), str(tmp_path / "o.tsdb")).spans == 1
    cut = tmp_path / "cut.json"
    cut.write_text(
        '[{"ph": "B", "name": "open", "pid": 1, "tid": 1, "ts": 1},\n'
        '{"ph": "X", "name": "in", "pid": 1, "tid": 1, "ts": 2, "dur": 3},\n'
    )
    assert import_chrome(str(cut), str(tmp_path / "cut.tsdb")).spans == 2
    t = tracer.load(str(tmp_path / "cut.tsdb"))
    opened = next(r for r in range(t.n) if t.name_of(r) == "open")
    assert t.attrs(opened) == {"unclosed": True} and t.end_ns[opened] == 5000


def test_not_chrome_json_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(TraceError, match="not Chrome trace JSON"):
        import_chrome(str(bad), str(tmp_path / "x.tsdb"))
    with pytest.raises(TraceError, match="cannot read"):
        import_chrome(str(tmp_path / "missing.json"), str(tmp_path / "x.tsdb"))


def _inner() -> int:
    return sum(range(100))


def _outer() -> int:
    return _inner() + _inner()


def test_viztracer_output(tmp_path):
    from viztracer import VizTracer

    out = tmp_path / "viz.json"
    viz = VizTracer(output_file=str(out), verbose=0)
    viz.start()
    _outer()
    viz.stop()
    viz.save()
    result = import_chrome(str(out), str(tmp_path / "viz.tsdb"))
    t = tracer.load(str(tmp_path / "viz.tsdb"))
    assert result.spans == t.n > 0
    outer = next(r for r in range(t.n) if t.name_of(r).startswith("_outer"))
    inner = [r for r in range(t.n) if t.name_of(r).startswith("_inner")]
    assert len(inner) == 2 and all(int(t.parent[r]) == outer for r in inner)


def test_torch_profiler_output(tmp_path):
    import torch
    from torch.profiler import ProfilerActivity, profile

    a = torch.randn(64, 64)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        (a @ a).relu()
    out = tmp_path / "prof.json"
    prof.export_chrome_trace(str(out))
    import_chrome(str(out), str(tmp_path / "prof.tsdb"))
    t = tracer.load(str(tmp_path / "prof.tsdb"))
    names = {t.name_of(r) for r in range(t.n)}
    assert {"aten::matmul", "aten::relu"} <= names
    mm = next(r for r in range(t.n) if t.name_of(r) == "aten::mm")
    assert t.name_of(int(t.parent[mm])) == "aten::matmul"  # nesting rebuilt from times
    assert t.kind_of(mm) == "cpu_op"
