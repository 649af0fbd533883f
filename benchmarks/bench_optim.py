"""What reimpl's optimizers cost: one Adam step on 10M parameters against torch.

The model is four 2500x1000 float32 weights (10M parameters) held as plain
tensors with fixed gradients. For each update path (single-tensor for-loop,
foreach, fused) both libraries step twins of the same weights; torch's fused
path is its C++ kernel (``parallel_for`` over torch's threads), ours the numba
kernel (``prange`` over numba's threads). Each round times one torch step and
one reimpl step back to back, alternating which goes first, so a noisy
neighbour slows both alike; the ratio is the median of the per-round ratios,
the times medians, all after warmup and untraced (the hot path tests the sink
once per step).

Run: ``python -m benchmarks.bench_optim``.
"""

from __future__ import annotations

import statistics
import time

import torch

import reimpl.optim

SHAPES = [(2500, 1000)] * 4
WARMUP = 2
ROUNDS = 9
PATHS = {
    "single-tensor (CPU default)": {"foreach": False},
    "foreach": {"foreach": True},
    "fused (torch C++ / reimpl numba)": {"fused": True},
}


def _twins(kwargs: dict) -> tuple[torch.optim.Optimizer, reimpl.optim.Adam]:
    """torch and reimpl Adam over equal 10M-parameter weights with equal grads."""
    gen = torch.Generator().manual_seed(0)
    weights = [torch.randn(s, generator=gen) for s in SHAPES]
    grads = [torch.randn(s, generator=gen) for s in SHAPES]
    sides = []
    for lib in (torch, reimpl):
        params = [w.clone().requires_grad_() for w in weights]
        for p, g in zip(params, grads):
            p.grad = g.clone()
        sides.append(lib.optim.Adam(params, lr=1e-3, weight_decay=0.01, **kwargs))
    return sides[0], sides[1]


def _time_step(opt: object) -> float:
    t0 = time.perf_counter()
    opt.step()  # type: ignore[attr-defined]
    return time.perf_counter() - t0


def measure(kwargs: dict) -> tuple[float, float, float]:
    """Median seconds per step for torch and reimpl, and the median paired ratio."""
    theirs, ours = _twins(kwargs)
    for _ in range(WARMUP):  # first steps allocate state (and compile numba)
        theirs.step()
        ours.step()
    t_times, r_times = [], []
    for i in range(ROUNDS):
        if i % 2 == 0:
            t_times.append(_time_step(theirs))
            r_times.append(_time_step(ours))
        else:
            r_times.append(_time_step(ours))
            t_times.append(_time_step(theirs))
    ratio = statistics.median(r / t for r, t in zip(r_times, t_times))
    return statistics.median(t_times), statistics.median(r_times), ratio


def run() -> str:
    """The markdown section: per path, torch ms, reimpl ms and their ratio."""
    n = sum(a * b for a, b in SHAPES)
    lines = [
        "### Optimizers: Adam step, reimpl over torch",
        "",
        f"{n / 1e6:.0f}M float32 parameters in {len(SHAPES)} tensors, weight_decay=0.01, "
        f"{torch.get_num_threads()} torch threads; median of {ROUNDS} interleaved steps "
        f"after {WARMUP} warmup steps (ratio: median of paired rounds).",
        "",
        "| path | torch ms | reimpl ms | reimpl / torch |",
        "|---|---:|---:|---:|",
    ]
    for label, kwargs in PATHS.items():
        t, r, ratio = measure(kwargs)
        lines.append(f"| {label} | {t * 1e3:.1f} | {r * 1e3:.1f} | {ratio:.2f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(run())
