"""tracer/distributed/merge.py: a rank killed mid-run.

Three gloo ranks under ``record --nproc-per-node 3``; rank 2 is SIGKILLed
after its second collective. The merge keeps every part, names rank 2 and
the last collective it reached, and the survivors' parts hold everything
they did up to the collective the dead rank never joined.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

import tracer

PROGRAM = """
    import os, signal
    from datetime import timedelta
    import torch, torch.distributed as dist
    from reimpl import _trace
    from reimpl._collectives import collective

    dist.init_process_group("gloo", timeout=timedelta(seconds=60))
    rank = dist.get_rank()
    t = torch.ones(4)
    for step in range(3):
        with _trace.span("step", f"step {step}"):
            collective("all_reduce", lambda: dist.all_reduce(t), [t])
        if rank == 2 and step == 1:
            _trace.sink.flush()  # what a periodic flush would have written by now
            os.kill(os.getpid(), signal.SIGKILL)
    dist.destroy_process_group()
"""


def launch(tmp_path, program: str, nproc: int, timeout: float):
    """``torchscope record --nproc-per-node nproc`` of ``program``: (trace path, result)."""
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(program))
    out = tmp_path / "run.tsdb"
    command = [
        sys.executable, "-m", "tracer.cli", "record", "--nproc-per-node", str(nproc),
        "--monitor-interval", "0.1", "-o", str(out), str(script),
    ]  # fmt: skip
    return out, subprocess.run(command, capture_output=True, text=True, timeout=timeout)


@pytest.mark.multiprocess
@pytest.mark.slow
def test_a_killed_rank_is_named_with_its_last_collective(tmp_path):
    out, done = launch(tmp_path, PROGRAM, nproc=3, timeout=240)
    assert done.returncode != 0  # the launch failed, as it should
    assert "rank 2 stopped early" in done.stderr, done.stderr[-3000:]
    t = tracer.load(str(out))
    report = json.loads(t.meta["merge"])
    assert report["ranks"] == [0, 1, 2] and report["world_size"] == 3
    stopped = {s["rank"]: s for s in report["stopped_early"]}
    assert stopped[2]["status"].startswith("died")
    assert stopped[2]["last"]["seq"] == 1 and stopped[2]["last"]["op"] == "all_reduce"
    assert report["last_collective"]["2"]["seq"] == 1
    # the point rank 2 never reached is named, with who was missing
    assert [(p["seq"], p["missing"]) for p in report["incomplete"]] == [(2, [2])]
    parts = {p.role_index: p for p in t.processes if p.role == "rank"}
    for rank in (0, 1):  # the survivors: every step, every collective, the cut one too
        rows = [r for r in range(t.n) if t.part[r] == parts[rank].part]
        steps = sorted(t.name_of(r) for r in rows if t.kind_of(r) == "step")
        seqs = sorted(t.attrs(r)["seq"] for r in rows if t.kind_of(r).startswith("collective."))
        assert steps == ["step 0", "step 1", "step 2"] and seqs == [0, 1, 2]
        assert parts[rank].status != "ok"  # they ended with an error or SIGTERM


NEVER_JOINS = """
    import sys, os
    from datetime import timedelta
    import torch.distributed as dist
    if os.environ["RANK"] == "1":
        sys.exit(3)  # dies before joining the process group
    dist.init_process_group("gloo", timeout=timedelta(seconds=600))
"""


@pytest.mark.multiprocess
@pytest.mark.slow
def test_a_rank_that_never_joins_ends_the_others_and_is_named(tmp_path):
    # bounded far below the 600 s rank 0 would wait in init_process_group on its own
    out, done = launch(tmp_path, NEVER_JOINS, nproc=2, timeout=120)
    assert done.returncode != 0
    report = json.loads(tracer.load(str(out)).meta["merge"])
    assert report["ranks"] == [0, 1] and report["world_size"] == 2  # named from torchrun's env
    stopped = {s["rank"]: s for s in report["stopped_early"]}
    assert stopped[1]["status"] == "exit 3" and stopped[1]["last"] is None
    assert stopped[0]["status"] == "terminated: SIGTERM"  # the agent ended it, it flushed


def test_the_merge_command_reports_and_refuses_bad_inputs(tmp_path, monkeypatch):
    from torchscope_cli import torchscope

    from benchmarks import bench_merge

    monkeypatch.setattr(bench_merge, "N_RANKS", 2)
    monkeypatch.setattr(bench_merge, "N_SPANS", 1_000)
    parts = [str(tmp_path / f"r{rank}.tsdb") for rank in (0, 1)]
    for rank, path in enumerate(parts):
        bench_merge.make_part(path, rank)
    done = torchscope("merge", str(tmp_path / "m.tsdb"), *parts)
    assert done.returncode == 0, done.stderr
    assert (
        "merged 2 part file(s)" in done.stderr and "100 matched points, 100 complete" in done.stderr
    )
    missing = torchscope("merge", str(tmp_path / "n.tsdb"), parts[0], str(tmp_path / "none.tsdb"))
    assert missing.returncode == 2 and "none.tsdb: no such trace file" in missing.stderr
    assert not (tmp_path / "n.tsdb").exists()
    onto = torchscope("merge", parts[0], *parts)
    assert onto.returncode == 2 and "is also an input" in onto.stderr
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    refused = torchscope("merge", str(notes), *parts)
    assert refused.returncode == 2 and "is not a torchscope trace" in refused.stderr
    assert notes.read_text() == "mine"
    again = torchscope("merge", str(tmp_path / "m.tsdb"), *parts)  # a trace is replaced
    assert again.returncode == 0, again.stderr
