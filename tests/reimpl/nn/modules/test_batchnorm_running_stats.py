"""BatchNorm's running-statistics update in the trace: a ``bn.running_stats`` span
with the factor used, the training flag and norms before and after, recorded
only when the layer's state changes (the factor, with ``momentum=None``, every
step); the numbers it reports are those of the buffers."""

from __future__ import annotations

import pytest
import torch
from sinks import ListSink

import tracer
from reimpl import nn

X = [torch.randn(8, 3, generator=torch.Generator().manual_seed(i)) for i in range(4)]


def stats_spans(sink: ListSink) -> list[dict]:
    return [r[8] for r in sorted(sink.of("bn.running_stats"))]


def test_cumulative_average_factors_and_no_update_in_eval(tmp_path) -> None:
    """momentum=None over 3 steps: factors 1, 1/2, 1/3; then eval reads, updates nothing."""
    bn = nn.BatchNorm1d(3, momentum=None)
    trace_path = str(tmp_path / "bn.tsdb")
    with tracer.record(trace_path):
        for x in X[:3]:
            bn(x)
        bn.eval()
        bn(X[3])
        bn(X[3])  # same state again: nothing more
    t = tracer.load(trace_path)
    rows = [r for r in range(t.n) if t.kind_of(r) == "bn.running_stats"]
    spans = [t.attrs(r) for r in sorted(rows, key=lambda r: t.start_ns[r])]
    assert [s["factor"] for s in spans] == [1.0, 1 / 2, 1 / 3, None]
    assert [s["training"] for s in spans] == [True, True, True, False]
    assert [s["updated"] for s in spans] == [True, True, True, False]
    assert [(s["batches_before"], s["batches_after"]) for s in spans] == [
        (0, 1), (1, 2), (2, 3), (3, 3)
    ]  # fmt: skip
    mean = torch.stack(X[:3]).mean((0, 1))  # the cumulative average of the batch means
    assert spans[2]["mean_norm_after"] == pytest.approx(float(mean.norm()), rel=1e-5)
    assert spans[0]["mean_norm_before"] == 0.0 and spans[0]["var_norm_before"] == pytest.approx(
        3**0.5
    )
    evaluated = spans[3]
    assert evaluated["mean_norm_before"] == evaluated["mean_norm_after"]
    assert evaluated["var_norm_before"] == evaluated["var_norm_after"]
    func = "reimpl.nn.modules.batchnorm._BatchNorm._exponential_average_factor"
    assert t.func_of(rows[0]) == func  # the TUI shows it beside torch's _BatchNorm.forward
    parent = int(t.parent[rows[0]])
    assert t.kind_of(parent) == "module.forward"  # inside the layer's own span


def test_fixed_momentum_records_each_state_once(sink: ListSink) -> None:
    bn = nn.BatchNorm1d(3)
    for x in X:
        bn(x)
    (span,) = stats_spans(sink)
    assert span["factor"] == 0.1 and span["momentum"] == 0.1 and span["updated"]
    assert span["mean_norm_after"] == pytest.approx(float(0.1 * X[0].mean(0).norm()), rel=1e-5)
    bn.eval()
    bn(X[0])
    bn.train()
    bn(X[1])
    assert [(s["training"], s["factor"]) for s in stats_spans(sink)] == [
        (True, 0.1), (False, None), (True, 0.1)
    ]  # fmt: skip


def test_untracked_stats_are_never_updated(sink: ListSink) -> None:
    bn = nn.BatchNorm1d(3, track_running_stats=False)
    bn(X[0])
    (span,) = stats_spans(sink)
    assert span["updated"] is False and span["mean_norm_before"] is None
    assert span["batches_after"] is None


def test_detached_records_nothing_and_computes_the_same() -> None:
    ours, theirs = nn.BatchNorm1d(3, momentum=None), torch.nn.BatchNorm1d(3, momentum=None)
    for x in X[:3]:
        torch.testing.assert_close(ours(x), theirs(x))
    torch.testing.assert_close(ours.running_mean, theirs.running_mean)
    torch.testing.assert_close(ours.running_var, theirs.running_var)
