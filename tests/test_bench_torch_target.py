"""benchmarks/bench_torch_target.py measures every config and leaves torch and tracing as found."""

from __future__ import annotations

import torch

from benchmarks import bench_torch_target
from reimpl import _trace
from tracer.targets.torch import attach as torch_attach


def test_measure_times_every_config_and_restores_torch() -> None:
    call_impl = torch.nn.Module._call_impl

    def build(nn):
        return nn.Sequential(nn.Linear(8, 8), nn.BatchNorm1d(8), nn.ReLU())

    best = bench_torch_target.measure(build, lambda: torch.randn(4, 8), rounds=1, n=1)
    assert set(best) == {
        "torch", "traced_fwd", "traced", "hooks_fwd", "viztracer", "torch.profiler", "reimpl",
        "reimpl_fwd",
    }  # fmt: skip
    assert all(v > 0 for v in best.values())
    assert torch.nn.Module._call_impl is call_impl
    assert not torch_attach.attached()
    assert _trace.sink is None
