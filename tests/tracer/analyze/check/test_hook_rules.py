"""shared-hook-state (the DeOldify rule) and deprecated-backward-hook, on real runs."""

from __future__ import annotations

import pytest
import torch

import tracer
from reimpl import nn
from samples import dataparallel_hooks
from tracer.analyze.check import run_rules


def _record_dp(path: str, variant: str, lockstep: bool) -> bool:
    """Records one DataParallel forward/backward; returns whether it raised."""
    with tracer.record(path):
        try:
            dataparallel_hooks.run(variant, use_lockstep=lockstep)
        except RuntimeError:
            return True
    return False


def test_buggy_hooks_are_named_with_their_evidence(tmp_path):
    path = str(tmp_path / "buggy.tsdb")
    assert _record_dp(path, "buggy", lockstep=True)  # lockstep: the race fires every time
    t = tracer.load(path)
    findings = run_rules(t, ["shared-hook-state"])
    assert {f.details["module"] for f in findings} == {"encoder.0", "encoder.1"}
    for f in findings:
        assert f.severity == "error" and f.details["rebound"] == ["stored"]
        assert f.details["devices"] == ["sim:0", "sim:1"]
        hooks = [r for r in f.evidence if t.kind_of(r) == "hook.forward"]
        assert len({int(t.thread[r]) for r in hooks}) == 2
        assert t.kind_of(f.evidence[-1]) == "dp.parallel_apply"
        assert f.details["source"].endswith("samples/dataparallel_hooks.py:52")


@pytest.mark.slow
def test_fires_on_every_unlocked_run_even_when_nothing_raised(tmp_path, capsys):
    raised = 0
    for run in range(20):
        path = str(tmp_path / f"run{run}.tsdb")
        raised += _record_dp(path, "buggy", lockstep=False)
        found = run_rules(tracer.load(path), ["shared-hook-state"])
        assert {f.details["module"] for f in found} >= {"encoder.1"}, run
    with capsys.disabled():
        print(f"\nshared-hook-state fired in 20 of 20 free-running runs; {raised} of them raised")


@pytest.mark.parametrize("lockstep", [True, False])
def test_the_thread_local_fix_is_clean(tmp_path, lockstep):
    path = str(tmp_path / "fixed.tsdb")
    assert not _record_dp(path, "fixed", lockstep=lockstep)
    assert run_rules(tracer.load(path)) == []


def _backward_with(path: str, register: str) -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
    calls = []
    getattr(model[0], register)(lambda module, gin, gout: calls.append(1))
    with tracer.record(path):
        model(torch.randn(2, 3)).sum().backward()
        model(torch.randn(2, 3)).sum().backward()
    assert len(calls) == 2


def test_deprecated_backward_hook_is_named_once_per_hook(tmp_path):
    path = str(tmp_path / "legacy.tsdb")
    with pytest.warns(FutureWarning):
        _backward_with(path, "register_backward_hook")
    t = tracer.load(path)
    (finding,) = run_rules(t, ["deprecated-backward-hook"])
    assert finding.severity == "warning" and finding.details["module"] == "0"
    assert t.kind_of(finding.evidence[0]) == "hook.backward"


@pytest.mark.filterwarnings("ignore:Full backward hook is firing")
def test_full_backward_hook_is_clean(tmp_path):
    path = str(tmp_path / "full.tsdb")
    _backward_with(path, "register_full_backward_hook")
    assert run_rules(tracer.load(path), ["deprecated-backward-hook"]) == []
