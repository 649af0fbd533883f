"""The torch DeOldify twin recorded under --target torch on simulated devices, and checked."""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torchscope_cli import torchscope

import tracer
from samples import dataparallel_hooks_torch as sample
from tracer import cli
from tracer.analyze.check.report import check
from tracer.targets.torch import sim_devices
from tracer.targets.torch.sim_devices import SimDevices

ROOT = Path(__file__).resolve().parents[3]
SAMPLE = str(ROOT / "samples" / "dataparallel_hooks_torch.py")


def _record(path: Path, variant: str, lockstep: bool = True) -> tracer.Trace:
    """One run of ``variant`` recorded on two simulated devices; the loaded trace."""
    with tracer.record(str(path), target="torch"), SimDevices(2, lockstep=lockstep):
        try:
            sample.run(variant)
        except RuntimeError:
            pass  # the buggy variants fail inside a replica: the trace shows why
    return tracer.load(str(path))


def _rules(trace: tracer.Trace) -> dict[str, list]:
    findings, _ = check(trace)
    out: dict[str, list] = {}
    for f in findings:
        out.setdefault(f.rule, []).append(f)
    return out


def test_buggy_variant_is_flagged_with_both_hooks_and_the_failing_read(tmp_path):
    trace = _record(tmp_path / "buggy.tsdb", "buggy")
    threads = {(t.name, t.device) for t in trace.threads}
    assert {("replica 0", "sim:0"), ("replica 1", "sim:1")} <= threads
    rules = _rules(trace)
    shared = rules["shared-hook-state"]
    assert sorted(f.details["module"] for f in shared) == ["encoder.0", "encoder.1"]
    for f in shared:
        assert f.details["devices"] == ["sim:0", "sim:1"] and f.details["rebound"] == ["stored"]
        assert f.details["hook"] == "samples.dataparallel_hooks_torch.Hook.hook_fn"
        line = inspect.getsourcelines(sample.Hook.hook_fn)[1]
        assert f.details["source"] == f"{SAMPLE}:{line}"
    (cross,) = rules["cross-device"]
    assert cross.details["op"] == "cat" and cross.details["devices"] == ["sim:0", "sim:1"]
    assert cross.details["producer"] == "samples.dataparallel_hooks_torch.Hook.hook_fn"


def test_free_running_threads_are_flagged_whether_or_not_the_race_raised(tmp_path):
    """Without lockstep the replicas interleave as the interpreter switches them:
    the read may or may not cross devices, but both replicas rebind the hook's state."""
    for k in range(3):
        rules = _rules(_record(tmp_path / f"free{k}.tsdb", "buggy", lockstep=False))
        assert len(rules["shared-hook-state"]) == 2


def test_print_variant_is_flagged_as_a_mutation_during_iteration(tmp_path):
    rules = _rules(_record(tmp_path / "print.tsdb", "print"))
    assert "mutation-during-iteration" in rules and "shared-hook-state" in rules


@pytest.mark.parametrize("variant", ["fixed", "fixed-device"])
def test_fixed_variants_are_clean(tmp_path, variant):
    """Kept per thread, or per device (the fix check proposes: a sim:k tensor's
    .device is cpu:k, so the keys differ per device as cuda:k do)."""
    trace = _record(tmp_path / "fixed.tsdb", variant)
    assert _rules(trace) == {}
    kinds = {trace.kind_of(r) for r in range(trace.n)}
    assert {"dp.scatter", "dp.replicate", "dp.replica", "dp.gather", "hook.forward"} <= kinds


def test_torch_is_as_it_was_after_a_recorded_run(tmp_path):
    m = torch.nn.modules.module
    before = (
        torch.nn.DataParallel,
        torch.nn.parallel.data_parallel,
        dict(m._global_forward_pre_hooks),
        dict(m._global_forward_hooks),
        sys.stdout,
    )
    model = sample.UNet(sample.Hook)
    hooks = {k: v for k, v in model.hooks[0].handle.hooks_dict_ref().items()}
    _record(tmp_path / "buggy.tsdb", "buggy")
    assert torch.nn.DataParallel is before[0] and torch.nn.parallel.data_parallel is before[1]
    assert dict(m._global_forward_pre_hooks) == before[2]
    assert dict(m._global_forward_hooks) == before[3]
    assert sys.stdout is before[4]
    assert model.hooks[0].handle.hooks_dict_ref() == hooks
    assert type(nn.DataParallel(model)) is before[0]


def test_record_command_says_which_devices_were_simulated(tmp_path):
    out = str(tmp_path / "buggy.tsdb")
    result = torchscope(
        "record", "--target", "torch", "--sim-devices", "2", "--check", "-o", out, SAMPLE
    )
    assert result.returncode == 1, result.stderr
    assert "simulating 2 device(s) on the CPU for torch.nn.DataParallel" in result.stderr
    assert "sim:0, sim:1 are simulated, not GPUs" in result.stderr
    assert "found at least two devices, sim:0 and sim:1!" in result.stderr
    assert "[shared-hook-state]" in result.stderr
    trace = tracer.load(out)
    assert trace.meta["target"] == "torch"
    assert (trace.meta["sim_devices"], trace.meta["sim_lockstep"]) == ("sim:0,sim:1", "yes")
    summary = torchscope("summary", out).stdout
    assert "simulated devices: sim:0, sim:1 (--sim-devices:" in summary


def test_record_command_refuses_sim_devices_without_the_torch_target(tmp_path, capsys):
    out = str(tmp_path / "x.tsdb")
    assert cli.main(["record", "--sim-devices", "2", "-o", out, SAMPLE]) == 2
    assert "add --target torch" in capsys.readouterr().err
    assert not (tmp_path / "x.tsdb").exists()
    assert cli.main(["record", "--target", "torch", "--no-lockstep", "-o", out, SAMPLE]) == 2
    assert "go with --sim-devices N" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        cli.main(["record", "--target", "torch", "--sim-devices", "0", SAMPLE])
    assert exit_.value.code == 2
    assert "expected a number of devices >= 1" in capsys.readouterr().err
    assert torch.nn.DataParallel is sim_devices.TorchDataParallel


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 or more CUDA devices")
def test_real_gpus_record_one_lane_per_replica_thread_and_device(tmp_path):
    """The same program on real GPUs (no --sim-devices): one lane per replica
    thread, named for its device, and the buggy variant's hook evidence."""
    n = min(torch.cuda.device_count(), 4)  # a batch of 4 makes at most 4 replicas
    path = str(tmp_path / "gpus.tsdb")
    with tracer.record(path, target="torch"):
        out, _, _ = sample.run("fixed")  # the program as written: .cuda() and nn.DataParallel
    assert out.is_cuda
    trace = tracer.load(path)
    replicas = [r for r in range(trace.n) if trace.kind_of(r) == "dp.replica"]
    lanes = {int(trace.thread[r]) for r in replicas}
    assert len(lanes) == len(replicas) == n
    named = {(trace.threads[k].name, trace.threads[k].device) for k in lanes}
    assert named == {(f"replica {i}", f"cuda:{i}") for i in range(n)}
    assert _rules(trace) == {}
    buggy = _record_gpus(tmp_path / "buggy.tsdb")
    for f in _rules(buggy)["shared-hook-state"]:
        assert f.details["devices"] == [f"cuda:{i}" for i in range(n)]


def _record_gpus(path: Path) -> tracer.Trace:
    """The buggy variant on the real GPUs: the race raises only sometimes."""
    with tracer.record(str(path), target="torch"):
        try:
            sample.run("buggy")
        except RuntimeError:
            pass
    return tracer.load(str(path))


TUTORIAL = """
import torch
from torch import nn

device = torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
model = nn.Linear(5, 2)
if torch.cuda.device_count() > 1:
    model = nn.DataParallel(model)
model.to(device)
out = model(torch.randn(30, 5).to(device))
print(type(model).__name__, tuple(out.shape))
"""


def test_a_device_count_guard_needs_sim_device_count(tmp_path):
    """PyTorch's DataParallel tutorial wraps the model only when device_count() > 1."""
    script = tmp_path / "tutorial.py"
    script.write_text(TUTORIAL)
    out = str(tmp_path / "t.tsdb")
    plain = torchscope("record", "--target", "torch", "--sim-devices", "2", "-o", out, str(script))
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.strip() == "Linear (30, 2)"
    assert "the program made no torch.nn.DataParallel" in plain.stderr
    assert "--sim-device-count" in plain.stderr
    counted = torchscope(
        "record", "--target", "torch", "--sim-devices", "2", "--sim-device-count", "-o", out,
        str(script),
    )  # fmt: skip
    assert counted.returncode == 0, counted.stderr
    assert counted.stdout.strip() == "DataParallel (30, 2)"
    assert "torch.cuda.device_count() answers 2" in counted.stderr
    assert "1 torch.nn.DataParallel object(s)" in counted.stderr
    trace = tracer.load(out)
    assert trace.meta["sim_device_count"] == "2"
    assert {(t.name, t.device) for t in trace.threads} >= {
        ("replica 0", "sim:0"),
        ("replica 1", "sim:1"),
    }


def test_python_api_records_on_simulated_devices(tmp_path):
    path = str(tmp_path / "api.tsdb")
    with tracer.record(path, target="torch", sim_devices=2):
        assert torch.nn.DataParallel is not sim_devices.TorchDataParallel
        with pytest.raises(RuntimeError, match="sim:0 and sim:1!"):
            sample.run("buggy")
    assert torch.nn.DataParallel is sim_devices.TorchDataParallel
    trace = tracer.load(path)
    assert trace.meta["sim_devices"] == "sim:0,sim:1"
    assert "shared-hook-state" in _rules(trace)
    with pytest.raises(ValueError, match="target='torch'"):
        with tracer.record(str(tmp_path / "r.tsdb"), sim_devices=2):
            pass
