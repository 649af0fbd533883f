"""The training-loop and hook programs of samples/bugs/ make `record --check` name
exactly their bug: samples/bugs/missing_zero_grad.py -> the rule missing-zero-grad.
(The BatchNorm, parameter and worker-seed programs, with their fixed variants:
tests/tracer/analyze/check/test_bug_samples.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest
from torchscope_cli import torchscope

import tracer

FOLDER = Path(__file__).parents[2] / "samples" / "bugs"
BUGS = [
    FOLDER / f"{name}.py"
    for name in ("scheduler_before_optimizer", "missing_zero_grad", "deprecated_backward_hook")
]


@pytest.mark.slow
@pytest.mark.parametrize("program", BUGS, ids=[p.stem for p in BUGS])
def test_each_bug_program_gives_exactly_its_finding(tmp_path, program):
    out = str(tmp_path / "bug.tsdb")
    result = torchscope("record", "--check", "-o", out, str(program))
    rule = program.stem.replace("_", "-")
    assert f"[{rule}]" in result.stderr, result.stderr
    assert {f["detector"] for f in tracer.load(out).findings} == {rule}
