"""What DataParallel on simulated devices costs, against the plain module.

One forward and backward of a small CNN (conv-relu-conv-relu-pool-linear,
batch 16 of 3x32x32) through the plain reimpl module, and through
``DataParallel`` over ``sim:0, sim:1`` (scatter, replicate, two replica
threads, gather; backward through reduce-add), and the same under lockstep.
A last row runs the plain module on the two halves in one fresh thread:
torch ops in a new thread cost more (per-thread setup), and DataParallel
starts a thread per replica on every call, as upstream does.

Then one op on tensors tagged ``sim:1`` against the same op on plain
tensors: a conv the size of one replica's chunk, and a tiny add whose cost
is all per-op overhead, next to the floor any ``__torch_function__``
subclass pays (torch's dispatch to Python and back).

Times are the process's CPU time (replica threads included, one intra-op
thread), best of interleaved rounds: interference only ever adds time.

Run: ``python -m benchmarks.bench_dataparallel``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch._C import DisableTorchFunctionSubclass

from reimpl import nn
from reimpl.devices import to_device
from reimpl.nn.parallel import DataParallel, lockstep

BATCH = 16
ROUNDS = 7


def build_model(nn: Any = nn) -> Any:
    """The small CNN every variant runs (``nn``: reimpl's, or ``torch.nn``)."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 10),
    )


def _steps() -> dict[str, Callable[[], None]]:
    model = build_model()
    parallel = DataParallel(model, device_ids=["sim:0", "sim:1"])
    x = torch.randn(BATCH, 3, 32, 32)

    def plain() -> None:
        model(x).square().mean().backward()

    def simulated() -> None:
        parallel(x).square().mean().backward()

    def locked() -> None:
        with lockstep():
            parallel(x).square().mean().backward()

    def fresh_thread() -> None:
        def halves() -> None:
            for part in x.chunk(2):
                model(part).square().mean().backward()

        thread = threading.Thread(target=halves)
        thread.start()
        thread.join()

    return {
        "plain module": plain,
        "DataParallel, 2 sim": simulated,
        "... under lockstep": locked,
        "plain, both halves in one fresh thread": fresh_thread,
    }


def _ops() -> dict[str, tuple[Callable[[], object], Callable[[], object]]]:
    """(plain, tagged) versions of one op."""
    x = torch.randn(BATCH // 2, 16, 32, 32)
    w = torch.randn(16, 16, 3, 3)
    xs, ws = to_device(x, "sim:1"), to_device(w, "sim:1")
    a = torch.randn(64, 64)
    s = to_device(a, "sim:1")
    e = a.as_subclass(_Empty)
    return {
        "conv2d, one replica's chunk": (lambda: F.conv2d(x, w), lambda: F.conv2d(xs, ws)),
        "add, 64x64": (lambda: a + a, lambda: s + s),
        "add, 64x64, empty subclass (the floor)": (lambda: a + a, lambda: e + e),
    }


class _Empty(torch.Tensor):
    """The cheapest ``__torch_function__`` subclass: what any tag must pay at least."""

    @classmethod
    def __torch_function__(
        cls, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None
    ) -> Any:
        with DisableTorchFunctionSubclass():
            return func(*args, **(kwargs or {}))


def _cpu_time(fn: Callable[[], object], n: int) -> float:
    """Process CPU time per call, in microseconds."""
    t0 = time.process_time()
    for _ in range(n):
        fn()
    return (time.process_time() - t0) / n * 1e6


def _best(fns: dict[str, Callable[[], object]], n: int) -> dict[str, float]:
    """Best of interleaved rounds for each function."""
    best = dict.fromkeys(fns, float("inf"))
    for fn in fns.values():
        fn()  # warm up
    for _ in range(ROUNDS):
        for name, fn in fns.items():
            best[name] = min(best[name], _cpu_time(fn, n))
    return best


def run() -> str:
    """The markdown section: step times and per-op ratios."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        steps = _best(_steps(), 10)
        ops = {}
        for name, (plain, tagged) in _ops().items():
            n = 20 if "conv" in name else 2000
            timed = _best({"plain": plain, "tagged": tagged}, n)
            ops[name] = (timed["plain"], timed["tagged"])
    finally:
        torch.set_num_threads(threads)
    base = steps["plain module"]
    lines = [
        "### DataParallel on simulated devices",
        "",
        f"Forward + backward of a small CNN, batch {BATCH} of 3x32x32 (process CPU time, "
        "one intra-op thread, best of interleaved rounds).",
        "",
        "| step | time (ms) | ratio to plain |",
        "|---|---:|---:|",
    ]
    lines += [f"| {k} | {v / 1e3:.2f} | {v / base:.2f}x |" for k, v in steps.items()]
    lines += [
        "",
        "One op on tensors tagged `sim:1` against the same op on plain tensors "
        "(the tag's `__torch_function__` is the only difference).",
        "",
        "| op | plain (us) | tagged (us) | ratio | overhead (us) |",
        "|---|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {k} | {p:.1f} | {t:.1f} | {t / p:.2f}x | {t - p:.1f} |" for k, (p, t) in ops.items()
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(run())
