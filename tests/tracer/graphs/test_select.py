"""Selecting spans: subtrees across linked threads, steps, threads, processes, durations."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import tracer
from reimpl import _trace
from tracer.file.errors import TraceError
from tracer.graphs import select


def _record(path: str) -> tracer.Trace:
    with tracer.record(path):
        _trace.set_thread_info("main", None)
        for i in range(3):
            with _trace.step(i), _trace.span("dp.parallel_apply", "pa") as pa:

                def worker(link: int = pa.id) -> None:
                    _trace.set_thread_info("replica 1", "sim:1")
                    with _trace.span("dp.replica", "r", link=link):
                        with _trace.span("module.forward", "m"):
                            pass

                th = threading.Thread(target=worker)
                th.start()
                th.join()
        with _trace.span("step", "step 7"):  # a sample that numbers steps in the name
            pass
    return tracer.load(path)


def test_subtree_follows_links_to_other_threads(trace_path):
    t = _record(trace_path)
    first = int(select.step_rows(t, 0)[0])
    mask = select.subtree_mask(t, [first])
    assert sorted(t.kind_of(r) for r in np.flatnonzero(mask)) == [
        "dp.parallel_apply",
        "dp.replica",
        "module.forward",
        "step",
    ]


def test_steps_by_index_attribute_name_and_errors(trace_path):
    t = _record(trace_path)
    assert t.attrs(int(select.step_rows(t, 2)[0]))["index"] == 2
    assert t.name_of(int(select.step_rows(t, 7)[0])) == "step 7"
    with pytest.raises(TraceError, match="no step 9"):
        select.step_rows(t, 9)
    mask = select.select(t, step=1)
    assert mask.sum() == 4


def test_thread_and_process_filters(trace_path):
    t = _record(trace_path)
    mask = select.select(t, thread="sim:1")
    assert {t.kind_of(r) for r in np.flatnonzero(mask)} == {"dp.replica", "module.forward"}
    assert select.select(t, thread="replica 1 [sim:1]").sum() == mask.sum()
    assert select.select(t, process="main").all()
    with pytest.raises(TraceError, match="no thread matches"):
        select.select(t, thread="nope")
    with pytest.raises(TraceError, match="no process matches"):
        select.select(t, process="rank 5")


def test_parse_duration():
    assert select.parse_duration("2ms") == 2_000_000
    assert select.parse_duration("150us") == 150_000
    assert select.parse_duration("1.5s") == 1_500_000_000
    assert select.parse_duration("3") == 3_000_000
    with pytest.raises(ValueError):
        select.parse_duration("fast")
