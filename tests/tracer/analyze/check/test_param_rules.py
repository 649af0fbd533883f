"""param-not-optimized and grad-never-computed, on real reimpl training loops."""

from __future__ import annotations

import pytest
import torch

import tracer
from reimpl import nn
from reimpl.optim import SGD, Adam
from samples.bugs import grad_never_computed, param_not_optimized
from tracer.analyze.check import run_rules

PARAM_RULES = ["param-not-optimized", "grad-never-computed"]


def _record(path: str, fn, *args, **kwargs) -> tracer.Trace:
    with tracer.record(path):
        fn(*args, **kwargs)
    return tracer.load(path)


def test_a_forgotten_param_group_is_named_by_module_path(tmp_path):
    t = _record(str(tmp_path / "groups.tsdb"), param_not_optimized.run)
    (finding,) = run_rules(t)
    assert finding.rule == "param-not-optimized" and finding.severity == "warning"
    assert finding.details == {
        "model": "Net",
        "parameters": ["neck.0.weight", "neck.0.bias"],
        "modules": ["neck.0"],
    }
    forward, step = finding.evidence
    assert t.kind_of(forward) == "module.forward" and t.name_of(forward) == "neck.0"
    assert t.kind_of(step) == "optim.step" and "param_names" in t.attrs(step)


def test_an_unused_layer_is_named_with_its_steps(tmp_path):
    t = _record(str(tmp_path / "unused.tsdb"), grad_never_computed.run)
    (finding,) = run_rules(t)
    assert finding.rule == "grad-never-computed" and finding.severity == "warning"
    assert finding.details["parameters"] == ["hidden.weight", "hidden.bias"]
    assert finding.details["optimizer"] == "SGD" and finding.details["steps"] == 3
    forward, first, last = finding.evidence
    assert t.kind_of(forward) == "module.forward" and t.name_of(forward) == "hidden"
    assert t.kind_of(first) == t.kind_of(last) == "optim.step" and first < last


@pytest.mark.parametrize("sample", [param_not_optimized, grad_never_computed])
def test_the_fixed_samples_are_clean(tmp_path, sample):
    assert run_rules(_record(str(tmp_path / "fixed.tsdb"), sample.run, fixed=True)) == []


def _loop(model: nn.Module, opt, steps: int = 2, forward=None) -> None:
    for _ in range(steps):
        opt.zero_grad()
        (forward or model)(torch.randn(8, 4)).sum().backward()
        opt.step()


def test_frozen_params_and_tied_weights_are_clean(tmp_path):
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 1))
    model[1].weight = model[0].weight  # tied: one tensor, two names
    model[2].requires_grad_(False)  # frozen on purpose, and still handed to the optimizer
    t = _record(str(tmp_path / "ok.tsdb"), _loop, model, SGD(model.parameters(), lr=0.1))
    assert run_rules(t, PARAM_RULES) == []


def test_a_gradient_at_any_step_counts(tmp_path):
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 1))
    opt = Adam(model.parameters())
    calls = iter(range(10))

    def sometimes_skips(x):  # the first layer takes part in the second step only
        return model[1](model[0](x) if next(calls) == 1 else x)

    t = _record(str(tmp_path / "branch.tsdb"), _loop, model, opt, 3, sometimes_skips)
    assert run_rules(t, PARAM_RULES) == []


def test_each_optimizer_is_judged_on_its_own_steps(tmp_path):
    """Two optimizers of one class, each with its own model: a GAN's loop."""
    g, d = nn.Linear(4, 4), grad_never_computed.Net(fixed=False)
    opt_g, opt_d = SGD(g.parameters(), lr=0.1), SGD(d.parameters(), lr=0.1)

    def run() -> None:
        _loop(g, opt_g)
        _loop(d, opt_d)

    t = _record(str(tmp_path / "two.tsdb"), run)
    (finding,) = run_rules(t, PARAM_RULES)
    assert finding.rule == "grad-never-computed"
    assert finding.details["parameters"] == ["hidden.weight", "hidden.bias"]
    steps = [r for r in finding.evidence if t.kind_of(r) == "optim.step"]
    assert {t.attrs(r)["id"] for r in steps} == {id(opt_d)}


def test_a_param_no_traced_model_holds_is_named_by_its_index(tmp_path):
    model = nn.Sequential(nn.Linear(4, 1), nn.Linear(1, 1))
    opt = SGD(model.parameters(), lr=0.1)
    t = _record(str(tmp_path / "part.tsdb"), _loop, model, opt, forward=lambda x: model[0](x))
    (finding,) = run_rules(t, PARAM_RULES)  # model[1] never ran: no traced model holds it
    assert finding.details["parameters"] == ["param[2]", "param[3]"]


def test_a_model_no_optimizer_touches_is_left_out(tmp_path):
    student, teacher = nn.Linear(4, 1), nn.Linear(4, 1)  # the teacher keeps requires_grad

    def run() -> None:
        with torch.no_grad():
            teacher(torch.randn(8, 4))
        _loop(student, SGD(student.parameters(), lr=0.1))

    assert run_rules(_record(str(tmp_path / "teacher.tsdb"), run), PARAM_RULES) == []


def test_untraced_models_and_steps_without_evidence_are_clean(tmp_path):
    model = nn.Linear(4, 1)
    opt = SGD(model.parameters(), lr=0.1)
    opt.zero_grad()
    model(torch.randn(8, 4)).sum().backward()
    path = str(tmp_path / "only-step.tsdb")
    with tracer.record(path):
        opt.step()  # no traced forward: the step cannot place its params
    t = tracer.load(path)
    (step,) = [r for r in range(t.n) if t.kind_of(r) == "optim.step"]
    assert t.attrs(step)["param_names"] == []
    assert run_rules(t, PARAM_RULES) == []


def test_every_recording_gets_the_names_once(tmp_path):
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 1))
    opt = SGD(model.parameters(), lr=0.1)
    for run in range(2):  # the same optimizer, two recordings
        t = _record(str(tmp_path / f"r{run}.tsdb"), _loop, model, opt, 3)
        steps = [r for r in range(t.n) if t.kind_of(r) == "optim.step"]
        named = ["param_names" in t.attrs(r) for r in steps]
        assert named == [True, False, False], run
    opt.add_param_group({"params": [torch.nn.Parameter(torch.zeros(1))]})
    t = _record(str(tmp_path / "grown.tsdb"), _loop, model, opt, 1)
    (step,) = [r for r in range(t.n) if t.kind_of(r) == "optim.step"]
    assert len(t.attrs(step)["param_names"]) == 4  # again, for the new group's sake
