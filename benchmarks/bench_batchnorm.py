"""What reimpl's batch norm costs: numba kernels against torch, SyncBatchNorm against BN.

1. Forward + backward of a BatchNorm2d on a 32x64x56x56 input (the shape of
   a ResNet's first stage): the five numba kernels that SyncBatchNorm chains
   (stats, elemt, backward_reduce, backward_elemt; gather is per-channel and
   negligible) against torch's native CPU ``batch_norm`` and its autograd
   backward. Same threads for both (torch's and numba's defaults).
2. One SyncBatchNorm training step (forward + backward) on 2 gloo ranks,
   against reimpl's BatchNorm2d in one process on the same per-rank batch.
   Each rank and the baseline use one thread, so 2 ranks fit 2 cores; the
   collective share comes from the trace spans the ranks emit.

Medians of interleaved rounds, so a noisy neighbour slows both sides alike.
Run: ``python -m benchmarks.bench_batchnorm``.
"""

from __future__ import annotations

import json
import socket
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from itertools import count
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from reimpl import _trace
from reimpl.nn.modules import _batch_norm_kernels as K

SHAPE = (32, 64, 56, 56)
SYNC_SHAPE = (16, 32, 28, 28)  # per rank
SYNC_STEPS = 15


def _median_pair(a: Callable[[], object], b: Callable[[], object], rounds: int) -> tuple:
    """Median seconds of ``a`` and ``b``, run alternately after one warm-up each."""
    a()
    b()
    ta, tb = [], []
    for _ in range(rounds):
        for fn, times in ((a, ta), (b, tb)):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return statistics.median(ta), statistics.median(tb)


def _kernel_pair(dtype: torch.dtype, layout: torch.memory_format) -> tuple:
    """(numba step, torch step) closures for one dtype and memory layout."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(SHAPE, generator=g, dtype=dtype).contiguous(memory_format=layout)
    dy = torch.randn(SHAPE, generator=g, dtype=dtype).contiguous(memory_format=layout)
    w, b = torch.ones(SHAPE[1], dtype=dtype), torch.zeros(SHAPE[1], dtype=dtype)
    count_ = torch.tensor([x.numel() // SHAPE[1]], dtype=torch.int32)

    def ours() -> torch.Tensor:
        mean, invstd = K.batch_norm_stats(x, 1e-5)
        K.batch_norm_elemt(x, w, b, mean, invstd, 1e-5)
        sum_dy, sum_dy_xmu, _, _ = K.batch_norm_backward_reduce(
            dy, x, mean, invstd, w, True, True, True
        )
        return K.batch_norm_backward_elemt(dy, x, mean, invstd, w, sum_dy, sum_dy_xmu, count_)

    xr, wr, br = (t.clone().requires_grad_() for t in (x, w, b))

    def theirs() -> None:
        y = F.batch_norm(xr, None, None, wr, br, True, 0.1, 1e-5)
        y.backward(dy)
        xr.grad = wr.grad = br.grad = None

    return ours, theirs


class _ListSink:
    """The cheapest recorder: a list append per record."""

    def __init__(self) -> None:
        self.records: list[tuple] = []
        self.next_id = count(1).__next__

    def append(self, record: tuple) -> None:
        self.records.append(record)

    def thread_info(self, tid: int, name: str, device: str | None) -> None:
        pass

    def process_role(self, role: str, index: int | None) -> None:
        pass

    def snapshot(self, kind: str, key: str, payload: dict) -> None:
        pass


def _bn_step(layer, x: torch.Tensor, dy: torch.Tensor) -> None:
    x = x.clone().requires_grad_()
    layer(x).backward(dy)


def _sync_rank(rank: int, world_size: int, port: int, out: str) -> None:
    """One rank: times SyncBatchNorm steps; rank 0 writes the medians."""
    from reimpl.nn import SyncBatchNorm

    torch.set_num_threads(1)
    import numba

    numba.set_num_threads(1)
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=world_size,
        timeout=timedelta(seconds=60),
    )
    layer = SyncBatchNorm(SYNC_SHAPE[1])
    g = torch.Generator().manual_seed(rank)
    x, dy = torch.randn(SYNC_SHAPE, generator=g), torch.randn(SYNC_SHAPE, generator=g)
    _bn_step(layer, x, dy)  # warm-up: compile caches, connections
    sink = _ListSink()
    _trace.attach(sink)
    times = []
    for _ in range(SYNC_STEPS):
        dist.barrier()
        t0 = time.perf_counter()
        _bn_step(layer, x, dy)
        times.append(time.perf_counter() - t0)
    _trace.detach()
    collective_s = sum(r[4] - r[3] for r in sink.records if r[5].startswith("collective.")) / 1e9
    if rank == 0:
        result = {"step_s": statistics.median(times), "collective_s": collective_s / SYNC_STEPS}
        Path(out).write_text(json.dumps(result))
    dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _single_process_step() -> float:
    """Median step of reimpl BatchNorm2d (torch's kernel), one thread, per-rank batch."""
    from reimpl.nn import BatchNorm2d

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        layer = BatchNorm2d(SYNC_SHAPE[1])
        g = torch.Generator().manual_seed(0)
        x, dy = torch.randn(SYNC_SHAPE, generator=g), torch.randn(SYNC_SHAPE, generator=g)
        _bn_step(layer, x, dy)
        times = []
        for _ in range(SYNC_STEPS):
            t0 = time.perf_counter()
            _bn_step(layer, x, dy)
            times.append(time.perf_counter() - t0)
        return statistics.median(times)
    finally:
        torch.set_num_threads(threads)


def run() -> str:
    """Measures both comparisons and returns them as a markdown section."""
    rows = []
    cases = [
        ("float32", torch.float32, torch.contiguous_format, 7),
        ("float64", torch.float64, torch.contiguous_format, 5),
        ("float32, channels_last", torch.float32, torch.channels_last, 5),
    ]
    for label, dtype, layout, rounds in cases:
        ours, theirs = _median_pair(*_kernel_pair(dtype, layout), rounds=rounds)
        rows.append(
            f"| numba kernels, {label} | {ours * 1e3:.1f} ms | {theirs * 1e3:.1f} ms "
            f"| {ours / theirs:.2f} |"
        )
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "sync.json")
        mp.spawn(_sync_rank, args=(2, _free_port(), out), nprocs=2, join=True)
        sync = json.loads(Path(out).read_text())
    single = _single_process_step()
    rows.append(
        f"| SyncBatchNorm step, 2 gloo ranks (1 thread each) | {sync['step_s'] * 1e3:.2f} ms "
        f"| {single * 1e3:.2f} ms | {sync['step_s'] / single:.2f} |"
    )
    shape = "x".join(map(str, SHAPE))
    sync_shape = "x".join(map(str, SYNC_SHAPE))
    return "\n".join(
        [
            "### BatchNorm: numba kernels and SyncBatchNorm",
            "",
            f"Forward + backward of BatchNorm2d on {shape}: the numba kernels SyncBatchNorm "
            "chains against torch's native CPU batch_norm (goal: ratio <= 1.5). Then one "
            f"SyncBatchNorm step with {sync_shape} per rank on 2 gloo ranks against "
            "BatchNorm2d in one process on the same per-rank batch; of the synchronised "
            f"step, collectives took {sync['collective_s'] * 1e3:.2f} ms "
            f"({sync['collective_s'] / sync['step_s']:.0%}).",
            "",
            "| what | ours | baseline | ratio |",
            "| --- | --- | --- | --- |",
            *rows,
            "",
        ]
    )


if __name__ == "__main__":
    print(run())
