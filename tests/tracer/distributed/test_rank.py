"""tracer/distributed/rank.py: what a recorded rank says about itself at process-group start."""

from __future__ import annotations

import torch.distributed as dist

import tracer
from tracer.file.trace import Trace


def _record_world1(path: str) -> Trace:
    with tracer.record(path):
        assert hasattr(dist.init_process_group, "__torchscope_original__")  # wrapped
        dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
        dist.destroy_process_group()
    assert not hasattr(dist.init_process_group, "__torchscope_original__")  # and unwrapped
    return tracer.load(path)


def test_a_rank_names_itself_and_measures_its_clock(tmp_path):
    t = _record_world1(str(tmp_path / "t.tsdb"))
    (part,) = t.processes
    assert (part.role, part.role_index) == ("rank", 0)
    snaps = {s["kind"]: s["payload"] for s in t.snapshots}
    info = snaps["rank"]
    assert (info["rank"], info["world_size"], info["backend"]) == (0, 1, "gloo")
    assert info["host"] and info["launch"]
    assert snaps["clock"]["offset_ns"] == 0 and snaps["clock"]["reference_rank"] == 0


def test_the_clock_exchange_can_be_left_out(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHSCOPE_CLOCK_SYNC", "0")
    t = _record_world1(str(tmp_path / "t.tsdb"))
    kinds = [s["kind"] for s in t.snapshots]
    assert "rank" in kinds and "clock" not in kinds


def test_a_long_run_estimates_again_every_so_many_collectives(tmp_path, monkeypatch):
    import torch

    from reimpl._collectives import collective

    monkeypatch.setenv("TORCHSCOPE_CLOCK_EVERY", "2")
    path = str(tmp_path / "t.tsdb")
    with tracer.record(path):
        dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
        t = torch.ones(2)
        for _ in range(5):
            collective("all_reduce", lambda: dist.all_reduce(t), [t])
        dist.destroy_process_group()
    clocks = [s["key"] for s in tracer.load(path).snapshots if s["kind"] == "clock"]
    assert clocks == ["start", "after world collective 1", "after world collective 3"]
