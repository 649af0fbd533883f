"""Every program in samples/bugs/ makes `record --check` name exactly its bug:
samples/bugs/missing_zero_grad.py -> the rule missing-zero-grad."""

from __future__ import annotations

from pathlib import Path

import pytest
from torchscope_cli import torchscope

import tracer

BUGS = sorted((Path(__file__).parents[2] / "samples" / "bugs").glob("[a-z]*.py"))


@pytest.mark.slow
@pytest.mark.parametrize("program", BUGS, ids=[p.stem for p in BUGS])
def test_each_bug_program_gives_exactly_its_finding(tmp_path, program):
    out = str(tmp_path / "bug.tsdb")
    result = torchscope("record", "--check", "-o", out, str(program))
    rule = program.stem.replace("_", "-")
    assert f"[{rule}]" in result.stderr, result.stderr
    assert {f["detector"] for f in tracer.load(out).findings} == {rule}
