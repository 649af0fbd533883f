"""The Chrome Trace Event export is valid and keeps the nesting."""

from __future__ import annotations

import json
import threading
from collections import defaultdict

from handmade import Span, write

import tracer
from reimpl import _trace
from tracer.export import chrome as export_chrome


def _record(path: str) -> None:
    with tracer.record(path):
        _trace.set_thread_info("main", None)
        for step in range(3):
            with _trace.span("step", "step", index=step):
                with _trace.span("module.forward", "net", shape=[2, 3]):
                    with _trace.span("module.forward", "net.fc"):
                        pass
                _trace.instant("sched.step", "lr", lr=0.1)

        def other() -> None:
            _trace.set_thread_info("replica 1", "sim:1")
            with _trace.span("dp.replica", "replica 1"):
                pass

        th = threading.Thread(target=other)
        th.start()
        th.join()


def test_chrome_export_validates(trace_path, tmp_path):
    _record(trace_path)
    out = tmp_path / "out.json"
    count = export_chrome.export(tracer.load(trace_path), str(out))
    doc = json.loads(out.read_text())
    events = doc["traceEvents"]
    assert len(events) == count
    spans = [e for e in events if e["ph"] in "Xi"]
    assert len(spans) == 3 * 4 + 1
    for e in events:
        assert {"ph", "ts", "pid", "tid"} <= e.keys()
        if e["ph"] == "X":
            assert e["dur"] > 0 and "cat" in e and "func" in e["args"]
    names = {e["args"]["name"] for e in events if e["ph"] == "M" and e["name"] == "thread_name"}
    assert names == {"main", "replica 1 [sim:1]"}
    assert any(e["name"] == "process_name" for e in events)
    # Complete events on one thread are properly nested (a stack never crosses).
    by_thread = defaultdict(list)
    for e in spans:
        if e["ph"] == "X":
            by_thread[(e["pid"], e["tid"])].append(e)
    for evs in by_thread.values():
        stack: list[float] = []
        for e in sorted(evs, key=lambda e: (e["ts"], -e["dur"])):
            while stack and stack[-1] <= e["ts"]:
                stack.pop()
            end = e["ts"] + e["dur"]
            assert not stack or end <= stack[-1] + 1e-9
            stack.append(end)
    fc = next(e for e in spans if e["name"] == "net" and e["cat"] == "module.forward")
    assert fc["args"]["shape"] == [2, 3]
    lr = next(e for e in spans if e["cat"] == "sched.step")
    assert lr["ph"] == "i" and lr["args"]["lr"] == 0.1


def test_times_are_microseconds_from_the_first_span(trace_path, tmp_path):
    """Chrome's ``ts`` and ``dur`` are microseconds: a hand-made trace with known
    nanoseconds (starting at 5 ms, as perf_counter_ns never starts at 0)."""
    write(
        trace_path,
        [
            Span(
                "step",
                "outer",
                5_000_000,
                5_250_000,
                [
                    Span("module.forward", "inner", 5_001_500, 5_101_750),
                    Span("sched.step", "lr", 5_200_000, 5_200_000),  # an instant
                ],
            ),
            Span("dp.replica", "replica 1", 5_010_000, 5_012_345, thread=(4242, "r1", "sim:1")),
        ],
    )
    out = tmp_path / "out.json"
    export_chrome.export(tracer.load(trace_path), str(out))
    events = {e["name"]: e for e in json.loads(out.read_text())["traceEvents"] if e["ph"] in "Xi"}
    assert {n: (e["ph"], e["ts"], e.get("dur")) for n, e in events.items()} == {
        "outer": ("X", 0.0, 250.0),
        "inner": ("X", 1.5, 100.25),
        "lr": ("i", 200.0, None),
        "replica 1": ("X", 10.0, 2.345),
    }


def test_thread_lanes_have_names_of_their_own(tmp_path):
    """Two DataParallel steps start two pairs of replica threads with the same
    names: the export numbers the second pair."""
    from samples import dataparallel_hooks

    path = str(tmp_path / "dp.tsdb")
    with tracer.record(path):
        for _ in range(2):
            dataparallel_hooks.run("fixed", use_lockstep=True)
    events = list(export_chrome.events(tracer.load(path)))
    names = [(e["pid"], e["args"]["name"]) for e in events if e["name"] == "thread_name"]
    assert len(set(names)) == len(names)
    assert {n for _, n in names} >= {"replica 0 [sim:0]", "replica 0 [sim:0] #2"}
