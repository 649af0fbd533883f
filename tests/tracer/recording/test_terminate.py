"""tracer/recording/terminate.py: a spawned child terminated with SIGTERM keeps its spans.

Real processes: a spawn-context child records its own part (subprocesses.py);
the test sends it SIGTERM the way torchrun's agent or mp.spawn do.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

import tracer
from reimpl import _collectives, _trace
from samples.syncbn import _free_port


def _quiet_writer() -> None:
    """No periodic flush from here on: only SIGTERM's flush can save what follows."""
    _trace.sink.flush_interval = 3600.0
    time.sleep(1.2)  # the writer's pending 1 s wait ends; its next one is an hour


def _wait_for(path: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.02)


def _busy_child(ready: str) -> None:
    _quiet_writer()
    for k in range(5):
        with _trace.span("step", f"step {k}", index=k):
            pass
    Path(ready).touch()
    time.sleep(60)  # the main thread sleeps in Python: the SystemExit path


def _blocked_rank(rank: int, port: int, out_dir: str) -> None:
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=2,
        timeout=timedelta(seconds=120),
    )
    out = Path(out_dir)
    if rank == 0:  # stays alive, never joins: rank 1 blocks in C until its SIGTERM
        _wait_for(out / "released", 120)
        os._exit(0)
    _quiet_writer()
    with _trace.span("step", "step 0"):
        pass

    def announce() -> None:
        while not _collectives.in_flight:
            time.sleep(0.01)
        (out / "ready").touch()

    import threading

    threading.Thread(target=announce, daemon=True).start()
    t = torch.ones(4)
    _collectives.collective("all_reduce", lambda: dist.all_reduce(t), [t])


@pytest.mark.multiprocess
@pytest.mark.slow
def test_sigterm_flushes_a_spawned_childs_unflushed_spans(tmp_path):
    path = str(tmp_path / "t.tsdb")
    ctx = mp.get_context("spawn")
    with tracer.record(path):
        child = ctx.Process(target=_busy_child, args=(str(tmp_path / "ready"),))
        child.start()
        _wait_for(tmp_path / "ready")
        os.kill(child.pid, signal.SIGTERM)
        child.join(30)
    assert child.exitcode == 128 + signal.SIGTERM
    t = tracer.load(path)
    part = next(p for p in t.processes if p.pid == child.pid)
    assert part.status == "terminated: SIGTERM"
    names = sorted(t.name_of(r) for r in range(t.n) if t.part[r] == part.part)
    assert names == [f"step {k}" for k in range(5)]


@pytest.mark.multiprocess
@pytest.mark.slow
def test_a_rank_blocked_in_a_collective_writes_it_cut_at_sigterm(tmp_path):
    path = str(tmp_path / "t.tsdb")
    ctx = mp.get_context("spawn")
    port = _free_port()
    with tracer.record(path):
        ranks = [ctx.Process(target=_blocked_rank, args=(r, port, str(tmp_path))) for r in (0, 1)]
        for p in ranks:
            p.start()
        _wait_for(tmp_path / "ready", 120)
        sent = time.monotonic()
        os.kill(ranks[1].pid, signal.SIGTERM)
        ranks[1].join(30)
        ended = time.monotonic() - sent
        (tmp_path / "released").touch()
        ranks[0].join(30)
    # gloo does not return to Python: the watcher ended it after its grace period
    assert ranks[1].exitcode == 128 + signal.SIGTERM
    assert ended < 20  # bounded: far below the collective's 120 s timeout
    t = tracer.load(path)
    part = next(p for p in t.processes if p.pid == ranks[1].pid)
    assert part.status == "terminated: SIGTERM"
    rows = [r for r in range(t.n) if t.part[r] == part.part]
    kinds = [t.kind_of(r) for r in rows]
    assert kinds.count("step") == 1 and kinds.count("collective.all_reduce") == 1
    coll = rows[kinds.index("collective.all_reduce")]
    attrs = t.attrs(coll)
    assert attrs["interrupted"] == "SIGTERM"
    assert (attrs["group"], attrs["seq"]) == ("world", 0)
