"""What reimpl.nn.Module costs: against torch.nn.Module, and traced against untraced.

One training step (forward, backward, SGD step) of three models, each built
once from torch's layers and once from reimpl's with the same weights:

* a 50-block Linear+BatchNorm1d+ReLU MLP (width 64, batch 16): many small
  modules, the worst case for per-module overhead;
* the same MLP without BatchNorm;
* the demo CNN of ``samples/train_step.py`` (batch 16, 3x16x16 images).

"Traced" is the real recorder (``tracer.Recorder`` writing a trace file,
its writer thread included), with and without ``module.backward`` spans, and
with those spans from the native boundary stamp (``reimpl/_native``, the
default) or from the Python hooks (its fallback). The same run measures the
floor the Python hooks sit on (a tensor hook per module boundary that only
appends a timestamp to a list), what one native stamp costs (installing it in
forward, running it in backward), and viztracer and torch.profiler on the same
reimpl step. Times are process CPU time with one intra-op thread, the best of
interleaved rounds: interference only ever adds time.

Run: ``python -m benchmarks.bench_module``.
"""

from __future__ import annotations

import functools
import gc
import os
import tempfile
import time
from collections.abc import Callable
from unittest import mock

import torch
from torch.profiler import ProfilerActivity
from viztracer import VizTracer

from reimpl import _native, _trace
from reimpl import nn as rnn
from reimpl.nn.modules import module as module_mod
from samples.train_step import small_cnn
from tracer.recording.recorder import Recorder

BLOCKS = 50
WIDTH = 64
BATCH = 16


def mlp(nn, batchnorm: bool):
    """50 blocks of Linear (+ BatchNorm1d) + ReLU."""
    layers = []
    for _ in range(BLOCKS):
        layers.append(nn.Linear(WIDTH, WIDTH))
        if batchnorm:
            layers.append(nn.BatchNorm1d(WIDTH))
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


MODELS: dict[str, tuple[Callable, Callable[[], torch.Tensor]]] = {
    "MLP, 50 x Linear+BatchNorm1d+ReLU": (
        lambda nn: mlp(nn, True),
        lambda: torch.randn(BATCH, WIDTH),
    ),
    "MLP, 50 x Linear+ReLU": (lambda nn: mlp(nn, False), lambda: torch.randn(BATCH, WIDTH)),
    "demo CNN (samples/train_step.py)": (small_cnn, lambda: torch.randn(BATCH, 3, 16, 16)),
}


def make_step(model, x: torch.Tensor) -> Callable[[], None]:
    """forward + backward + SGD step."""
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)

    def step() -> None:
        opt.zero_grad()
        model(x).sum().backward()
        opt.step()

    return step


def _stamp_hook(stamps: list, index: int, grad: torch.Tensor) -> None:
    stamps.append((index, time.perf_counter_ns()))


def make_hook_floor_step(
    model, x: torch.Tensor, stamps: list[tuple[int, int]] | None = None
) -> Callable[[], None] | None:
    """The step with the least any Python recorder of per-module backward times must do.

    A tensor pre-hook on every layer's output (installed by ``module.py``'s own
    ``_install_boundary_hook``) that appends (layer index, timestamp) to a
    list: no span is built or recorded. Only for a flat Sequential, whose
    boundaries are exactly its children's outputs. ``stamps`` receives the
    last step's (layer index, ns) pairs.
    """
    layers = list(model.children())
    if any(next(layer.children(), None) is not None for layer in layers):
        return None
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    stamps = [] if stamps is None else stamps

    def step() -> None:
        stamps.clear()
        opt.zero_grad()
        y = x
        for index, layer in enumerate(layers):
            y = layer(y)
            hook = functools.partial(_stamp_hook, stamps, index)
            module_mod._install_boundary_hook(y, y._backward_hooks, hook)
        y.sum().backward()
        opt.step()

    return step


def _time(step: Callable[[], None], n: int) -> float:
    """Process CPU time per step in us (the recorder's writer thread counts)."""
    t0 = time.process_time()
    for _ in range(n):
        step()
    return (time.process_time() - t0) / n * 1e6


def _best_of(configs: dict[str, Callable[[int], float]], rounds: int, n: int) -> dict:
    """Best us/step of each config over interleaved rounds, so drifts hit all alike."""
    for f in configs.values():  # warm up
        f(3)
    best = dict.fromkeys(configs, float("inf"))
    for _ in range(rounds):
        for name, f in configs.items():
            best[name] = min(best[name], f(n))
    return best


class _Session:
    """Runs a config's steps between a tool's start and stop; only the steps are timed.

    The first step after a start is not timed either: a recording pays once per
    attach what a run pays once (paths looked up again, a BatchNorm's state
    recorded afresh for a new sink, the torch target wrapping a model's hooks),
    and the rounds attach again every ``n`` steps, so timing that step would
    charge a per-run cost to every third step.
    """

    def __init__(self, step: Callable[[], None], start: Callable, stop: Callable) -> None:
        self.step, self.start, self.stop = step, start, stop

    def time(self, n: int) -> float:
        self.start()
        try:
            self.step()
            return _time(self.step, n)
        finally:
            self.stop()


def other_tools(step: Callable[[], None], tmp: str) -> dict[str, Callable[[int], float]]:
    """viztracer and torch.profiler around ``step``, as timed configs."""
    viz = VizTracer(tracer_entries=2_000_000, verbose=0, output_file=os.path.join(tmp, "v.json"))
    profilers: list = []

    def profiler_start() -> None:
        profilers.append(torch.profiler.profile(activities=[ProfilerActivity.CPU]))
        profilers[-1].__enter__()

    def profiler_stop() -> None:
        profilers.pop().__exit__(None, None, None)  # its post-processing is not timed

    return {
        "viztracer": _Session(step, viz.start, viz.stop).time,
        "torch.profiler": _Session(step, profiler_start, profiler_stop).time,
    }


def measure(
    build: Callable, make_x: Callable, rounds: int = 40, n: int = 3, python_hooks: bool = False
) -> dict:
    """Best-of-rounds us/step: torch, reimpl, traced (full and forward-only), the hook
    floor, and viztracer and torch.profiler on the same reimpl step; ``python_hooks``:
    also traced with the Python hooks (``traced_py``) when the native stamp is on."""
    torch.manual_seed(0)
    tmodel = build(torch.nn)
    rmodel = build(rnn)
    rmodel.load_state_dict(tmodel.state_dict())
    x = make_x()
    tstep, rstep = make_step(tmodel, x), make_step(rmodel, x)
    floor = make_hook_floor_step(rmodel, x)
    with tempfile.TemporaryDirectory() as tmp:
        recorder = Recorder(os.path.join(tmp, "bench.tsdb"))
        recorder.start()  # the native stamp, when it can be had
        _trace.detach()  # attached only inside the traced configs
        py_recorder = Recorder(os.path.join(tmp, "bench-py.tsdb"))
        with mock.patch.object(_trace, "native_stamps", lambda: None):
            py_recorder.start()  # the Python hooks, the fallback
        _trace.detach()

        def traced(backward: bool, rec: Recorder = recorder) -> _Session:
            def start() -> None:
                _trace.backward_spans = backward
                _trace.attach(rec)

            def stop() -> None:
                _trace.detach()
                _trace.backward_spans = True

            return _Session(rstep, start, stop)

        main: dict[str, Callable[[int], float]] = {
            "torch": lambda k: _time(tstep, k),
            "reimpl": lambda k: _time(rstep, k),
            "traced": traced(True).time,
            "traced_fwd": traced(False).time,
        }
        if python_hooks and recorder.stamps is not None:
            main["traced_py"] = traced(True, py_recorder).time
        if floor is not None:
            main["hook_floor"] = lambda k: _time(floor, k)
        # Other tools in a second phase: torch.profiler leaves heaps of Python
        # objects behind, whose collection would land in the other configs' rounds.
        tools = {"reimpl": main["reimpl"], **other_tools(rstep, tmp)}
        best = _best_of(main, rounds, n)
        gc.collect()
        others = _best_of(tools, rounds, n)
        best["viztracer"] = others["viztracer"] / others["reimpl"] * best["reimpl"]
        best["torch.profiler"] = others["torch.profiler"] / others["reimpl"] * best["reimpl"]
        _trace.attach(py_recorder)
        py_recorder.stop()
        _trace.attach(recorder)
        recorder.stop()
    return best


def _chain(n: int, link: Callable | None) -> tuple[torch.Tensor, float]:
    """n multiplications, each output linked to its input as a module's would be;
    the forward's thread CPU time in ns per multiplication."""
    entry = ("layer", (("cls", "Layer"), ("path", "layer")), "Layer")
    y = torch.ones(1, requires_grad=True) * 1.0
    t0 = time.thread_time_ns()
    if link is None:
        for _ in range(n):
            y = y * 1.0
    else:
        for _ in range(n):
            z = y * 1.0
            link(z, (y,), entry)
            y = z
    return y, (time.thread_time_ns() - t0) / n


class _NullSink:
    """A sink that drops records: what the Python hook costs before any recording."""

    next_id = staticmethod(iter(range(1, 1 << 62)).__next__)

    def append(self, record: tuple) -> None:
        pass

    def process_role(self, role: str, index: int | None) -> None:
        pass

    def thread_info(self, tid: int, name: str, device: str | None) -> None:
        pass


def boundary_costs(n: int = 5000, rounds: int = 20) -> dict[str, float]:
    """ns per boundary: installing the stamp in forward and running it in backward,
    native and Python (best of rounds, over a chain of n multiplications)."""
    stamps = _native.load()
    costs: dict[str, float] = {}

    def backward_ns(link: Callable | None) -> tuple[float, float]:
        y, install = _chain(n, link)
        t0 = time.thread_time_ns()  # autograd runs a CPU backward on this thread
        y.backward()
        return install, (time.thread_time_ns() - t0) / n

    paths: dict[str, Callable | None] = {"bare": None, "python": module_mod._link_backward_py}
    if stamps is not None:
        paths["native"] = stamps.link
    best = {k: (float("inf"), float("inf")) for k in paths}
    _trace.attach(_NullSink())  # type: ignore[arg-type]  # the Python hook records only then
    if stamps is not None:
        stamps.enable(True)
    try:
        for _ in range(rounds):
            for name, link in paths.items():
                install, run = backward_ns(link)
                best[name] = (min(best[name][0], install), min(best[name][1], run))
            if stamps is not None:
                stamps.take([], final=True)
    finally:
        _trace.detach()
        if stamps is not None:
            stamps.reset()
    for name in paths:
        if name != "bare":
            costs[f"{name}_install"] = best[name][0] - best["bare"][0]
            costs[f"{name}_backward"] = best[name][1] - best["bare"][1]
    return costs


def run() -> str:
    """Measures every model and returns a markdown section."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        results = {label: measure(*spec, python_hooks=True) for label, spec in MODELS.items()}
        costs = boundary_costs()
    finally:
        torch.set_num_threads(threads)
    load = os.getloadavg()
    native = "traced_py" in next(iter(results.values()))
    lines = [
        "### nn.Module: reimpl vs torch, traced vs untraced",
        "",
        "One step = forward + backward + SGD step, batch 16; process CPU time with one "
        "intra-op thread, best of 40 interleaved rounds, each timing 3 steps "
        "after one untimed step that pays the per-attach costs (load average "
        f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} on a shared 2-core machine: compare "
        "ratios within this run). Traced = the real recorder writing a trace file, its "
        "writer thread included; its `module.backward` spans come from the native boundary "
        "stamp (`reimpl/_native`, a C++ autograd pre-hook"
        + ("" if native else "; not available in this run, so the Python hooks")
        + "); Python hooks = the same recorder on its fallback path. Floor = the untraced "
        "step plus, on every layer's output, a Python tensor pre-hook that appends "
        "(layer, timestamp) to a list (flat MLPs only): the least any Python recorder of "
        "per-module backward times must do.",
        "",
        "| model | torch us/step | reimpl / torch (goal <= 1.05) | traced / untraced "
        "(goal <= 1.10) | with Python hooks | without `module.backward` | floor (Python) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for label, m in results.items():
        floor = f"{m['hook_floor'] / m['reimpl']:.2f}" if "hook_floor" in m else "-"
        py = f"{m['traced_py'] / m['reimpl']:.2f}" if "traced_py" in m else "-"
        lines.append(
            f"| {label} | {m['torch']:.0f} | {m['reimpl'] / m['torch']:.2f} | "
            f"{m['traced'] / m['reimpl']:.2f} | {py} | {m['traced_fwd'] / m['reimpl']:.2f} "
            f"| {floor} |"
        )
    lines += [
        "",
        "The same reimpl step under other tools, same run (over the untraced reimpl step). "
        "viztracer records every Python call but nothing inside autograd's backward; "
        "torch.profiler records every operator (its post-processing after the steps is not "
        "timed).",
        "",
        "| model | torchscope | viztracer | torch.profiler |",
        "|---|---:|---:|---:|",
    ]
    for label, m in results.items():
        lines.append(
            f"| {label} | {m['traced'] / m['reimpl']:.2f} | {m['viztracer'] / m['reimpl']:.2f} "
            f"| {m['torch.profiler'] / m['reimpl']:.2f} |"
        )
    lines += [
        "",
        "One module boundary, in ns of thread CPU time (a chain of 5,000 multiplications, "
        "each output tied to its input as a module call's; best of 20): installing the "
        "stamp in forward, and running it in backward.",
        "",
        "| boundary hook | install (forward) | run (backward) |",
        "|---|---:|---:|",
    ]
    for name, label in (("native", "native stamp (C++)"), ("python", "Python hook")):
        if f"{name}_install" in costs:
            lines.append(
                f"| {label} | {costs[f'{name}_install']:.0f} | {costs[f'{name}_backward']:.0f} |"
            )
    lines += [
        "",
        "A forward span is one record per module call, made in one C call by the native "
        "stamp's `Forward` (path, id, two clock reads, the record, the backward link; "
        "`_record_forward_py` in Python, the fallback, cost 1.5-3 us a module call here, "
        "0.9 us in C on the Linear+ReLU MLP's forward). A `module.backward` span "
        "needs a hook per module boundary, installed in forward and called by autograd in "
        "backward: 100-150 per step for the MLPs. The native stamp times the boundary into "
        "a per-thread buffer without the GIL, and the recorder turns the buffers into the "
        "same records at each flush; the Python hooks, the fallback, cost 3-5 us a "
        "boundary. Module span records carry their attributes as shared tuples, so "
        "Python's cyclic GC stops tracking them (with dicts there, 600 traced steps of the "
        "BatchNorm MLP set off 2 full collections, 300 ms). "
        "`torchscope record --no-backward-spans` (or `reimpl._trace.backward_spans = False`) "
        "drops the backward spans.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(run())
