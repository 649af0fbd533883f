"""benchmarks/bench_sim_devices.py times every step and leaves torch as it found it."""

from __future__ import annotations

import torch

from benchmarks import bench_sim_devices
from tracer.targets.torch import sim_devices


def test_sim_devices_bench_times_each_step_and_restores_what_it_swapped() -> None:
    call = sim_devices._OnDevice.__call__
    best = bench_sim_devices.measure(n=1, rounds=1)
    assert set(best) == {
        "plain torch module",
        "torch.nn.DataParallel, 2 sim",
        "... without ReplicaDevice",
        "... under lockstep",
    }
    assert all(0 < v < float("inf") for v in best.values())
    assert sim_devices._OnDevice.__call__ is call
    assert torch.nn.DataParallel is sim_devices.TorchDataParallel
