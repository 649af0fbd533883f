"""Linear and Identity against torch: same init from a seed, same step, same repr."""

from __future__ import annotations

import pytest
import torch
from layer_parity import assert_same_step, seeded_pair


@pytest.mark.parametrize(
    ("args", "kwargs", "shape"),
    [
        ((5, 3), {}, (4, 5)),
        ((5, 3), {"bias": False}, (2, 6, 5)),
        ((1, 1), {}, (1,)),
        ((4, 2), {"dtype": torch.float64}, (3, 4)),
    ],
)
def test_linear(args: tuple, kwargs: dict, shape: tuple) -> None:
    theirs, ours = seeded_pair("Linear", *args, **kwargs)
    x = torch.randn(shape, dtype=kwargs.get("dtype", torch.float32))
    assert_same_step(theirs, ours, x)
    assert ours.bias is None if kwargs.get("bias") is False else ours.bias.shape == (args[1],)


def test_linear_reset_parameters_redraws_like_torch() -> None:
    theirs, ours = seeded_pair("Linear", 7, 3)
    torch.manual_seed(5)
    theirs.reset_parameters()
    torch.manual_seed(5)
    ours.reset_parameters()
    assert torch.equal(theirs.weight, ours.weight)
    assert torch.equal(theirs.bias, ours.bias)


def test_linear_zero_in_features_bias_bound_is_zero() -> None:
    with pytest.warns(UserWarning, match="zero-element"):
        _, ours = seeded_pair("Linear", 0, 3)
    assert torch.equal(ours.bias, torch.zeros(3))


def test_identity_ignores_arguments() -> None:
    theirs, ours = seeded_pair("Identity", 54, unused_argument1=0.1, unused_argument2=False)
    x = torch.randn(3, 2)
    assert ours(x) is x
    assert_same_step(theirs, ours, x)
