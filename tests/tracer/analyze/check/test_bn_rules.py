"""bn-train-in-eval and bn-tiny-batch, on real reimpl runs (samples/bugs/)."""

from __future__ import annotations

import pytest
import torch

import tracer
from reimpl import _trace, nn
from reimpl.nn.modules.batchnorm import _record_evidence
from reimpl.optim.swa_utils import update_bn
from samples.bugs import bn_tiny_batch, bn_train_in_eval
from tracer.analyze.check import run_rules

BN_RULES = ["bn-train-in-eval", "bn-tiny-batch"]


def _evaluate(path: str, mode: str, eval_mode: bool) -> None:
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8))
    if eval_mode:
        model.eval()
    context = torch.no_grad() if mode == "no_grad" else torch.inference_mode()
    with tracer.record(path), context:
        model(torch.randn(16, 4))
        model(torch.randn(16, 4))


@pytest.mark.parametrize("mode", ["no_grad", "inference_mode"])
def test_bn_train_in_eval_names_the_layer_and_the_mode(tmp_path, mode):
    path = str(tmp_path / "eval.tsdb")
    _evaluate(path, mode, eval_mode=False)
    t = tracer.load(path)
    (finding,) = run_rules(t, BN_RULES)
    assert finding.rule == "bn-train-in-eval" and finding.severity == "warning"
    assert finding.details["modules"] == ["1"]
    assert finding.details["modes"] == [f"torch.{mode}()"]
    (row,) = finding.evidence
    assert t.kind_of(row) == "bn.forward" and t.attrs(row)["updates"]
    assert t.kind_of(t.parent[row]) == "module.forward" and t.name_of(t.parent[row]) == "1"


@pytest.mark.parametrize("mode", ["no_grad", "inference_mode"])
def test_model_eval_is_clean(tmp_path, mode):
    path = str(tmp_path / "eval.tsdb")
    _evaluate(path, mode, eval_mode=True)
    assert run_rules(tracer.load(path), BN_RULES) == []


def test_update_bn_recalibrates_on_purpose(tmp_path):
    path = str(tmp_path / "swa.tsdb")
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8))
    with tracer.record(path):
        update_bn([torch.randn(16, 4) for _ in range(2)], model)  # no_grad, train mode
    t = tracer.load(path)
    assert t.code("bn.forward") >= 0 and t.code("swa.update_bn") >= 0
    assert run_rules(t, BN_RULES) == []


def test_the_sample_fires_and_its_fix_is_clean(tmp_path):
    buggy, fixed = str(tmp_path / "buggy.tsdb"), str(tmp_path / "fixed.tsdb")
    with tracer.record(buggy):
        bn_train_in_eval.run()
    with tracer.record(fixed):
        bn_train_in_eval.run(fixed=True)
    assert [f.rule for f in run_rules(tracer.load(buggy))] == ["bn-train-in-eval"]
    assert run_rules(tracer.load(fixed)) == []


def test_reimpl_raises_what_torch_raises_on_one_value_per_channel():
    x = torch.randn(1, 8)
    with pytest.raises(ValueError) as theirs:
        torch.nn.BatchNorm1d(8)(x)
    with pytest.raises(ValueError) as ours:
        nn.BatchNorm1d(8)(x)
    assert str(ours.value) == str(theirs.value)
    assert "Expected more than 1 value per channel when training" in str(ours.value)


def test_one_value_per_channel_is_an_error_that_names_the_raise(tmp_path):
    path = str(tmp_path / "one.tsdb")
    with tracer.record(path), pytest.raises(ValueError, match="more than 1 value"):
        bn_tiny_batch.run(batch=1)
    t = tracer.load(path)
    (finding,) = run_rules(t)
    assert finding.rule == "bn-tiny-batch" and finding.severity == "error"
    assert "Expected more than 1 value per channel when training" in finding.message
    assert "(this run raised it)" in finding.message
    bn_row, module_row = finding.evidence
    assert t.kind_of(bn_row) == "bn.forward" and t.attrs(bn_row)["per_channel"] == 1
    assert t.kind_of(module_row) == "module.forward" and "error" in t.attrs(module_row)
    assert finding.details["module"] == "1" and finding.details["raises"]


@pytest.mark.parametrize("batch, severity", [(4, "warning"), (7, "warning"), (8, None), (32, None)])
def test_few_values_per_channel_is_a_warning(tmp_path, batch, severity):
    path = str(tmp_path / "few.tsdb")
    with tracer.record(path):
        bn_tiny_batch.run(batch=batch)
    t = tracer.load(path)
    found = run_rules(t)
    assert [f.severity for f in found] == ([severity] if severity else [])
    if severity:
        (finding,) = found
        assert finding.rule == "bn-tiny-batch" and finding.details["values_per_channel"] == batch
        assert t.kind_of(finding.evidence[0]) == "bn.forward"


def test_a_layer_records_only_what_changes(tmp_path):
    """One record per layer for a steady loop; no_grad, inference mode, another
    batch size each add one (a record per call would cost what a module span does)."""
    path = str(tmp_path / "changes.tsdb")
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.BatchNorm1d(8))
    with tracer.record(path):
        for _ in range(3):
            model(torch.randn(16, 4)).sum().backward()
        with torch.no_grad():
            model(torch.randn(16, 4))
        with torch.inference_mode():
            model(torch.randn(16, 4))
        model(torch.randn(4, 4))
        model(torch.randn(4, 4))
    t = tracer.load(path)
    rows = [r for r in range(t.n) if t.kind_of(r) == "bn.forward"]
    seen = [
        (
            t.name_of(t.parent[r]),
            t.attrs(r)["grad"],
            t.attrs(r)["inference"],
            t.attrs(r)["per_channel"],
        )
        for r in rows
    ]
    assert seen == [
        (layer, grad, inference, n)
        for grad, inference, n in [
            (True, False, 16),
            (False, False, 16),
            (False, True, 16),
            (True, False, 4),
        ]
        for layer in ("1", "2")
    ]


def test_spatial_values_count_and_eval_uses_running_stats(tmp_path):
    path = str(tmp_path / "conv.tsdb")
    bn = nn.BatchNorm2d(3)
    with tracer.record(path):
        bn(torch.randn(1, 3, 4, 4))  # one image, but 16 values per channel
        bn.eval()
        bn(torch.randn(1, 3, 1, 1))  # eval: running statistics, no evidence recorded
    t = tracer.load(path)
    evidence = [r for r in t.children(t.roots()[0]) if t.kind_of(r) == "bn.forward"]
    assert t.attr_values(evidence, "per_channel").tolist() == [16]
    assert run_rules(t, BN_RULES) == []


@pytest.mark.parametrize(
    "per_rank, world, severity",
    [(1, 1, "error"), (1, 2, "warning"), (2, 2, "warning"), (4, 2, None)],
)
def test_syncbn_counts_the_values_of_every_rank(tmp_path, per_rank, world, severity):
    """The evidence a SyncBatchNorm records on one rank, with ``world`` ranks pooled
    (a real multi-rank run is samples/syncbn.py, clean in test_check_command.py).
    Like torch, it raises on one value per channel only when it does not pool."""
    path = str(tmp_path / "sync.tsdb")
    bn = nn.SyncBatchNorm(3)
    with tracer.record(path), _trace.span("module.forward", "bn", cls="SyncBatchNorm"):
        _record_evidence(bn, torch.randn(per_rank, 3), world)
    found = run_rules(tracer.load(path), ["bn-tiny-batch"])
    assert [f.severity for f in found] == ([severity] if severity else [])
    if severity:
        assert found[0].details["values_per_channel"] == per_rank * world
        assert ("pooled over 2 ranks" in found[0].message) == (world == 2)
        assert ("did not synchronise" in found[0].message) == (severity == "warning" and world == 1)


def test_unsynchronised_syncbn_on_a_tiny_batch_says_so(tmp_path):
    path = str(tmp_path / "nosync.tsdb")
    with tracer.record(path):
        nn.SyncBatchNorm(3)(torch.randn(2, 3))  # no process group: plain batch norm
    (finding,) = run_rules(tracer.load(path), BN_RULES)
    assert finding.rule == "bn-tiny-batch" and finding.details["cls"] == "SyncBatchNorm"
    assert "did not synchronise" in finding.message
