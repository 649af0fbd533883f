"""A distributed rank that never arrives: the error is clear and every trace part is kept."""

from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import tracer
from reimpl import _trace
from samples import syncbn


def _rank(rank: int, port: int, out_dir: str) -> None:
    from reimpl.nn.modules.batchnorm import SyncBatchNorm

    _trace.set_process_role("rank", rank)
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=2,
        timeout=timedelta(seconds=2),
    )
    done = Path(out_dir) / "done"
    if rank == 0:
        try:
            SyncBatchNorm(4)(torch.randn(6, 4))
        finally:
            done.touch()  # rank 0 fails; the error leaves through mp.spawn
    else:  # never joins the collective; waits for rank 0 to give up, then leaves
        deadline = time.monotonic() + 30
        while not done.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        _trace.sink.stop()  # what a clean exit does; os._exit skips the gloo teardown
        os._exit(0)


@pytest.mark.multiprocess
@pytest.mark.slow
def test_rank_that_never_joins_keeps_every_trace_part(tmp_path):
    path = str(tmp_path / "t.tsdb")
    with tracer.record(path), pytest.raises(mp.ProcessRaisedException) as err:
        mp.spawn(_rank, args=(syncbn._free_port(), str(tmp_path)), nprocs=2, join=True)
    assert "SyncBatchNorm all_gather timed out on rank 0 of 2" in str(err.value)
    assert "a peer rank never joined this collective" in str(err.value)
    t = tracer.load(path)
    parts = {(p.role, p.role_index): p for p in t.processes}
    assert set(parts) == {("main", None), ("rank", 0), ("rank", 1)}
    failed = parts[("rank", 0)]
    assert failed.status.startswith("error: RuntimeError: SyncBatchNorm all_gather timed out")
    kinds = [t.kind_of(r) for r in range(t.n) if t.part[r] == failed.part]
    assert "bn.stats" in kinds and "collective.all_gather" in kinds
    gather = next(
        r
        for r in range(t.n)
        if t.part[r] == failed.part and t.kind_of(r) == "collective.all_gather"
    )
    assert "timed out" in t.attrs(gather)["error"].lower()
    assert t.dur_ns[gather] >= 1.5e9  # it waited for the 2 s timeout
    assert parts[("rank", 1)].status == "ok"
