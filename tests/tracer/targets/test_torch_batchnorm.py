"""torch's BatchNorm under ``--target torch``: the same ``bn.forward`` evidence and
``bn.running_stats`` spans as reimpl's layer records, from one wrapper on
``_BatchNorm.forward`` that works out torch's averaging factor before torch counts
the batch (tracer/targets/torch/batchnorm.py)."""

from __future__ import annotations

import pytest
import torch

import tracer
from reimpl import nn as rnn

X = [torch.randn(8, 3, generator=torch.Generator().manual_seed(i)) for i in range(4)]


def _bn_spans(path: str, layer: torch.nn.Module, target: str) -> list[tuple[str, dict]]:
    with tracer.record(path, target=target):
        for x in X[:3]:
            layer(x)
        layer.eval()
        layer(X[3])
    t = tracer.load(path)
    rows = sorted(
        (r for r in range(t.n) if t.kind_of(r) in ("bn.forward", "bn.running_stats")),
        key=lambda r: (t.start_ns[r], t.kind_of(r)),
    )
    return [(t.kind_of(r), t.attrs(r)) for r in rows]


@pytest.mark.parametrize("momentum", [None, 0.1])
def test_torch_layer_records_what_the_reimpl_layer_records(tmp_path, momentum):
    torch_spans = _bn_spans(
        str(tmp_path / "t.tsdb"), torch.nn.BatchNorm1d(3, momentum=momentum), "torch"
    )
    reimpl_spans = _bn_spans(
        str(tmp_path / "r.tsdb"), rnn.BatchNorm1d(3, momentum=momentum), "reimpl"
    )
    assert torch_spans == reimpl_spans
    stats = [attrs for kind, attrs in torch_spans if kind == "bn.running_stats"]
    if momentum is None:  # the cumulative average: torch's factor, counted as torch counts
        assert [s["factor"] for s in stats] == [1.0, 1 / 2, 1 / 3, None]
        assert [(s["batches_before"], s["batches_after"]) for s in stats] == [
            (0, 1), (1, 2), (2, 3), (3, 3)
        ]  # fmt: skip
    else:
        assert [s["factor"] for s in stats] == [0.1, None]


def test_a_wrong_input_keeps_torchs_error(trace_path):
    layer = torch.nn.BatchNorm1d(3)
    with (
        tracer.record(trace_path, target="torch"),
        pytest.raises(ValueError, match="expected 2D or 3D"),
    ):
        layer(torch.randn(3))
