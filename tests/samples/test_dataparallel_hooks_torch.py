"""The plain-torch DeOldify twin: torch.nn only, and the same story as the reimpl sample."""

from __future__ import annotations

import ast
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import tracer
from samples import dataparallel_hooks as reimpl_sample
from samples import dataparallel_hooks_torch as sample
from tracer.analyze.check.report import check
from tracer.analyze.diff import diff
from tracer.targets.torch.sim_devices import SimDevices

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "samples" / "dataparallel_hooks_torch.py"
REIMPL_SAMPLE = ROOT / "samples" / "dataparallel_hooks.py"


def _error(fn, *args, **kwargs) -> str:
    with pytest.raises(RuntimeError) as err:
        fn(*args, **kwargs)
    return str(err.value)


def _ends(msg: str) -> tuple[str, str]:
    """The wrapper's first line and the replica's own error, the last line."""
    lines = msg.strip().splitlines()
    return lines[0], lines[-1]


def test_imports_torch_and_the_standard_library_only():
    tree = ast.parse(SAMPLE.read_text())
    roots = {
        (node.module if isinstance(node, ast.ImportFrom) else alias.name).split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, (ast.Import, ast.ImportFrom)) and getattr(node, "level", 0) == 0
        for alias in node.names
    }
    assert roots == {"__future__", "argparse", "sys", "threading", "collections", "typing", "torch"}
    code = f"import runpy, sys; runpy.run_path({str(SAMPLE)!r}); print(sorted(sys.modules))"
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert "'reimpl" not in loaded.stdout and "'tracer" not in loaded.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="on GPUs DataParallel really splits")
def test_on_a_cpu_machine_dataparallel_is_a_plain_call_and_hides_the_bug():
    out, _, _ = sample.run("buggy")  # no accelerator: torch runs the module as is
    ref_out, _, _ = sample.run("buggy", parallel=False)
    torch.testing.assert_close(out, ref_out)
    assert sample.main(["--variant", "buggy"]) == 0


def test_fails_the_same_way_as_the_reimpl_sample_under_lockstep():
    with SimDevices(2):
        buggy = _error(sample.run, "buggy")
        printing = _error(sample.run, "print")
        with pytest.raises(KeyError) as key_error:
            sample.run("thread-id-print")
    assert _ends(buggy) == _ends(_error(reimpl_sample.run, "buggy", use_lockstep=True))
    assert _ends(printing)[1] == _ends(_error(reimpl_sample.run, "print", use_lockstep=True))[1]
    assert _ends(printing)[1] == "RuntimeError: dictionary changed size during iteration"
    with pytest.raises(KeyError) as twin_key_error:
        reimpl_sample.run("thread-id-print", use_lockstep=True)
    first = _ends(str(key_error.value))[0]
    assert (
        first
        == _ends(str(twin_key_error.value))[0]
        == "Caught KeyError in replica 0 on device sim:0."
    )


@pytest.mark.parametrize("variant", ["fixed", "fixed-device", "thread-id"])
def test_fixed_matches_one_device_and_the_reimpl_twin(variant):
    ref_out, ref_loss, ref_model = sample.run(variant, parallel=False)
    with SimDevices(2):
        out, loss, model = sample.run(variant)
    torch.testing.assert_close(out, ref_out)
    torch.testing.assert_close(loss, ref_loss)
    for p, q in zip(model.parameters(), ref_model.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad)
    twin_out, _ = reimpl_sample.run("fixed", use_lockstep=True)
    torch.testing.assert_close(out, twin_out)


def test_buggy_fails_20_runs_out_of_20_under_the_torch_target(tmp_path):
    """20 runs in one recording under --target torch on two simulated devices
    (in-process: a recording per run would start 20 interpreters)."""
    expected = _ends(_error(reimpl_sample.run, "buggy", use_lockstep=True))
    path = str(tmp_path / "twenty.tsdb")
    with tracer.record(path, target="torch"), SimDevices(2):
        errors = [_ends(_error(sample.run, "buggy")) for _ in range(20)]
    assert errors == [expected] * 20
    findings, _ = check(tracer.load(path))
    rules = [f.rule for f in findings]
    assert rules.count("cross-device") == 20
    shared = [f for f in findings if f.rule == "shared-hook-state"]
    # one finding per hook object, counting the DataParallel calls that shared it: 20 calls,
    # two hooks each (a later model's hook may reuse a freed one's id: one finding, 2 calls)
    assert sum(f.details["forwards"] for f in shared) == 40


def _story(trace: tracer.Trace) -> list[tuple]:
    """What check says, without identities: rule, module, devices, state rebound, op."""
    findings, _ = check(trace)
    return sorted(
        (
            f.rule,
            f.details.get("module"),
            tuple(f.details.get("devices") or ()),
            tuple(f.details.get("rebound", ())),
            f.details.get("op"),
        )
        for f in findings
    )


def _run_as_main(script: Path, variant: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """``python script --variant V``: its hooks are ``__main__.Hook...`` on both targets."""
    monkeypatch.setattr(sys, "argv", [str(script), "--variant", variant])
    with pytest.raises(SystemExit):
        runpy.run_path(str(script), run_name="__main__")


def _record_both(
    tmp_path: Path, variant: str, monkeypatch: pytest.MonkeyPatch
) -> tuple[tracer.Trace, tracer.Trace]:
    """The reimpl sample under lockstep and its torch twin under --sim-devices 2, as programs."""
    with tracer.record(str(tmp_path / "reimpl.tsdb")):
        _run_as_main(REIMPL_SAMPLE, variant, monkeypatch)
    with tracer.record(str(tmp_path / "torch.tsdb"), target="torch", sim_devices=2):
        _run_as_main(SAMPLE, variant, monkeypatch)
    return tracer.load(str(tmp_path / "reimpl.tsdb")), tracer.load(str(tmp_path / "torch.tsdb"))


@pytest.mark.parametrize("variant", ["buggy", "print", "fixed", "thread-id", "thread-id-print"])
def test_check_tells_the_same_story_as_on_the_reimpl_sample(tmp_path, variant, monkeypatch):
    reimpl_trace, torch_trace = _record_both(tmp_path, variant, monkeypatch)
    twin = _story(reimpl_trace)
    assert _story(torch_trace) == twin
    assert bool(twin) == (variant in ("buggy", "print"))


@pytest.mark.parametrize("variant", ["buggy", "fixed", "thread-id"])
def test_diff_finds_the_same_tree_as_the_reimpl_sample(tmp_path, variant, monkeypatch):
    """Module, hook and dp.* spans, replica lanes: the same structure on both targets."""
    reimpl_trace, torch_trace = _record_both(tmp_path, variant, monkeypatch)
    d = diff(reimpl_trace, torch_trace, ["public"])
    assert not d.structural, d.counts()
    assert d.counts()["aligned"] >= 50  # the buggy run stops at the failing read
