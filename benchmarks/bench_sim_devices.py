"""What ``--sim-devices`` costs an unmodified torch program, against its plain module.

One forward and backward of the small CNN of ``bench_dataparallel`` built
with ``torch.nn`` (batch 16 of 3x32x32): the plain torch module, then
``torch.nn.DataParallel`` over two simulated devices as ``record --target
torch --sim-devices 2`` runs it (``tracer/targets/torch/sim_devices.py``):
free-running replica threads, the same without ``ReplicaDevice`` (the torch
function mode that maps ``device=x.device`` on replica 1: its cost is the
difference), and under lockstep. No recorder is attached: this is the cost
of the simulation alone.

Times are the process's CPU time (replica threads included, one intra-op
thread), best of interleaved rounds: interference only ever adds time.

Run: ``python -m benchmarks.bench_sim_devices``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import torch

from benchmarks.bench_dataparallel import build_model
from tracer.targets.torch import sim_devices
from tracer.targets.torch.sim_devices import SimDevices

BATCH = 16
ROUNDS = 7


def _plain_call(self: Any, *args: Any, **kwargs: Any) -> Any:
    """A replica called without ReplicaDevice."""
    return self.module(*args, **kwargs)


def _steps() -> dict[str, Callable[[], None]]:
    model = build_model(torch.nn)
    x = torch.randn(BATCH, 3, 32, 32)
    with SimDevices(2, lockstep=False):
        free = torch.nn.DataParallel(model)
    with SimDevices(2, lockstep=True):
        locked = torch.nn.DataParallel(model)
    with_mode = sim_devices._OnDevice.__call__

    def plain() -> None:
        model(x).square().mean().backward()

    def simulated() -> None:
        free(x).square().mean().backward()

    def no_mode() -> None:
        sim_devices._OnDevice.__call__ = _plain_call
        try:
            free(x).square().mean().backward()
        finally:
            sim_devices._OnDevice.__call__ = with_mode

    def lockstep() -> None:
        locked(x).square().mean().backward()

    return {
        "plain torch module": plain,
        "torch.nn.DataParallel, 2 sim": simulated,
        "... without ReplicaDevice": no_mode,
        "... under lockstep": lockstep,
    }


def _cpu_time(fn: Callable[[], object], n: int) -> float:
    """Process CPU time per call, in microseconds."""
    t0 = time.process_time()
    for _ in range(n):
        fn()
    return (time.process_time() - t0) / n * 1e6


def measure(n: int = 10, rounds: int = ROUNDS) -> dict[str, float]:
    """Best of interleaved rounds for each step (microseconds)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        fns = _steps()
        best = dict.fromkeys(fns, float("inf"))
        for fn in fns.values():
            fn()  # warm up
        for _ in range(rounds):
            for name, fn in fns.items():
                best[name] = min(best[name], _cpu_time(fn, n))
    finally:
        torch.set_num_threads(threads)
    return best


def run() -> str:
    """The markdown section: step times and their ratio to the plain module."""
    steps = measure()
    base = steps["plain torch module"]
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    lines = [
        "### Simulated devices for torch programs (`--sim-devices`)",
        "",
        f"Forward + backward of the small CNN above in `torch.nn`, batch {BATCH} of 3x32x32, "
        "no recorder (process CPU time, one intra-op thread, best of interleaved rounds; "
        f"load average {load} on a shared 2-core machine).",
        "",
        "| step | time (ms) | ratio to plain |",
        "|---|---:|---:|",
    ]
    lines += [f"| {k} | {v / 1e3:.2f} | {v / base:.2f}x |" for k, v in steps.items()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(run())
