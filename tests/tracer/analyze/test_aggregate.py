"""The numba kernels against numbers worked out by hand, compiled and as plain Python."""

from __future__ import annotations

import numpy as np
import pytest
from handmade import rows, two_steps, write

from tracer.analyze import aggregate

KERNELS = {
    "compiled": (aggregate.parents, aggregate.self_times, aggregate.depths, aggregate.call_paths),
    "python": (aggregate._parents, aggregate._self_times, aggregate._depths, aggregate._call_paths),
}


@pytest.fixture(params=list(KERNELS))
def kernels(request):
    """Both forms of each kernel: ``njit``-compiled and the plain Python it compiles."""
    return KERNELS[request.param]


def test_self_time_subtracts_the_childrens_inclusive_time(kernels) -> None:
    _, self_times, _, _ = kernels
    # a (0-100) > b (10-60) > c (20-50); a > d (70-90); rows in close order: c, b, d, a
    parent = np.array([1, 3, 3, -1], dtype=np.int64)
    dur = np.array([30, 50, 20, 100], dtype=np.int64)
    assert self_times(parent, dur).tolist() == [30, 20, 20, 30]  # a: 100 - 50 - 20


def test_parents_rebuilt_from_ids_and_close_order(kernels) -> None:
    parents, _, _, _ = kernels
    # one thread: ids in start order a=1 > (b=2 > c=3), d=4; another thread: e=5 > f=6
    group = np.array([0, 0, 1, 0, 0, 1], dtype=np.int64)
    ids = np.array([3, 2, 6, 4, 1, 5], dtype=np.int64)  # close order: c, b, f, d, a, e
    assert parents(group, ids, 2).tolist() == [1, 4, 5, 4, -1, -1]


def test_depths_and_merged_call_paths(kernels) -> None:
    _, _, depths, call_paths = kernels
    # two steps (kind 0), each with a forward (kind 1, name 7) that has a child
    # (kind 1, name 8); the second step also has a span of another kind (2) with
    # the forward's name: a path of its own
    parent = np.array([-1, 0, 1, -1, 3, 4, 3], dtype=np.int64)
    kind = np.array([0, 1, 1, 0, 1, 1, 2], dtype=np.int64)
    name = np.array([5, 7, 8, 5, 7, 8, 7], dtype=np.int64)
    order = np.arange(7, dtype=np.int64)  # parents before children
    assert depths(parent, order).tolist() == [0, 1, 2, 0, 1, 2, 1]
    path, path_parent, path_kind, path_name = call_paths(parent, kind, name, order)
    assert path.tolist() == [0, 1, 2, 0, 1, 2, 3]
    assert path_parent.tolist() == [-1, 0, 1, 0]
    assert path_kind.tolist() == [0, 1, 1, 2] and path_name.tolist() == [5, 7, 8, 7]


def test_sum_by_adds_every_value_of_a_key() -> None:
    for sum_by in (aggregate.sum_by, aggregate._sum_by):
        keys = np.array([2, 0, 2, 2], dtype=np.int64)
        values = np.array([5, 7, 11, 13], dtype=np.int64)
        assert sum_by(keys, values, 4).tolist() == [7, 0, 29, 0]


def test_a_handmade_trace_has_the_self_times_worked_out_by_hand(tmp_path) -> None:
    """The loader's parents and ``Trace.self_ns`` on the two-step trace of
    handmade.py, whose self times are worked out in its docstring."""
    t = write(str(tmp_path / "t.tsdb"), two_steps())
    by_name = {n: t.self_ns[rows(t, n)].tolist() for n in ("step", "net", "net.fc", "SGD")}
    assert by_name == {
        "step": [200, 400],
        "net": [110, 100],
        "net.fc": [200, 290, 300],
        "SGD": [200, 100],
    }
    assert t.self_ns[rows(t, "__next__")].tolist() == [150]
    assert t.depth[rows(t, "net.fc")].tolist() == [2, 2, 2]
    assert int(t.self_ns.sum()) == 1900 + 150  # self times add up to the roots' time


@pytest.mark.parametrize(
    "kernel",
    [aggregate.self_times_covered, aggregate._self_times_covered],
    ids=["compiled", "python"],
)
def test_covered_self_time_by_hand(kernel) -> None:
    """``Trace.self_ns``'s kernel: a parent loses the time its same-thread children
    cover (their inclusive time, not their self time), clipped to the parent."""
    # rows in start order, one thread: a (0-100) > b (10-60) > c (20-50); a > d (70-90);
    # e (200-300) with a child linked to it on the same thread that sticks out of
    # it on both sides (150-220) and one that overlaps its end (280-350)
    start = np.array([0, 10, 20, 70, 200, 150, 280], dtype=np.int64)
    end = np.array([100, 60, 50, 90, 300, 220, 350], dtype=np.int64)
    thread = np.zeros(7, dtype=np.int64)
    # children in CSR form (Trace.children_index): the roots, then each row's
    kids = np.array([0, 4, 1, 3, 2, 5, 6], dtype=np.int64)
    offsets = np.array([0, 2, 4, 5, 5, 5, 7, 7, 7], dtype=np.int64)
    own = kernel(start, end, thread, offsets, kids).tolist()
    assert own == [30, 20, 30, 20, 60, 70, 70]  # a: 100 - 50 - 20; e: 100 - 20 - 20
