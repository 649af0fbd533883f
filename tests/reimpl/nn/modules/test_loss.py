"""MSELoss and CrossEntropyLoss against torch: values, grads, weight buffer."""

from __future__ import annotations

import pytest
import torch
from layer_parity import assert_same_step, seeded_pair

LOGITS = torch.randn(6, 4, generator=torch.Generator().manual_seed(0))
LABELS = torch.tensor([0, 3, 1, -100, 2, 3])


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_mse(reduction: str) -> None:
    theirs, ours = seeded_pair("MSELoss", reduction=reduction)
    assert_same_step(theirs, ours, torch.randn(3, 5), torch.randn(3, 5))


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"reduction": "sum"},
        {"reduction": "none"},
        {"weight": torch.tensor([1.0, 2.0, 0.5, 3.0])},
        {"ignore_index": 3, "label_smoothing": 0.2},
        {"weight": torch.tensor([1.0, 2.0, 0.5, 3.0]), "label_smoothing": 0.1},
    ],
)
def test_cross_entropy(kwargs: dict) -> None:
    theirs, ours = seeded_pair("CrossEntropyLoss", **kwargs)
    labels = LABELS.clamp(min=0) if "ignore_index" in kwargs else LABELS
    assert_same_step(theirs, ours, LOGITS, labels)
    if "ignore_index" not in kwargs:  # torch refuses ignore_index with probability targets
        probs = torch.softmax(torch.randn(6, 4), dim=1)
        assert_same_step(theirs, ours, LOGITS, probs)


def test_weight_is_a_buffer() -> None:
    _, ours = seeded_pair("CrossEntropyLoss", weight=torch.ones(4))
    assert list(ours.state_dict()) == ["weight"]
    assert [n for n, _ in ours.named_buffers()] == ["weight"]
    assert list(ours.parameters()) == []
    _, unweighted = seeded_pair("CrossEntropyLoss")
    assert unweighted.weight is None and list(unweighted.state_dict()) == []


@pytest.mark.parametrize(
    ("size_average", "reduce", "expected"),
    [(None, False, "none"), (False, None, "sum"), (True, True, "mean")],
)
def test_legacy_reduction_flags(size_average, reduce, expected: str) -> None:
    with pytest.warns(UserWarning, match="deprecated"):
        _, ours = seeded_pair("MSELoss", size_average=size_average, reduce=reduce)
    assert ours.reduction == expected
    with pytest.warns(UserWarning, match="deprecated"):
        _, ours = seeded_pair("CrossEntropyLoss", size_average=size_average, reduce=reduce)
    assert ours.reduction == expected
