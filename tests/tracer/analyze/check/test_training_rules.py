"""scheduler-before-optimizer and missing-zero-grad, on real reimpl training loops."""

from __future__ import annotations

import warnings

import pytest
import torch

import tracer
from reimpl import nn
from reimpl.optim import SGD
from reimpl.optim.lr_scheduler import StepLR
from tracer.analyze.check import run_rules


def _loop(path: str, order: list[str], steps: int = 3) -> None:
    """A tiny training loop doing, each iteration, the calls named in ``order``."""
    torch.manual_seed(0)
    with tracer.record(path), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's own scheduler-order warning
        model = nn.Linear(3, 1)
        opt = SGD(model.parameters(), lr=0.1)
        sched = StepLR(opt, step_size=1)  # its constructor steps once: recorded, not a call
        calls = {
            "zero": opt.zero_grad,
            "model.zero": model.zero_grad,
            "backward": lambda: model(torch.randn(4, 3)).pow(2).mean().backward(),
            "step": opt.step,
            "sched": sched.step,
        }
        for _ in range(steps):
            for name in order:
                calls[name]()


@pytest.mark.parametrize(
    "order, rules",
    [
        (["zero", "backward", "step", "sched"], set()),
        (["model.zero", "backward", "step", "sched"], set()),
        (["zero", "backward", "backward", "step", "sched"], set()),  # accumulation in a step
        (["zero", "backward", "sched", "step"], {"scheduler-before-optimizer"}),
        (["backward", "step", "sched"], {"missing-zero-grad"}),
        (["backward", "sched", "step"], {"missing-zero-grad", "scheduler-before-optimizer"}),
    ],
)
def test_training_loop_rules(tmp_path, order, rules):
    path = str(tmp_path / "loop.tsdb")
    _loop(path, order)
    t = tracer.load(path)
    found = run_rules(t, ["scheduler-before-optimizer", "missing-zero-grad"])
    assert {f.rule for f in found} == rules
    for f in found:
        assert f.severity == "warning"
        if f.rule == "missing-zero-grad":
            a, b = f.evidence
            assert t.kind_of(a) == t.kind_of(b) == "optim.step"
            assert f.details["steps_without_zero_grad"] == 2  # 3 steps, 2 gaps
        else:
            assert [t.kind_of(r) for r in f.evidence] == ["sched.step", "optim.step"]
            assert f.details["early_calls"] == 1


def test_the_schedulers_own_first_step_is_not_a_call(tmp_path):
    path = str(tmp_path / "ctor.tsdb")
    _loop(path, ["zero", "backward", "step"], steps=1)
    t = tracer.load(path)
    assert t.code("sched.step") >= 0  # the constructor's step was recorded
    assert run_rules(t, ["scheduler-before-optimizer"]) == []
