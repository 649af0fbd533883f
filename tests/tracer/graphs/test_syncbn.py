"""The SyncBatchNorm graph: one cluster per rank, collectives as synchronisation points."""

from __future__ import annotations

import os

import pytest

import tracer
from reimpl import _trace
from tracer.graphs import draw, gallery, select, syncbn


def test_sync_points_across_ranks(syncbn_trace):
    g = syncbn.build(syncbn_trace, top=None)
    assert set(g.graph["clusters"]) == {"rank 0", "rank 1"}
    points = sorted(
        (d for _n, d in g.nodes(data=True) if d["type"] == "sync"), key=lambda d: d["index"]
    )
    assert len(points) == 8  # 2 steps x 2 layers x (all_gather forward, all_reduce backward)
    assert [(p["op"], p["layer"], p["phase"]) for p in points[:4]] == [
        ("all_gather", "bn1", "forward"),
        ("all_gather", "bn2", "forward"),
        ("all_reduce", "bn2", "backward"),
        ("all_reduce", "bn1", "backward"),
    ]
    assert not any(p["mismatch"] for p in points)
    first = points[0]
    waits = {r: g.edges[(r, 0), "sync 0"]["wait_ns"] for r in ("rank 0", "rank 1")}
    assert first["max_wait_ns"] == max(waits.values())
    assert first["straggler"] == min(waits, key=waits.get)
    coll = g.nodes["rank 1", 0]
    assert coll["cluster"] == "rank 1" and coll["bytes"] == 256


def test_top_keeps_the_longest_waits(syncbn_trace):
    full = syncbn.build(syncbn_trace, top=None)
    g = syncbn.build(syncbn_trace, top=3)
    waits = sorted((d["max_wait_ns"] for _n, d in full.nodes(data=True) if d["type"] == "sync"))
    kept = sorted(d["max_wait_ns"] for _n, d in g.nodes(data=True) if d["type"] == "sync")
    assert kept == waits[-3:]
    assert g.graph["note"].startswith("showing 3 of 8 synchronisation points")


def test_one_step_of_every_rank(syncbn_trace):
    g = syncbn.build(syncbn_trace, select.select(syncbn_trace, step=1))
    assert sum(1 for _n, d in g.nodes(data=True) if d["type"] == "sync") == 4
    assert set(g.graph["clusters"]) == {"rank 0", "rank 1"}


def test_a_rank_that_skips_a_collective_is_red(trace_path):
    with tracer.record(trace_path) as rec:
        pids = []
        for rank in range(2):
            pid = os.fork()
            if pid == 0:
                _trace.set_process_role("rank", rank)
                ops = ["all_gather", "all_reduce"] if rank == 0 else ["all_reduce"]
                for op in ops:
                    with _trace.span(f"collective.{op}", op, bytes=8, world_size=2):
                        pass
                rec.stop()
                os._exit(0)
            pids.append(pid)
        for pid in pids:
            os.waitpid(pid, 0)
    g = syncbn.build(tracer.load(trace_path))
    assert g.nodes["sync 0"]["mismatch"] and g.nodes["sync 0"]["op"] == "all_gather/all_reduce"
    assert g.nodes["sync 1"]["mismatch"]  # only rank 0 got this far


def test_renders_to_svg(syncbn_trace, tmp_path, svg_text):
    out = draw(syncbn.build(syncbn_trace), str(tmp_path / "s.svg"))
    assert out.warnings == []
    text = svg_text(out.path)
    for name in ("rank 0", "rank 1", "all_gather", "bn2 (backward)", "max wait"):
        assert name in text


def test_the_real_sample_on_two_gloo_ranks(tmp_path):
    """``torchscope record -m samples.syncbn``: reimpl's SyncBatchNorm on two gloo ranks."""
    pytest.importorskip("samples.syncbn")
    t = tracer.load(gallery.record_syncbn(str(tmp_path / "s.tsdb"), steps=1))
    assert "synthesized" not in t.meta
    assert sorted(p.role_index for p in t.processes if p.role == "rank") == [0, 1]
    g = syncbn.build(t)
    points = sorted(
        (d for _n, d in g.nodes(data=True) if d["type"] == "sync"), key=lambda d: d["index"]
    )
    assert [p["op"] for p in points] == ["all_gather", "all_reduce", "all_reduce", "all_gather"]
    assert points[0]["phase"] == "forward" and points[1]["phase"] == "backward"
    assert points[2]["layer"] == "grad_all_reduce"  # the sample's DDP-style gradient averaging
    assert points[3]["layer"] == "running_stats_check"  # the sample's final comparison
    assert g.nodes["rank 0", 0]["cls"] == "SyncBatchNorm"
    assert not any(p["mismatch"] for p in points)
