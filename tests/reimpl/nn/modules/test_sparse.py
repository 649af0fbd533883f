"""Embedding against torch: init, padding_idx, max_norm, from_pretrained."""

from __future__ import annotations

import pytest
import torch
from layer_parity import (
    assert_raises_like_torch,
    assert_same_step,
    seeded_pair,
)

import reimpl.nn

IDX = torch.tensor([[1, 2, 4, 5], [4, 3, 2, 9]])


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"padding_idx": 2},
        {"padding_idx": -1},
        {"max_norm": 1.0},  # renormalises looked-up rows in place: state compared after
        {"max_norm": 0.5, "norm_type": 1.0, "scale_grad_by_freq": True},
        {"sparse": True},
    ],
)
def test_embedding(kwargs: dict) -> None:
    theirs, ours = seeded_pair("Embedding", 10, 3, **kwargs)
    if kwargs.get("sparse"):  # sparse grads: compare densified
        out_t, out_o = theirs(IDX), ours(IDX)
        assert torch.equal(out_t, out_o)
        out_t.sum().backward()
        out_o.sum().backward()
        assert torch.equal(theirs.weight.grad.to_dense(), ours.weight.grad.to_dense())
        return
    assert_same_step(theirs, ours, IDX)
    if ours.padding_idx is not None:
        assert (ours.weight[ours.padding_idx] == 0).all()
        assert (ours.weight.grad[ours.padding_idx] == 0).all()


@pytest.mark.parametrize("freeze", [True, False])
def test_from_pretrained(freeze: bool) -> None:
    table = torch.randn(4, 3)
    ours = reimpl.nn.Embedding.from_pretrained(table, freeze=freeze, padding_idx=1)
    theirs = torch.nn.Embedding.from_pretrained(table, freeze=freeze, padding_idx=1)
    assert type(ours) is reimpl.nn.Embedding
    assert ours.weight.requires_grad is (not freeze)
    assert ours.weight.data_ptr() == table.data_ptr()  # wraps, does not copy or re-init
    assert repr(ours) == repr(theirs)
    assert_same_step(theirs, ours, torch.tensor([0, 1, 3]), backward=not freeze)


@pytest.mark.parametrize(
    "build",
    [
        lambda nn: nn.Embedding(5, 2, padding_idx=5),
        lambda nn: nn.Embedding(5, 2, padding_idx=-6),
        lambda nn: nn.Embedding(5, 2, _weight=torch.zeros(4, 2)),
        lambda nn: nn.Embedding.from_pretrained(torch.zeros(3)),
    ],
)
def test_errors_match_torch(build) -> None:
    assert_raises_like_torch(AssertionError, build)
