"""Self time per thread: a child on another thread is not taken off its parent."""

from __future__ import annotations

import numpy as np
import pytest

import tracer
from samples import dataparallel_hooks
from tracer.analyze import aggregate


def _csr(parent: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Children in row order (rows are in start order here), as Trace builds them."""
    keyed = np.argsort(parent, kind="stable")
    counts = np.bincount(parent + 1, minlength=len(parent) + 1)
    return np.concatenate([[0], np.cumsum(counts)]), keyed


@pytest.mark.parametrize("kernel", [aggregate.self_times_covered, aggregate._self_times_covered])
def test_self_time_counts_only_same_thread_cover(kernel):
    # rows in start order: apply (thread 0, 0-100) > replica A (thread 1, 10-150)
    # > fwd (thread 1, 20-60); apply > gather (thread 0, 80-95); and on thread 2
    # a backward (200-300) whose two children overlap (210-290, 220-295)
    parent = np.array([-1, 0, 1, 0, -1, 4, 4], dtype=np.int64)
    start = np.array([0, 10, 20, 80, 200, 210, 220], dtype=np.int64)
    end = np.array([100, 150, 60, 95, 300, 290, 295], dtype=np.int64)
    thread = np.array([0, 1, 1, 0, 2, 2, 2], dtype=np.int64)
    offsets, kids = _csr(parent)
    own = kernel(start, end, thread, offsets, kids).tolist()
    assert own == [85, 100, 40, 15, 15, 80, 75]  # backward: 100 - (210..295 = 85)
    old = aggregate.self_times(parent, end - start).tolist()
    assert old[0] == -55 and old[4] == -55  # what subtracting every child gave


def test_the_deoldify_trace_has_no_negative_self_time(tmp_path):
    path = str(tmp_path / "dp.tsdb")
    with tracer.record(path):
        dataparallel_hooks.run("fixed", use_lockstep=True)
    t = tracer.load(path)
    assert (t.self_ns >= 0).all()
    applies = np.flatnonzero(t.kind == t.code("dp.parallel_apply"))
    assert len(applies)
    for row in applies.tolist():
        kids = t.children(row)
        same = kids[t.thread[kids] == t.thread[row]]
        assert len(kids) > len(same)  # the replicas hang below it, on their own threads
        assert t.self_ns[row] == t.dur_ns[row] - t.dur_ns[same].sum()
