"""What reimpl's DataLoader costs: against torch's, and traced against untraced.

A synthetic map-style dataset whose samples each cost a fixed amount of
Python work (a stand-in for decoding an image) plus a small tensor; batches
of 16 collated by ``default_collate``, ``num_workers`` 0 and 2. Each epoch is
measured in steady state, from the first batch to the last (worker start-up
and shutdown left out), two ways:

* wall-clock batches per second, the number a user sees;
* batches per CPU second of the main process and its workers together (all
  their threads, from ``/proc/<pid>/task/*/schedstat``, in ns): what loading
  costs, which a busy neighbour on a shared machine cannot distort.

The compared sides alternate within each round and each side's best round
counts (interference only ever slows a run down).

Run: ``python -m benchmarks.bench_dataloader``.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable

import torch
import torch.utils.data as T

import reimpl.utils.data as R
import tracer

SAMPLES = 1600
BATCH = 16
SPIN = 1000  # Python loop steps per sample: ~50 us of "decoding" (a JPEG takes ~1 ms)
ROUNDS = 9


def _dataset_class(lib) -> type:
    class Synthetic(lib.Dataset):
        """Sample i: a 3x16x16 image and a label, after some per-sample work."""

        def __init__(self) -> None:
            gen = torch.Generator().manual_seed(0)
            self.images = torch.randn(64, 3, 16, 16, generator=gen)

        def __len__(self) -> int:
            return SAMPLES

        def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
            acc = 0
            for k in range(SPIN):  # the per-sample cost
                acc += k ^ i
            return self.images[i % 64] + (acc & 1), i % 10

    return Synthetic


DATASETS = {"torch": _dataset_class(T)(), "reimpl": _dataset_class(R)()}


def cpu_ns(pids: list[int]) -> int:
    """CPU time so far of every thread of these processes, in ns."""
    total = 0
    for pid in pids:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    total += int(f.read().split()[0])
            except OSError:
                pass  # the thread just ended
    return total


def rates(lib, dataset, workers: int) -> tuple[float, float]:
    """(batches per wall second, batches per CPU second) of one epoch's steady state."""
    loader = lib.DataLoader(dataset, batch_size=BATCH, shuffle=True, num_workers=workers)
    it = iter(loader)
    next(it)
    pids = [os.getpid()] + [w.pid for w in getattr(it, "_workers", [])]
    c0, t0 = cpu_ns(pids), time.perf_counter()
    n = len(loader) - 1
    for _ in range(n):
        next(it)
    wall, cpu = time.perf_counter() - t0, cpu_ns(pids) - c0  # before the workers exit
    for _ in it:
        pass
    return n / wall, n / (cpu * 1e-9)


def traced_rates(workers: int) -> tuple[float, float]:
    """``rates`` of reimpl's loader with a recorder attached (workers record too)."""
    with tempfile.TemporaryDirectory() as tmp:
        with tracer.record(os.path.join(tmp, "t.tsdb")):
            return rates(R, DATASETS["reimpl"], workers)


def paired(a: Callable[[], tuple], b: Callable[[], tuple], rounds: int) -> dict[str, float]:
    """Best wall and CPU rates of a and of b over interleaved rounds."""
    ra, rb = [], []
    for k in range(rounds):
        if k % 2:
            rb.append(b())
            ra.append(a())
        else:
            ra.append(a())
            rb.append(b())
    return {
        "wall": max(r[0] for r in ra),
        "wall_base": max(r[0] for r in rb),
        "cpu": max(r[1] for r in ra),
        "cpu_base": max(r[1] for r in rb),
    }


def measure(rounds: int = ROUNDS) -> dict[str, dict[str, float]]:
    """Every comparison of the section."""
    out = {}
    for workers in (0, 2):
        rates(R, DATASETS["reimpl"], workers)  # warm up (imports, first fork)
        out[f"vs_torch_{workers}"] = paired(
            lambda w=workers: rates(R, DATASETS["reimpl"], w),
            lambda w=workers: rates(T, DATASETS["torch"], w),
            rounds,
        )
        out[f"traced_{workers}"] = paired(
            lambda w=workers: traced_rates(w),
            lambda w=workers: rates(R, DATASETS["reimpl"], w),
            rounds,
        )
    return out


def run() -> str:
    """Measures once and returns a markdown section."""
    m = measure()
    rows = [
        ("reimpl vs torch, num_workers=0", "vs_torch_0", ">= 0.95"),
        ("reimpl vs torch, num_workers=2", "vs_torch_2", ">= 0.95"),
        ("traced vs untraced reimpl, num_workers=0", "traced_0", ">= 0.90"),
        ("traced vs untraced reimpl, num_workers=2", "traced_2", ">= 0.90"),
    ]
    lines = [
        "### DataLoader: reimpl vs torch, traced vs untraced",
        "",
        f"{SAMPLES} synthetic samples (a 3x16x16 tensor after {SPIN} Python loop steps each), "
        f"batch {BATCH}, shuffled; steady-state batches per wall second and per CPU second "
        f"(main process and workers, all threads), best of {ROUNDS} interleaved rounds. The "
        "CPU ratio is the one a shared machine cannot distort.",
        "",
        "| measure | batches/s | baseline | wall ratio | batches/CPU-s | baseline "
        "| CPU ratio | goal |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, key, goal in rows:
        r = m[key]
        lines.append(
            f"| {label} | {r['wall']:.0f} | {r['wall_base']:.0f} "
            f"| {r['wall'] / r['wall_base']:.3f} | {r['cpu']:.0f} | {r['cpu_base']:.0f} "
            f"| {r['cpu'] / r['cpu_base']:.3f} | {goal} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    started = time.perf_counter()
    print(run())
    print(f"({time.perf_counter() - started:.1f} s)")
