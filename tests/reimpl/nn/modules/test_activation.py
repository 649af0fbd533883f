"""The element-wise activations against torch: outputs, grads, repr."""

from __future__ import annotations

import pytest
import torch
from layer_parity import assert_same_step, seeded_pair

CASES = [
    ("ReLU", (), {}),
    ("ReLU", (True,), {}),
    ("LeakyReLU", (), {}),
    ("LeakyReLU", (0.2,), {"inplace": True}),
    ("GELU", (), {}),
    ("GELU", (), {"approximate": "tanh"}),
    ("Sigmoid", (), {}),
    ("Tanh", (), {}),
]


@pytest.mark.parametrize(("name", "args", "kwargs"), CASES)
def test_activation(name: str, args: tuple, kwargs: dict) -> None:
    theirs, ours = seeded_pair(name, *args, **kwargs)
    x = torch.randn(3, 4, 5)
    if getattr(ours, "inplace", False):
        # an in-place op may not overwrite a leaf: feed a non-leaf and compare its grad
        leaf_t, leaf_o = x.clone().requires_grad_(), x.clone().requires_grad_()
        out_t, out_o = theirs(leaf_t * 1), ours(leaf_o * 1)
        assert torch.equal(out_t, out_o)
        out_t.sum().backward()
        out_o.sum().backward()
        assert torch.equal(leaf_t.grad, leaf_o.grad)
    else:
        assert_same_step(theirs, ours, x)


def test_inplace_relu_overwrites_its_input() -> None:
    _, ours = seeded_pair("ReLU", inplace=True)
    x = torch.randn(10)
    assert ours(x) is x
    assert (x >= 0).all()
