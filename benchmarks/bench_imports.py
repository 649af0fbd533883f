"""What recording ``import torch`` costs: the import hook, and --deep (viztracer)."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from statistics import median

import tracer
from tracer.recording.imports import HOOK_PATH, run_imports

RUNS = 5

PLAIN = """
import time
t = time.perf_counter()
import torch
print(time.perf_counter() - t)
"""

HOOKED = """
import sys, time
ns = {}
exec(compile(open(sys.argv[1]).read(), sys.argv[1], "exec"), ns)
sink = ns["ListSink"](); hook = ns["ImportHook"](sink); hook.install()
t = time.perf_counter()
import torch
print(time.perf_counter() - t)
"""

VIZ = """
import time
from viztracer import VizTracer
viz = VizTracer(verbose=0, max_stack_depth=40, tracer_entries=2_000_000, ignore_c_function=True)
viz.start()
t = time.perf_counter()
import torch
elapsed = time.perf_counter() - t
viz.stop()
print(elapsed)
"""


def _seconds(code: str, *args: str) -> float:
    out = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, check=True
    )
    return float(out.stdout.strip().splitlines()[-1])


def run() -> str:
    """Alternates plain, hooked and viztracer imports; medians of 5 each."""
    plain, hooked, viz = [], [], []
    for _ in range(RUNS):
        plain.append(_seconds(PLAIN))
        hooked.append(_seconds(HOOKED, HOOK_PATH))
        viz.append(_seconds(VIZ))
    with tempfile.TemporaryDirectory() as tmp:
        run_imports("torch", f"{tmp}/deep.tsdb", deep=True)
        trace = tracer.load(f"{tmp}/deep.tsdb")
        calls = int((trace.kind == trace.code("py.call")).sum())
        modules = int((trace.kind == trace.code("import")).sum())
    p, h, v = median(plain), median(hooked), median(viz)
    return "\n".join(
        [
            "### Import tracing (`torchscope imports torch`)",
            "",
            f"Median of {RUNS} fresh interpreters each, alternated; time of the `import torch` "
            "statement alone (writing the trace afterwards is not counted).",
            "",
            "| run | seconds | ratio to plain | goal |",
            "| --- | ---: | ---: | ---: |",
            f"| plain `import torch` | {p:.3f} | 1.00 | |",
            f"| with torchscope's import hook | {h:.3f} | {h / p:.2f} | <= 1.10 |",
            f"| under viztracer (what `--deep` adds), depth 40, no C calls | {v:.3f} | "
            f"{v / p:.2f} | |",
            "",
            f"`torchscope imports torch --deep` recorded {modules:,} import spans and "
            f"{calls:,} Python calls in one trace.",
        ]
    )


if __name__ == "__main__":
    print(run())
