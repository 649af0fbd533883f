"""tracer/distributed/clock.py: two "hosts" with clocks seconds apart line up after merging.

Each of two spawned ranks records its own part file, as two hosts would;
rank 1's clock is shifted by ``TORCHSCOPE_CLOCK_SKEW_NS`` (every time it
records, and the clock exchange itself). After merging, every matched
collective overlaps across the ranks within the estimated error.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from datetime import timedelta

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import tracer
from reimpl import _trace
from samples.syncbn import _free_port
from tracer.distributed.merge import merge

SKEW_NS = 7_000_000_000  # rank 1's "host" runs 7 s ahead


def _host(rank: int, port: int, out_dir: str) -> None:
    from reimpl.nn.modules.batchnorm import SyncBatchNorm

    os.environ["TORCHSCOPE_CLOCK_SKEW_NS"] = str(SKEW_NS * rank)
    with tracer.record(os.path.join(out_dir, f"host{rank}.tsdb"), flush_interval=0.2):
        dist.init_process_group(
            "gloo",
            init_method=f"tcp://127.0.0.1:{port}",
            rank=rank,
            world_size=2,
            timeout=timedelta(seconds=60),
        )
        bn = SyncBatchNorm(3)
        for step in range(2):
            with _trace.span("step", f"step {step}"):
                bn(torch.randn(4, 3, requires_grad=True)).sum().backward()
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_hosts(tmp_path_factory):
    out = tmp_path_factory.mktemp("hosts")
    mp.spawn(_host, args=(_free_port(), str(out)), nprocs=2, join=True)
    return out


def _clock(path):
    t = tracer.load(str(path))
    return next(s["payload"] for s in t.snapshots if s["kind"] == "clock")


@pytest.mark.multiprocess
@pytest.mark.slow
def test_the_estimate_finds_the_injected_offset(two_hosts):
    estimate = _clock(two_hosts / "host1.tsdb")
    # rank 0's time = rank 1's time + offset: the offset undoes the skew
    assert abs(estimate["offset_ns"] + SKEW_NS) <= estimate["error_ns"]
    assert estimate["rounds"] >= 3 and estimate["error_ns"] < 1e9


@pytest.mark.multiprocess
@pytest.mark.slow
def test_matched_collectives_overlap_within_the_error_after_merging(two_hosts):
    out = two_hosts / "merged.tsdb"
    result = merge(str(out), [str(two_hosts / "host0.tsdb"), str(two_hosts / "host1.tsdb")])
    error = max(i["error_ns"] for i in result.report["inputs"])
    shifts = [i["shift_ns"] for i in result.report["inputs"]]
    assert shifts[0] == 0 and abs(shifts[1] + SKEW_NS) <= error
    t = tracer.load(str(out))
    assert json.loads(t.meta["merge"])["inputs"][1]["error_ns"] == error
    points = defaultdict(list)
    for row in range(t.n):
        if t.kind_of(row).startswith("collective."):
            a = t.attrs(row)
            points[(a["group"], a["seq"])].append(row)
    assert len(points) == 4 and all(len(rows) == 2 for rows in points.values())
    for rows in points.values():
        # no rank leaves a collective before the last one entered it
        last_in = max(t.start_ns[r] for r in rows)
        first_out = min(t.end_ns[r] for r in rows)
        assert last_in <= first_out + error
    # the whole second part moved: its run starts within a second of the first's
    starts = {p.part: p.start_ns for p in t.processes}
    assert abs(starts[1] - starts[2]) < 1e9 < SKEW_NS


@pytest.mark.multiprocess
@pytest.mark.slow
def test_a_host_whose_part_is_missing_is_named(two_hosts):
    result = merge(str(two_hosts / "only0.tsdb"), [str(two_hosts / "host0.tsdb")])
    assert result.report["world_size"] == 2 and result.report["missing"] == [1]
    t = tracer.load(str(two_hosts / "only0.tsdb"))
    rows = [r for r in range(t.n) if t.kind_of(r).startswith("collective.")]
    assert rows and all(t.attrs(r)["missing"] == [1] for r in rows)
    assert json.loads(t.meta["merge"])["incomplete_count"] == len(rows)


@pytest.mark.multiprocess
@pytest.mark.slow
def test_the_syncbn_graph_draws_the_merged_waits(two_hosts):
    from tracer.graphs import syncbn

    out = two_hosts / "graph.tsdb"
    merge(str(out), [str(two_hosts / "host0.tsdb"), str(two_hosts / "host1.tsdb")])
    t = tracer.load(str(out))
    g = syncbn.build(t, top=None)
    points = [d for _n, d in g.nodes(data=True) if d["type"] == "sync"]
    assert len(points) == 4 and not any(p["mismatch"] for p in points)
    for node, data in g.nodes(data=True):
        if data["type"] == "collective":
            attrs = t.attrs(data["row"])
            assert data["wait_ns"] == attrs["wait_ns"]  # the wait for the slowest rank
            point = g.nodes[f"sync {node[1]}"]
            assert point["straggler"] == f"rank {attrs['last_rank']}" or point["max_wait_ns"] == 0


@pytest.mark.multiprocess
@pytest.mark.slow
def test_chrome_flow_arrows_join_the_same_collective(two_hosts):
    from tracer.export.chrome import collective_flow_pairs

    out = two_hosts / "flows.tsdb"
    merge(str(out), [str(two_hosts / "host1.tsdb"), str(two_hosts / "host0.tsdb")])
    t = tracer.load(str(out))
    pairs = collective_flow_pairs(t)
    assert len(pairs) == 4
    for a, b, _op in pairs:
        key = lambda r: (t.attrs(r)["group"], t.attrs(r)["seq"])  # noqa: E731
        assert key(a) == key(b) and t.process_of(a).role_index == 0


def test_a_drifting_host_is_followed_between_its_estimates(tmp_path, monkeypatch):
    """No processes: generated parts whose rank 1 measured +1 us at local time 0
    and +3 us at local time 0.5 ms; its spans move by the interpolated offset."""
    from benchmarks import bench_merge

    monkeypatch.setattr(bench_merge, "N_RANKS", 2)
    monkeypatch.setattr(bench_merge, "N_SPANS", 1_000)
    est = [
        {"offset_ns": 1_000, "error_ns": 10, "at_ns": 0},
        {"offset_ns": 3_000, "error_ns": 20, "at_ns": 500_000},
    ]
    parts = [str(tmp_path / "r0.tsdb"), str(tmp_path / "r1.tsdb")]
    bench_merge.make_part(parts[0], 0)
    bench_merge.make_part(parts[1], 1, clocks=est)
    result = merge(str(tmp_path / "m.tsdb"), parts)
    node1 = result.report["inputs"][1]
    assert node1["shift_ns"] == 1_000 and node1["error_ns"] == 10  # the best estimate
    assert node1["drift_ppm"] == pytest.approx(4_000.0)  # 2 us over 0.5 ms
    before, after = tracer.load(parts[1]), tracer.load(str(tmp_path / "m.tsdb"))
    # offset(t) = 1000 + 2000 t / 5e5 ns between the estimates, held after the last
    moved = [s + round(1_000 + 2_000 * min(s, 500_000) / 500_000) for s in before.start_ns.tolist()]
    rank1 = after.part == next(p.part for p in after.processes if p.role_index == 1)
    assert sorted(after.start_ns[rank1].tolist()) == sorted(moved)
    assert max(before.start_ns) > 500_000  # some spans lie after the last estimate
