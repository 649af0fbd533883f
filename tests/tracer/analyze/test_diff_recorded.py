"""``torchscope diff`` on real recordings of the default sample and a changed twin."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import tracer
from reimpl import _trace
from samples import train_step
from tests.torchscope_cli import torchscope
from tracer.analyze.diff import diff
from tracer.analyze.diff_report import report

STEPS = 2
SAMPLES = str(Path(__file__).resolve().parents[3] / "samples")


def training_loop(changed: bool, steps: int = STEPS) -> None:
    """The default sample's training loop (its first phase); ``changed``: with two
    deliberate changes, one more forward hook (on ``features.0``) and the
    scheduler stepped twice per step."""
    ns = train_step.backend_namespace("reimpl")
    torch.manual_seed(0)
    model = train_step.small_cnn(ns.nn)
    if changed:
        model.features[0].register_forward_hook(lambda module, args, output: None)
    loss_fn = ns.nn.CrossEntropyLoss()
    optimizer = ns.optim.SGD(model.named_parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    scheduler = ns.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
    batches = train_step.synthetic_batches(ns.data, steps, num_workers=0)  # no workers: faster
    for index, (images, labels) in enumerate(batches):
        with _trace.step(index):
            optimizer.zero_grad()
            loss = loss_fn(model(images), labels)
            loss.backward()
            optimizer.step()
            scheduler.step()
            if changed:
                scheduler.step()


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    """The sample recorded twice; its training loop, and its changed twin."""
    out = {}
    for name, program in (
        ("a", lambda: train_step.main(steps=STEPS, swa_steps=1)),
        ("b", lambda: train_step.main(steps=STEPS, swa_steps=1)),
        ("loop", lambda: training_loop(changed=False)),
        ("changed", lambda: training_loop(changed=True)),
    ):
        path = str(tmp_path_factory.mktemp("diff") / f"{name}.tsdb")
        with tracer.record(path):
            program()
        out[name] = path
    return out


@pytest.fixture(scope="module")
def torch_twin(tmp_path_factory):
    """The default sample's torch twin, recorded under the torch target."""
    path = str(tmp_path_factory.mktemp("diff") / "torch.tsdb")
    with tracer.record(path, target="torch"):
        train_step.main(steps=STEPS, swa_steps=1, backend="torch")
    return path


@pytest.mark.slow
@pytest.mark.multiprocess  # the DataLoader's worker processes
def test_the_sample_recorded_twice_has_no_structural_difference(recordings):
    data = report(diff(tracer.load(recordings["a"]), tracer.load(recordings["b"])))
    assert not data["structural"], data["changes"]
    lanes = {lane["lane"]: lane for lane in data["lanes"]}
    assert lanes["main / MainThread"]["a_steps"] == STEPS + 1  # and one SWA step
    assert {"worker 0 / worker 0", "worker 1 / worker 1"} <= set(lanes)
    # every kind recorded in A is aligned in B: module, optimizer, scheduler, DataLoader
    kinds = {k["kind"] for k in data["kinds"] if k["a_count"] == k["b_count"] > 0}
    assert {"module.forward", "module.backward", "optim.step", "sched.step", "data.next",
            "data.fetch"} <= kinds  # fmt: skip
    result = torchscope("diff", recordings["a"], recordings["b"])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "structure: the same" in result.stdout


@pytest.mark.slow
@pytest.mark.multiprocess
def test_an_extra_hook_and_a_scheduler_stepped_twice_are_reported(recordings):
    data = report(diff(tracer.load(recordings["loop"]), tracer.load(recordings["changed"])))
    changes = [(c["change"], c["step"]["ordinal"], c["path"]) for c in data["changes"]]
    forward = ["step step", "module.forward Sequential", "module.forward features",
               "module.forward features.0"]  # fmt: skip
    hook = [c for c in changes if c[2][-1].startswith("hook.forward")]
    assert [(c[0], c[1], c[2][:-1]) for c in hook] == [("extra", k, forward) for k in range(STEPS)]
    sched = [c for c in changes if c[2][-1].startswith("sched.step")]
    assert sched == [("extra", k, ["step step", "sched.step StepLR.step #2"]) for k in range(STEPS)]
    assert len(changes) == 2 * STEPS and data["counts"]["missing"] == 0
    result = torchscope("diff", recordings["loop"], recordings["changed"])
    assert result.returncode == 1
    assert "+ extra     sched.step StepLR.step #2" in result.stdout


@pytest.mark.slow
@pytest.mark.multiprocess
def test_the_sample_on_reimpl_and_its_torch_twin_tell_the_same_story(recordings, torch_twin):
    """Issue 15's key check: the same tree at the module, hook, optimizer,
    scheduler and DataLoader level (the kinds both targets record)."""
    a, b = tracer.load(recordings["a"]), tracer.load(torch_twin)
    assert b.meta["target"] == "torch"
    data = report(diff(a, b, ["public"]))
    assert not data["structural"], data["changes"]
    kinds = {k["kind"]: (k["a_count"], k["b_count"]) for k in data["kinds"]}
    for kind in ("module.forward", "module.backward", "optim.step", "optim.zero_grad",
                 "sched.step", "data.next", "data.fetch", "data.collate"):  # fmt: skip
        assert kinds[kind][0] == kinds[kind][1] > 0, kind
    assert data["counts"]["aligned"] == data["a"]["aligned_spans"] == data["b"]["aligned_spans"]
    result = torchscope("diff", recordings["a"], torch_twin, "--kinds", "public")
    assert result.returncode == 0, result.stdout + result.stderr
    # comparing every kind, what differs is named, and the note says how to
    # compare what both targets see
    strict = diff(a, b)
    assert not strict.structural or any("--kinds public" in n for n in strict.notes)


@pytest.mark.slow
def test_dataparallel_on_reimpl_and_its_torch_twin_on_sim_devices_align(tmp_path):
    """Replica lanes (``replica k [sim:k]``) align by role, whatever their thread
    ids. Both run as scripts, as a user would: their hooks are ``__main__``'s."""
    a, b = str(tmp_path / "reimpl.tsdb"), str(tmp_path / "torch.tsdb")
    ran = [
        torchscope("record", "-o", a, f"{SAMPLES}/dataparallel_hooks.py", "--variant", "fixed"),
        torchscope("record", "--target", "torch", "--sim-devices", "2", "-o", b,
                   f"{SAMPLES}/dataparallel_hooks_torch.py", "--variant", "fixed"),
    ]  # fmt: skip
    assert [r.returncode for r in ran] == [0, 0], [r.stderr for r in ran]
    data = report(diff(tracer.load(a), tracer.load(b), ["public"]))
    assert not data["structural"], data["changes"]
    kinds = {k["kind"]: (k["a_count"], k["b_count"]) for k in data["kinds"]}
    assert kinds["dp.replica"] == (2, 2) and kinds["hook.forward"] == (4, 4)
    lanes = [lane["lane"] for lane in data["lanes"]]
    assert lanes == ["main / MainThread"]  # replica spans hang from parallel_apply
