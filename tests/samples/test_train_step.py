"""The default demo equals its torch twin, number for number, and traces fully."""

from __future__ import annotations

import torch

import tracer
from samples import train_step


def test_reimpl_demo_matches_torch_twin():
    ours = train_step.main(steps=4, swa_steps=2, backend="reimpl")
    theirs = train_step.main(steps=4, swa_steps=2, backend="torch")
    torch.testing.assert_close(ours["losses"], theirs["losses"], rtol=1e-5, atol=1e-6)
    for key in ("model", "swa_model"):
        a, b = ours[key].state_dict(), theirs[key].state_dict()
        assert list(a) == list(b)
        for name in a:
            torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6, msg=name)


def test_demo_trace_holds_every_part(tmp_path):
    path = str(tmp_path / "demo.tsdb")
    with tracer.record(path):
        train_step.main(steps=2, swa_steps=1)
    t = tracer.load(path)
    kinds = {t.kind_of(r) for r in range(t.n)}
    assert {
        "step",
        "module.forward",
        "module.backward",
        "optim.step",
        "optim.group",
        "optim.update",
        "optim.zero_grad",
        "sched.step",
        "swa.update",
        "swa.update_bn",
    } <= kinds
    steps = [r for r in t.roots() if t.kind_of(int(r)) == "step"]
    assert [t.attrs(int(r))["index"] for r in steps] == [0, 1, 2]
    names = {t.name_of(r) for r in range(t.n) if t.kind_of(r) == "module.forward"}
    assert {"features.0", "features.1", "classifier.1"} <= names
