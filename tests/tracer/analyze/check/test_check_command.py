"""`torchscope check` and `record --check`: exit codes, JSON schema, no duplicates,
and every sample that is not deliberately buggy comes back clean."""

from __future__ import annotations

import json
import os

import pytest
from torchscope_cli import torchscope

import tracer

SAMPLES = os.path.join(os.path.dirname(__file__), "..", "..", "..", "..", "samples")


@pytest.fixture(scope="module")
def buggy(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("check") / "buggy.tsdb")
    result = torchscope("record", "-o", path, f"{SAMPLES}/dataparallel_hooks.py")
    assert result.returncode == 1  # the sample's own failure ("same device")
    return path


def test_check_prints_stores_and_fails_on_errors(buggy):
    result = torchscope("check", buggy)
    assert result.returncode == 1, result.stderr
    assert result.stdout.count("error: [shared-hook-state]") == 2
    assert "fix: Keep one value per replica" in result.stdout
    assert "source: " in result.stdout and "dataparallel_hooks.py:52" in result.stdout
    assert result.stdout.count("error: [cross-device] cat in up") == 1
    stored = tracer.load(buggy).findings
    assert sorted(f["detector"] for f in stored) == ["cross-device"] + ["shared-hook-state"] * 2
    assert torchscope("check", buggy).returncode == 1
    assert len(tracer.load(buggy).findings) == 3  # a second check replaces, never duplicates


def test_json_has_a_stable_schema(buggy):
    result = torchscope("check", buggy, "--json")
    data = json.loads(result.stdout)
    assert data["schema"] == 1 and data["file"] == buggy
    assert data["counts"] == {"error": 3, "warning": 0, "info": 0}
    for finding in data["findings"]:
        assert set(finding) == {"rule", "severity", "message", "evidence", "fix", "details"}
        assert finding["rule"] in ("shared-hook-state", "cross-device")
        assert finding["severity"] == "error"
        assert all(set(e) == {"span", "part", "seq"} for e in finding["evidence"])


def test_fail_on_and_rule_selection(buggy):
    assert torchscope("check", buggy, "--fail-on", "never").returncode == 0
    only = torchscope("check", buggy, "--rule", "missing-zero-grad")
    assert only.returncode == 0 and "no findings" in only.stdout
    assert len(tracer.load(buggy).findings) == 3  # other rules' findings are kept
    unknown = torchscope("check", buggy, "--rule", "no-such-rule")
    assert unknown.returncode == 2 and "unknown rule 'no-such-rule'" in unknown.stderr


@pytest.mark.slow
@pytest.mark.parametrize(
    "sample, args",
    [
        ("train_step.py", ["--steps", "2"]),
        ("dataparallel_hooks.py", ["--variant", "fixed"]),
        ("dataparallel_hooks.py", ["--variant", "fixed", "--no-lockstep"]),
    ],
)
def test_samples_that_are_not_buggy_are_clean(tmp_path, sample, args):
    out = str(tmp_path / "clean.tsdb")
    result = torchscope("record", "--check", "-o", out, f"{SAMPLES}/{sample}", *args)
    assert result.returncode == 0, result.stderr
    assert "no findings" in result.stderr
    assert tracer.load(out).findings == []


@pytest.mark.slow
@pytest.mark.multiprocess
def test_the_syncbn_sample_is_clean(tmp_path):
    out = str(tmp_path / "syncbn.tsdb")
    result = torchscope(
        "record", "--check", "-o", out, f"{SAMPLES}/syncbn.py", "--world-size", "2", "--steps", "2"
    )
    assert result.returncode == 0, result.stderr
    assert "no findings" in result.stderr


QUIET_RACE = """
import torch
from reimpl import nn
from reimpl.nn.parallel import DataParallel


class LastOutput:  # stores what it sees, like DeOldify's hook; nobody reads it back
    def __init__(self, module):
        self.last = None
        module.register_forward_hook(self)

    def __call__(self, module, args, output):
        self.last = output


model = nn.Sequential(nn.Linear(3, 3), nn.ReLU())
LastOutput(model[0])
DataParallel(model, device_ids=["sim:0", "sim:1"])(torch.randn(4, 3)).sum().backward()
print("the program finished without an error")
"""


def test_record_check_fails_a_run_whose_race_did_no_visible_harm(tmp_path):
    script = tmp_path / "quiet.py"
    script.write_text(QUIET_RACE)
    out = str(tmp_path / "r.tsdb")
    plain = torchscope("record", "-o", out, str(script))
    assert plain.returncode == 0 and "finished without an error" in plain.stdout
    result = torchscope("record", "--check", "-o", out, str(script))
    assert result.returncode == 1, result.stderr
    assert "[shared-hook-state] hook __main__.LastOutput on 0" in result.stderr
    assert "rebinds last" in result.stderr


def test_findings_are_printed_when_they_cannot_be_stored(buggy, monkeypatch, capsys):
    from tracer.analyze.check import report
    from tracer.cli import main

    def refuse(path, detectors, rows):
        raise tracer.TraceError(f"{path}: cannot store findings here (readonly database).")

    monkeypatch.setattr(report, "replace_findings", refuse)
    assert main(["check", buggy]) == 1
    out, err = capsys.readouterr()
    assert out.count("error: [shared-hook-state]") == 2
    assert "warning: findings not stored" in err and "readonly database" in err
