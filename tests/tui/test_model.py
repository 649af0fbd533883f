"""The UI-free model: lanes, tops, search order, timeline spans, aggregates."""

from __future__ import annotations

import numpy as np
import pytest
from tui_helpers import SAMPLE

import tracer
from tui.model import Filter, TraceModel, fmt_ns, kind_style


@pytest.fixture(scope="module")
def model() -> TraceModel:
    return TraceModel(tracer.load(str(SAMPLE)))


def test_lanes_group_threads_by_process(model):
    labels = [(lane.process.split(" (")[0], lane.label) for lane in model.lanes]
    assert labels == [
        ("main", "MainThread"),
        ("main", "replica 0 [sim:0]"),
        ("main", "replica 1 [sim:1]"),
        ("worker 0", "MainThread"),
        ("worker 1", "MainThread"),
        ("rank 0", "MainThread [cpu:0]"),
        ("rank 1", "MainThread [cpu:1]"),
    ]


def test_replica_spans_are_tops_of_their_own_lane(model):
    t = model.trace
    replica1 = next(lane for lane in model.lanes if lane.label.startswith("replica 1"))
    tops = model.lane_rows(replica1.thread)
    assert [t.kind_of(r) for r in tops] == ["dp.replica"] * 3
    assert all(t.parent[r] >= 0 for r in tops)  # linked under parallel_apply
    assert np.all(np.diff(t.start_ns[tops]) > 0)


def test_kind_filter_lists_spans_of_that_kind(model):
    t = model.trace
    model.filter = Filter(kind=t.code("bn.stats"))
    try:
        rank0 = next(lane for lane in model.lanes if lane.label.endswith("[cpu:0]"))
        rows = model.lane_rows(rank0.thread)
        assert [t.kind_of(r) for r in rows] == ["bn.stats", "bn.stats"]
        assert model.in_lane_rows(int(rows[0]))
    finally:
        model.filter = Filter()


def test_search_is_in_start_order_and_wraps(model):
    t = model.trace
    hits = model.search("ALL_GATHER")  # any case, kinds and names
    assert len(hits) == 4
    order = list(t.start_order)
    assert [order.index(h) for h in hits] == sorted(order.index(h) for h in hits)
    assert model.next_hit(hits, int(hits[-1])) == hits[0]
    assert model.next_hit(hits, int(hits[0]), forward=False) == hits[-1]
    assert model.next_hit(np.empty(0, dtype=np.int64), None) is None


def test_lane_spans_descend_through_covering_spans(model):
    t = model.trace
    step = int(model.steps[np.flatnonzero(t.thread[model.steps] == 0)[0]])
    lo, hi = int(t.start_ns[step]), int(t.end_ns[step])
    rows = model.lane_spans(0, lo, hi)
    assert set(rows.tolist()) == set(t.children(step)[t.thread[t.children(step)] == 0].tolist())
    worker = next(lane for lane in model.lanes if lane.process.startswith("worker 0"))
    assert len(model.lane_spans(worker.thread, lo, hi))  # prefetching while the step runs


def test_lane_spans_thin_out_over_the_whole_window(model):
    t = model.trace
    step = int(model.steps[np.flatnonzero(t.thread[model.steps] == 0)[0]])
    lo, hi = int(t.start_ns[step]), int(t.end_ns[step])
    every = model.lane_spans(0, lo, hi)
    some = model.lane_spans(0, lo, hi, limit=3)
    assert len(every) > 3 and len(some) == 3
    assert some[0] == every[0] and some[-1] in every[len(every) // 2 :]  # not just the first


def test_stats_modules_imports(model):
    stats = model.stats()
    assert stats[0].self_ns == max(s.self_ns for s in stats)
    assert sum(s.count for s in model.stats(limit=10_000)) == model.trace.n
    row = model.slowest(stats[0].key)
    assert row is not None and model.trace.self_ns[row] > 0
    times = model.module_times()
    assert times["features.1"] == (6, 6 * 30_000)
    assert len(model.module_snapshots()) == 1
    roots = model.import_roots()
    assert [model.trace.name_of(r) for r in roots] == ["torch"]


def test_formatting():
    assert fmt_ns(999) == "999 ns"
    assert fmt_ns(1_500) == "1.5 µs"
    assert fmt_ns(2_500_000) == "2.50 ms"
    assert fmt_ns(3e9) == "3.00 s"
    assert kind_style("bn.stats") == kind_style("bn.elemt") != kind_style("optim.step")


def test_a_span_whose_only_children_are_instants_is_drawn_itself(tmp_path):
    """The selected span is drawn as its children's bars; instants (bn.forward,
    zero long) are no bars, so a BatchNorm span with only its evidence instant
    inside is drawn as itself."""
    from reimpl import _trace

    path = str(tmp_path / "t.tsdb")
    with tracer.record(path):
        with _trace.span("module.forward", "bn"):
            _trace.instant("bn.forward", "batch_norm")
    t = tracer.load(path)
    model = TraceModel(t)
    row = int(np.flatnonzero(t.kind == t.code("module.forward"))[0])
    s, e = int(t.start_ns[row]), int(t.end_ns[row])
    drawn = model.lane_spans(int(t.thread[row]), s - 10, e + 10, (s, e))
    assert drawn.tolist() == [row]


def _wide_model(tmp_path) -> tuple[TraceModel, int]:
    """Three top spans on one thread; the middle one with 100 children (one slice of rows)."""
    from reimpl import _trace

    path = str(tmp_path / "wide.tsdb")
    with tracer.record(path):
        with _trace.span("data.fetch", "before"):
            pass
        with _trace.span("data.fetch", "wide"):
            for i in range(100):
                with _trace.span("data.collate", f"item {i}"):
                    pass
        with _trace.span("data.fetch", "after"):
            pass
    t = tracer.load(path)
    model = TraceModel(t)
    return model, int(next(r for r in range(t.n) if t.name_of(r) == "wide"))


@pytest.mark.parametrize("limit", [4000, 50, 7, 3])
def test_lane_spans_of_a_wide_span_are_its_neighbours_and_children_thinned(
    tmp_path, monkeypatch, limit
):
    """The selected span's children stand in for it between its neighbours, and
    thinning takes every k-th of that whole sequence, across the pieces (the
    children stay views until the end; the checks go a chunk at a time)."""
    import tui.model

    monkeypatch.setattr(tui.model, "_CHUNK", 8)  # the chunked checks cross chunk edges
    model, wide = _wide_model(tmp_path)
    t = model.trace
    thread = int(t.thread[wide])
    tops = model.tops_by_thread[thread]
    assert tui.model._consecutive(t.children(wide))  # the slice path, checked in chunks
    assert not tui.model._consecutive(t.children(wide)[::-1])
    assert not tui.model._consecutive(np.r_[t.children(wide)[:50], t.children(wide)[51:], [t.n]])
    k = int(np.flatnonzero(tops == wide)[0])
    whole = np.concatenate([tops[:k], t.children(wide), tops[k + 1 :]])
    focus = (int(t.start_ns[wide]), int(t.end_ns[wide]))
    drawn = model.lane_spans(thread, model.t0, model.t1 + 1, focus, limit=limit)
    step = -(-len(whole) // limit)
    assert drawn.tolist() == whole[::step].tolist()
    assert len(drawn) <= limit
    again = model.lane_spans(thread, model.t0, model.t1 + 1, focus, limit=limit)  # children kept
    assert again.tolist() == drawn.tolist()


def test_lane_spans_of_a_child_show_it_among_the_neighbours(tmp_path):
    """Moving onto a child of the wide span: the wide span is descended through,
    the child (no children of its own) is drawn as itself."""
    model, wide = _wide_model(tmp_path)
    t = model.trace
    kid = int(t.children(wide)[40])
    s, e = int(t.start_ns[kid]), int(t.end_ns[kid])
    drawn = model.lane_spans(int(t.thread[kid]), s - 1, e + 1, (s, e))
    assert kid in drawn.tolist()
    assert wide not in drawn.tolist()
