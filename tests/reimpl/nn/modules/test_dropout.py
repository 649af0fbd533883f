"""Dropout against torch: same mask from a seed in training, identity in eval."""

from __future__ import annotations

import pytest
import torch
from layer_parity import (
    assert_raises_like_torch,
    assert_same_step,
    seeded_pair,
)


@pytest.mark.parametrize("p", [0.0, 0.3, 1.0])
def test_dropout_training_same_mask(p: float) -> None:
    theirs, ours = seeded_pair("Dropout", p)
    assert ours.training
    out = assert_same_step(theirs, ours, torch.randn(8, 16))
    if p == 1.0:
        assert (out == 0).all()


def test_dropout_eval_is_identity() -> None:
    theirs, ours = seeded_pair("Dropout", 0.5, inplace=True)
    ours.eval()
    theirs.eval()
    x = torch.randn(4, 4)
    assert torch.equal(ours(x), x)
    assert_same_step(theirs, ours, x)


@pytest.mark.parametrize("p", [-0.1, 1.5])
def test_dropout_bad_probability(p: float) -> None:
    assert_raises_like_torch(ValueError, lambda nn: nn.Dropout(p))
