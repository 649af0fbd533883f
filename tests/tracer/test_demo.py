"""`torchscope demo` without a terminal: summary on stdout, graphs and Chrome JSON on disk."""

from __future__ import annotations

import json
import subprocess
import sys

import tracer


def test_demo_without_terminal_prints_summary_and_writes_files(tmp_path):
    out = tmp_path / "demo"
    result = subprocess.run(
        [sys.executable, "-m", "tracer.cli", "demo", "--out", str(out), "--steps", "2"],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr
    assert "module.forward" in result.stdout and "hottest call paths" in result.stdout
    for kind in ("calls", "modules", "optim"):
        svg = (out / f"train_step-{kind}.svg").read_text()
        assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    events = json.loads((out / "train_step.json").read_text())["traceEvents"]
    trace = tracer.load(str(out / "train_step.tsdb"))
    assert sum(e["ph"] in "Xi" for e in events) == trace.n
    steps = [r for r in trace.roots() if trace.kind_of(int(r)) == "step"]
    assert len(steps) == 2 + 2  # two training steps, then the two SWA steps
