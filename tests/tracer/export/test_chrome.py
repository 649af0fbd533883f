"""The Chrome Trace Event export is valid and keeps the nesting."""

from __future__ import annotations

import json
import threading
from collections import defaultdict

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
