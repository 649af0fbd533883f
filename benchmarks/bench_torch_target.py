"""What ``--target torch`` costs an unmodified torch step, next to viztracer and torch.profiler.

The step of ``benchmarks/bench_module.py`` (forward, backward, SGD step), built
from ``torch.nn`` only, on the 50-block Linear+BatchNorm1d+ReLU MLP and the
demo CNN. Configs, interleaved in one run: untraced torch; the real recorder
with the torch target attached (``tracer/targets/torch/``) without
``module.backward`` spans (forward spans and the user's hooks' spans) and
with them (the native boundary stamp, as reimpl records them); forward spans
through torch's global forward hooks instead (``attach(forward="hooks")``,
which sends every module call through ``_call_impl``'s slow path); viztracer and
torch.profiler on the same untraced step. Times are process CPU time with one
intra-op thread, best of interleaved rounds (bench_module's measure code).

Run: ``python -m benchmarks.bench_torch_target``.
"""

from __future__ import annotations

import gc
import os
import tempfile
from collections.abc import Callable

import torch

from benchmarks.bench_module import MODELS, _best_of, _Session, _time, make_step, other_tools
from reimpl import _trace
from reimpl import nn as rnn
from tracer.recording.recorder import Recorder
from tracer.targets.torch.attach import attach

LABELS = ("MLP, 50 x Linear+BatchNorm1d+ReLU", "demo CNN (samples/train_step.py)")


def measure(build: Callable, make_x: Callable, rounds: int = 30, n: int = 3) -> dict:
    """Best-of-rounds us/step of the torch step: untraced, traced (forward only and
    with backward spans), viztracer and torch.profiler."""
    torch.manual_seed(0)
    model = build(torch.nn)
    x = make_x()
    step = make_step(model, x)
    rmodel = build(rnn)  # reimpl's twin, recording inline in its own _call_impl
    rmodel.load_state_dict(model.state_dict())
    rstep = make_step(rmodel, x)
    with tempfile.TemporaryDirectory() as tmp:
        recorder = Recorder(os.path.join(tmp, "bench.tsdb"))
        recorder.start()  # the native stamp, when it can be had
        _trace.detach()  # attached only inside the traced configs
        detaches: list[Callable[[], None]] = []

        def traced(backward: bool, forward: str | None = "call") -> _Session:
            """The torch step with the torch target (``forward=None``: the reimpl
            step with the recorder alone)."""

            def start() -> None:
                _trace.backward_spans = backward
                _trace.attach(recorder)
                if forward is not None:
                    detaches.append(attach(backward_spans=backward, forward=forward))

            def stop() -> None:
                if forward is not None:
                    detaches.pop()()
                _trace.detach()
                _trace.backward_spans = True

            return _Session(step if forward is not None else rstep, start, stop)

        main = {
            "torch": lambda k: _time(step, k),
            "traced_fwd": traced(False).time,
            "traced": traced(True).time,
            "hooks_fwd": traced(False, "hooks").time,
            "reimpl": lambda k: _time(rstep, k),
            "reimpl_fwd": traced(False, None).time,
        }
        # the other tools in a second phase, as in bench_module (the profiler's garbage)
        tools = {"torch": main["torch"], **other_tools(step, tmp)}
        best = _best_of(main, rounds, n)
        gc.collect()
        others = _best_of(tools, rounds, n)
        for tool in ("viztracer", "torch.profiler"):
            best[tool] = others[tool] / others["torch"] * best["torch"]
        _trace.attach(recorder)
        recorder.stop()
    return best


def run() -> str:
    """Measures both models and returns a markdown section."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        results = {label: measure(*MODELS[label]) for label in LABELS}
    finally:
        torch.set_num_threads(threads)
    load = os.getloadavg()
    lines = [
        "### `--target torch`: an unmodified torch step, traced over untraced",
        "",
        "One step = forward + backward + SGD step of a `torch.nn` model, batch 16; process "
        "CPU time with one intra-op thread, best of 30 interleaved rounds, each timing 3 steps "
        "after one untimed step that pays the per-attach costs (load average "
        f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} on a shared 2-core machine: compare "
        "ratios within this run). torchscope = the real recorder writing a trace file with "
        "the torch target attached: forward spans and the hook machinery (goal <= 1.10), "
        "then with `module.backward` spans too (the native boundary stamp); the backward "
        "spans' own cost is the ratio of the two. viztracer and torch.profiler trace the "
        "same untraced step.",
        "",
        "| model | torch us/step | torchscope, forward spans | with backward spans | "
        "backward spans alone | forward spans via global hooks | viztracer | torch.profiler "
        "| reimpl's own forward spans |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, m in results.items():
        lines.append(
            f"| {label} | {m['torch']:.0f} | {m['traced_fwd'] / m['torch']:.2f} | "
            f"{m['traced'] / m['torch']:.2f} | {m['traced'] / m['traced_fwd']:.2f} | "
            f"{m['hooks_fwd'] / m['torch']:.2f} | "
            f"{m['viztracer'] / m['torch']:.2f} | {m['torch.profiler'] / m['torch']:.2f} | "
            f"{m['reimpl_fwd'] / m['reimpl']:.2f} |"
        )
    lines += [
        "",
        "Forward spans come from a wrapper on `Module._call_impl` (the default: one "
        "record per call, as reimpl's own `_call_impl`, and torch keeps its no-hook fast "
        "path); with the native stamp that wrapper is its C `Forward`, a method descriptor "
        "that records in one C call with no Python frame (a Python wrapper there measured "
        "1.11 on the BatchNorm MLP). Through torch's global forward hooks instead "
        '(`attach(forward="hooks")`), '
        "every module call takes `_call_impl`'s slow path (building the hook lists, a "
        "closure, two Python hook calls) on top of the record: that column. The last "
        "column is the same model built from reimpl, recorded inline by its own "
        "`_call_impl`, over untraced reimpl: the recorder's own cost for these spans.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(run())
