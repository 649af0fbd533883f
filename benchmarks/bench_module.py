"""What reimpl.nn.Module costs: against torch.nn.Module, and traced against untraced.

One training step (forward, backward, SGD step) of a 50-block Linear+ReLU MLP
(width 64, batch 16), built once from torch's layers and once from reimpl's
with the same weights. Times are this thread's CPU time (one intra-op
thread), the best of interleaved rounds: interference only ever adds time.

Run: ``python -m benchmarks.bench_module``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from itertools import count

import torch
import torch.nn.functional as F

from reimpl import _trace
from reimpl.nn.modules import module as module_mod
from reimpl.nn.modules.module import Module
from reimpl.nn.parameter import Parameter

BLOCKS = 50
WIDTH = 64
BATCH = 16


class ListSink:
    """The cheapest recorder possible: a list append per record."""

    def __init__(self) -> None:
        self.records: list[tuple] = []
        self.snapshots: list[tuple] = []
        # Builtins, not methods: a recorder's hot entry points cost no Python frame.
        self.next_id = count(1).__next__
        self.append = self.records.append

    def thread_info(self, tid: int, name: str, device: str | None) -> None:
        pass

    def process_role(self, role: str, index: int | None) -> None:
        pass

    def snapshot(self, kind: str, key: str, payload: dict) -> None:
        self.snapshots.append((kind, key, payload))


class _Linear(Module):
    """Fallback layer when reimpl's own layers are not importable."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.weight = Parameter(torch.empty(out_features, in_features))
        self.bias = Parameter(torch.empty(out_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)


class _ReLU(Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x)


class _Sequential(Module):
    def __init__(self, *mods: Module) -> None:
        super().__init__()
        for i, m in enumerate(mods):
            self.add_module(str(i), m)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for m in self._modules.values():
            x = m(x)
        return x


def _reimpl_layers() -> tuple[type, type, type]:
    try:
        from reimpl.nn.modules.activation import ReLU
        from reimpl.nn.modules.container import Sequential
        from reimpl.nn.modules.linear import Linear
    except ImportError:
        return _Linear, _ReLU, _Sequential
    return Linear, ReLU, Sequential


def build_pair() -> tuple[torch.nn.Module, Module]:
    """The same MLP twice: torch layers and reimpl layers, equal weights."""
    torch.manual_seed(0)
    tmodel = torch.nn.Sequential(
        *[
            torch.nn.Sequential(torch.nn.Linear(WIDTH, WIDTH), torch.nn.ReLU())
            for _ in range(BLOCKS)
        ]
    )
    Linear, ReLU, Sequential = _reimpl_layers()
    rmodel = Sequential(*[Sequential(Linear(WIDTH, WIDTH), ReLU()) for _ in range(BLOCKS)])
    rmodel.load_state_dict(tmodel.state_dict())
    return tmodel, rmodel


def make_step(model: torch.nn.Module | Module) -> Callable[[], None]:
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    x = torch.randn(BATCH, WIDTH)

    def step() -> None:
        opt.zero_grad()
        model(x).sum().backward()
        opt.step()

    return step


def _time(step: Callable[[], None], n: int) -> float:
    """CPU time of this thread per step, in us: what the step itself costs, not
    how long the neighbours kept the core (intra-op threads are set to one)."""
    t0 = time.thread_time()
    for _ in range(n):
        step()
    return (time.thread_time() - t0) / n * 1e6


def measure(rounds: int = 40, n: int = 3) -> dict[str, float]:
    """Best-of-rounds us/step of torch, reimpl and traced reimpl, rounds interleaved.

    One intra-op thread: at these sizes threads buy nothing, and on a shared
    machine they make every timing hostage to the neighbours.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _measure(rounds, n)
    finally:
        torch.set_num_threads(threads)


def _measure(rounds: int, n: int) -> dict[str, float]:
    tmodel, rmodel = build_pair()
    tstep, rstep = make_step(tmodel), make_step(rmodel)
    sink = ListSink()

    def traced(backward: bool) -> Callable[[], None]:
        def step() -> None:
            module_mod.trace_backward = backward
            _trace.attach(sink)
            try:
                rstep()
            finally:
                _trace.detach()
                module_mod.trace_backward = True
                sink.records.clear()

        return step

    configs = {
        "torch": tstep,
        "reimpl": rstep,
        "traced": traced(True),
        "traced_fwd": traced(False),
    }
    for f in configs.values():  # warm up
        for _ in range(5):
            f()
    best = dict.fromkeys(configs, float("inf"))
    for _ in range(rounds):  # interleaved, so drifts hit every config alike
        for name, f in configs.items():
            best[name] = min(best[name], _time(f, n))
    sink.records.clear()
    _trace.attach(sink)
    try:
        rstep()
    finally:
        _trace.detach()
    out = dict(best)
    out["reimpl/torch"] = best["reimpl"] / best["torch"]
    out["traced/reimpl"] = best["traced"] / best["reimpl"]
    out["traced_fwd/reimpl"] = best["traced_fwd"] / best["reimpl"]
    out["records_per_step"] = float(len(sink.records))
    return out


def run() -> str:
    """Measures once and returns a markdown section."""
    m = measure()
    return "\n".join(
        [
            "### nn.Module: reimpl vs torch, traced vs untraced",
            "",
            f"{BLOCKS}-block Linear+ReLU MLP, width {WIDTH}, batch {BATCH}; one step = "
            "forward + backward + SGD step; thread CPU time, best of interleaved rounds.",
            "",
            "| measure | us/step | ratio | goal |",
            "|---|---:|---:|---:|",
            f"| torch.nn | {m['torch']:.0f} | 1.00 | |",
            f"| reimpl untraced | {m['reimpl']:.0f} | {m['reimpl/torch']:.3f} (vs torch) "
            "| <= 1.05 |",
            f"| reimpl traced (list sink) | {m['traced']:.0f} | {m['traced/reimpl']:.3f} "
            "(vs untraced) | <= 1.10 |",
            f"| reimpl traced, forward spans only | {m['traced_fwd']:.0f} | "
            f"{m['traced_fwd/reimpl']:.3f} (vs untraced) | |",
            "",
            f"Records per traced step: {m['records_per_step']:.0f}. Forward spans cost one "
            "inline record per module call; `module.backward` spans add one tensor pre-hook "
            "per module boundary (installed in forward, run in backward), which is where "
            "the rest of the traced cost goes (`module.trace_backward = False` drops them).",
            "",
        ]
    )


if __name__ == "__main__":
    print(run())
