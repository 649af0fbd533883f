"""The aggregated call graph: nodes per (lane, kind, name), counts, times, lanes, pruning."""

from __future__ import annotations

import threading

import numpy as np
from handmade import two_steps, write

import tracer
from reimpl import _trace
from tracer.graphs import calls, draw, render_subtree


def _record(path: str, steps: int = 3) -> tracer.Trace:
    with tracer.record(path):
        _trace.set_thread_info("main", None)
        for i in range(steps):
            with _trace.step(i), _trace.span("module.forward", "net"):
                with _trace.span("module.forward", "net.fc"):
                    pass
                with _trace.span("module.forward", "net.fc"):
                    pass
                with _trace.span("dp.parallel_apply", "parallel_apply") as pa:

                    def replica(k: int, link: int = pa.id) -> None:
                        _trace.set_thread_info(f"replica {k}", f"sim:{k}")
                        with _trace.span("dp.replica", "replica", link=link):
                            with _trace.span("hook.forward", "Store.hook"):
                                pass

                    threads = [threading.Thread(target=replica, args=(k,)) for k in (0, 1)]
                    for th in threads:
                        th.start()
                    for th in threads:
                        th.join()
    return tracer.load(path)


def test_nodes_edges_counts_and_times(trace_path):
    t = _record(trace_path)
    g = calls.build(t, cluster="none")
    fc = g.nodes["", "module.forward", "net.fc"]
    assert fc["count"] == 6
    rows = [r for r in range(t.n) if t.name_of(r) == "net.fc"]
    assert fc["incl_ns"] == int(t.dur_ns[rows].sum())
    net = g.nodes["", "module.forward", "net"]
    assert net["self_ns"] == int(t.self_ns[[r for r in range(t.n) if t.name_of(r) == "net"]].sum())
    edge = g.edges[("", "module.forward", "net"), ("", "module.forward", "net.fc")]
    assert edge["count"] == 6 and edge["time_ns"] == fc["incl_ns"]
    # the replicas hang under parallel_apply through their links
    assert (
        g.edges[("", "dp.parallel_apply", "parallel_apply"), ("", "dp.replica", "replica")]["count"]
        == 6
    )
    assert g.graph["left_out"]["dropped"] == 0


def test_lanes_become_clusters(trace_path):
    t = _record(trace_path)
    by_thread = calls.build(t, cluster="thread")
    lanes = {d["lane"] for _n, d in by_thread.nodes(data=True)}
    assert lanes == {"main", "replica 0 [sim:0]", "replica 1 [sim:1]"}  # new threads, same lane
    assert by_thread.nodes["replica 1 [sim:1]", "hook.forward", "Store.hook"]["count"] == 3
    crossing = by_thread.edges[
        ("main", "dp.parallel_apply", "parallel_apply"),
        ("replica 0 [sim:0]", "dp.replica", "replica"),
    ]
    assert crossing["style"] == "dashed"
    clusters = by_thread.graph["clusters"]
    assert any(c.get("parent") for c in clusters.values())  # threads inside their process
    by_device = calls.build(t, cluster="device")
    assert {d["lane"] for _n, d in by_device.nodes(data=True)} == {"", "sim:0", "sim:1"}
    assert len(calls.build(t, cluster="process").graph["clusters"]) == 1


def test_pruning_keeps_the_heaviest_and_says_what_it_left_out(trace_path):
    t = _record(trace_path)
    full = calls.build(t, cluster="none", top=None)
    g = calls.build(t, cluster="none", top=3)
    heaviest = sorted(full.nodes, key=lambda n: -full.nodes[n]["incl_ns"])[:3]
    assert set(g.nodes) == set(heaviest)
    left = g.graph["left_out"]
    assert left["total"] == full.number_of_nodes() and left["dropped"] == left["total"] - 3
    assert g.graph["note"].startswith(f"showing 3 of {left['total']} nodes: left out")
    assert all(a in g and b in g for a, b in g.edges)


def test_min_time_and_selection_mask(trace_path):
    t = _record(trace_path)
    g = calls.build(t, cluster="none", min_time_ns=10**12)
    assert g.number_of_nodes() == 0 and g.graph["left_out"]["below_min_time"] > 0
    replica_only = t.thread == t.threads[-1].row
    g = calls.build(t, replica_only, cluster="none")
    assert {d["kind"] for _n, d in g.nodes(data=True)} <= {"dp.replica", "hook.forward"}
    assert calls.build(t, np.zeros(t.n, dtype=bool)).number_of_nodes() == 0


def test_renders_to_svg_with_the_names(trace_path, tmp_path, svg_text):
    t = _record(trace_path)
    out = draw(calls.build(t), str(tmp_path / "calls.svg"))
    assert out.warnings == []
    text = svg_text(out.path)
    for name in ("net.fc", "Store.hook", "replica 1 [sim:1]", "parallel_apply"):
        assert name in text


def test_render_subtree_for_the_tui(trace_path, tmp_path, svg_text):
    t = _record(trace_path)
    step1 = next(r for r in range(t.n) if t.kind_of(r) == "step" and t.attrs(r)["index"] == 1)
    path = render_subtree(t, step1, str(tmp_path / "sub.svg"))
    text = svg_text(path)
    assert "calls under step step" in text and "Store.hook" in text
    assert "\u00d71" in text and "\u00d73" not in text  # one step only: x1, never x3


def test_node_and_edge_times_worked_out_by_hand(trace_path):
    """The two-step trace of tests/handmade.py: self times by hand, not by the same code."""
    g = calls.build(write(trace_path, two_steps()), cluster="none", top=None)
    nodes = {n[2]: (d["count"], d["incl_ns"], d["self_ns"]) for n, d in g.nodes(data=True)}
    assert nodes == {
        "step": (2, 1900, 600),
        "net": (2, 1000, 210),
        "net.fc": (3, 790, 790),
        "SGD": (2, 300, 300),
        "__next__": (1, 150, 150),
    }
    edges = {(a[2], b[2]): (d["count"], d["time_ns"]) for a, b, d in g.edges(data=True)}
    assert edges == {
        ("step", "net"): (2, 1000),
        ("net", "net.fc"): (3, 790),
        ("step", "SGD"): (2, 300),
    }
    by_thread = calls.build(write(trace_path + "2", two_steps()), cluster="thread", top=None)
    assert by_thread.nodes["worker 0", "data.next", "__next__"]["self_ns"] == 150
