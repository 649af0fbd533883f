"""tracer/distributed/launch.py: ``record --nproc-per-node`` hands the launch to torchrun.

The must-show run: the SyncBatchNorm sample on 4 gloo ranks gives one merged
trace with 4 rank lanes, every collective matched across the 4 ranks, and
waits that follow the order the ranks arrived in.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections import defaultdict

import pytest
from torch.distributed.run import get_args_parser

import tracer
from samples.syncbn import _free_port
from tracer.distributed import launch
from tracer.distributed.merge import merge


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


TWO_HOSTS = """
    from datetime import timedelta
    import torch, torch.distributed as dist
    from reimpl._collectives import collective
    dist.init_process_group("gloo", timeout=timedelta(seconds=60))
    t = torch.ones(3)
    for _ in range(3):
        collective("all_reduce", lambda: dist.all_reduce(t), [t])
    dist.destroy_process_group()
"""


@pytest.mark.multiprocess
@pytest.mark.slow
def test_two_nodes_write_a_part_each_and_merge_onto_rank_0s_clock(tmp_path):
    script = tmp_path / "two.py"
    script.write_text(textwrap.dedent(TWO_HOSTS))
    out = tmp_path / "two.tsdb"
    port = str(_free_port())
    fronts = []
    for node in (0, 1):
        command = [
            sys.executable, "-m", "tracer.cli", "record", "--nproc-per-node", "1",
            "--nnodes", "2", "--node-rank", str(node), "--master-addr", "127.0.0.1",
            "--master-port", port, "-o", str(out), str(script),
        ]  # fmt: skip
        skew = {"TORCHSCOPE_CLOCK_SKEW_NS": str(5_000_000_000 * node)}  # node 1: 5 s ahead
        fronts.append(
            subprocess.Popen(
                command, env=dict(os.environ, **skew), stderr=subprocess.PIPE, text=True
            )
        )
    errors = [p.communicate(timeout=180)[1] for p in fronts]
    assert [p.returncode for p in fronts] == [0, 0], errors
    parts = [tmp_path / "two.node0.tsdb", tmp_path / "two.node1.tsdb"]
    assert all(p.exists() for p in parts) and not out.exists()  # no merge on one node
    assert "torchscope merge" in errors[0] and "two.node*.tsdb" in errors[0]
    report = merge(str(out), [str(p) for p in parts]).report
    node1 = report["inputs"][1]
    assert node1["ranks"] == [1] and abs(node1["shift_ns"] + 5_000_000_000) <= node1["error_ns"]
    assert report["collectives"] == {"points": 3, "complete": 3}
