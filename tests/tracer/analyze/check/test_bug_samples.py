"""Each program of samples/bugs/ produces exactly its finding under
``torchscope record --check``, and its fixed variant none."""

from __future__ import annotations

import os

import pytest
from torchscope_cli import torchscope

import tracer

BUGS = os.path.join(os.path.dirname(__file__), "..", "..", "..", "..", "samples", "bugs")


@pytest.mark.slow
@pytest.mark.parametrize(
    "sample, args, rule, severity, clean",
    [
        ("bn_train_in_eval.py", [], "bn-train-in-eval", "warning", ["--fixed"]),
        ("bn_tiny_batch.py", [], "bn-tiny-batch", "warning", ["--batch", "32"]),
        ("bn_tiny_batch.py", ["--batch", "1"], "bn-tiny-batch", "error", ["--batch", "32"]),
        ("param_not_optimized.py", [], "param-not-optimized", "warning", ["--fixed"]),
        ("grad_never_computed.py", [], "grad-never-computed", "warning", ["--fixed"]),
        pytest.param(
            "worker_seed_duplicate.py",
            [],
            "worker-seed-duplicate",
            "warning",
            ["--fixed"],
            marks=pytest.mark.multiprocess,
        ),
    ],
)
def test_each_bug_sample_gives_exactly_its_finding(tmp_path, sample, args, rule, severity, clean):
    out = str(tmp_path / "bug.tsdb")
    torchscope("record", "--check", "-o", out, f"{BUGS}/{sample}", *args)
    assert [(f["detector"], f["severity"]) for f in tracer.load(out).findings] == [(rule, severity)]
    fixed = torchscope("record", "--check", "-o", out, f"{BUGS}/{sample}", *clean)
    assert fixed.returncode == 0, fixed.stderr
    assert "no findings" in fixed.stderr and tracer.load(out).findings == []
