"""tracer/distributed/launch.py: ``record --nproc-per-node`` hands the launch to torchrun.

The must-show run: the SyncBatchNorm sample on 4 gloo ranks gives one merged
trace with 4 rank lanes, every collective matched across the 4 ranks, and
waits that follow the order the ranks arrived in.
"""

from __future__ import annotations

import subprocess
import sys
from collections import defaultdict

import pytest
from torch.distributed.run import get_args_parser

import tracer
from tracer.distributed import launch


def test_every_torchrun_option_is_passed_through():
    """The front's list is torchrun's own, for the installed torch."""
    theirs = set()
    for action in get_args_parser()._actions:
        longs = [o for o in action.option_strings if o.startswith("--") and "_" not in o]
        theirs.update(o[2:] for o in longs)
    theirs -= {"help", *launch.NOT_PASSED}
    assert theirs == set(launch.VALUE_OPTIONS) | set(launch.FLAG_OPTIONS)


def test_the_options_given_reach_torchrun_as_written():
    import argparse

    parser = argparse.ArgumentParser()
    launch.add_launch_options(parser)
    ns = parser.parse_args(
        ["--nproc-per-node", "2", "--rdzv_endpoint", "h:29400", "--standalone", "--nnodes", "1"]
    )
    assert launch.requested(ns)
    assert launch.torchrun_args(ns) == [
        "--nnodes", "1", "--nproc-per-node", "2", "--rdzv-endpoint", "h:29400", "--standalone",
    ]  # fmt: skip
    assert launch.part_path("out.tsdb", ns) == "out.node0.tsdb"


def _points(t):
    """(group, seq) -> [(rank, row)] for every collective span of the merged trace."""
    rank_of = {p.part: p.role_index for p in t.processes if p.role == "rank"}
    out = defaultdict(list)
    for row in range(t.n):
        if t.kind_of(row).startswith("collective."):
            a = t.attrs(row)
            out[(a["group"], a["seq"])].append((rank_of[int(t.part[row])], row))
    return out


@pytest.mark.multiprocess
@pytest.mark.slow
def test_four_gloo_ranks_of_the_syncbn_sample_merge_into_one_trace(tmp_path):
    out = tmp_path / "syncbn.tsdb"
    command = [
        sys.executable, "-m", "tracer.cli", "record", "--nproc-per-node", "4",
        "--flush-interval", "0.2", "-o", str(out),
        "-m", "samples.syncbn", "--steps", "2", "--backend", "gloo",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "ranks 0-3" in done.stderr and "complete" in done.stderr
    assert (tmp_path / "syncbn.node0.tsdb").exists()  # this host's part stays
    t = tracer.load(str(out))
    ranks = sorted(p.role_index for p in t.processes if p.role == "rank")
    assert ranks == [0, 1, 2, 3]  # one lane (part) per rank
    assert all(p.status == "ok" for p in t.processes)
    points = _points(t)
    # per step: SyncBN's all_gather and all_reduce, the gradient all_reduce; then one check
    assert len(points) == 2 * 3 + 1
    ops = {t.attrs(rows[0][1])["op"] for rows in points.values()}
    assert ops == {"all_gather", "all_reduce"}
    for key, rows in points.items():
        assert sorted(r for r, _ in rows) == [0, 1, 2, 3], key
        by_arrival = sorted(rows, key=lambda rr: t.start_ns[rr[1]])
        last_start = t.start_ns[by_arrival[-1][1]]
        waits = [t.attrs(row)["wait_ns"] for _, row in by_arrival]
        # the earlier a rank arrived, the longer it waited; the last one did not wait
        assert waits == sorted(waits, reverse=True) and waits[-1] == 0
        for _rank, row in rows:
            a = t.attrs(row)
            assert a["peers"] == 4 and a["expected"] == 4 and "missing" not in a
            assert a["last_rank"] == by_arrival[-1][0]
            assert a["wait_ns"] == min(last_start - t.start_ns[row], t.dur_ns[row])
            assert a["call_ns"] == t.dur_ns[row]
    report = tracer_report(t)
    assert report["world_size"] == 4 and report["missing"] == [] and report["stopped_early"] == []
    # what each rank said about itself at process-group start
    info = {s["payload"]["rank"]: s["payload"] for s in t.snapshots if s["kind"] == "rank"}
    assert sorted(info) == [0, 1, 2, 3]
    for rank, payload in info.items():
        assert payload["local_rank"] == rank and payload["world_size"] == 4
        assert payload["backend"] == "gloo" and payload["host"]
        assert "--nproc-per-node 4" in payload["launch"]
    # ranks on one host share a clock: each estimate holds zero within its bound
    clocks = [s["payload"] for s in t.snapshots if s["kind"] == "clock"]
    assert len(clocks) == 4
    for c in clocks:
        assert abs(c["offset_ns"]) <= c["error_ns"], c


def tracer_report(t):
    import json

    return json.loads(t.meta["merge"])
