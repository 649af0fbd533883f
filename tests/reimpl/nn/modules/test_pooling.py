"""MaxPool2d, AvgPool2d and AdaptiveAvgPool2d against torch."""

from __future__ import annotations

import pytest
import torch
from layer_parity import assert_same_step, seeded_pair

CASES = [
    ("MaxPool2d", (2,), {}),
    ("MaxPool2d", (3,), {"stride": 2, "padding": 1, "dilation": 2, "ceil_mode": True}),
    ("MaxPool2d", ((2, 3),), {"return_indices": True}),
    ("AvgPool2d", (2,), {}),
    ("AvgPool2d", (3, 2, 1), {"ceil_mode": True, "count_include_pad": False}),
    ("AvgPool2d", ((2, 3),), {"divisor_override": 2}),
    ("AdaptiveAvgPool2d", (1,), {}),
    ("AdaptiveAvgPool2d", ((3, None),), {}),
    ("AdaptiveAvgPool2d", ((5, 4),), {}),
]


@pytest.mark.parametrize(("name", "args", "kwargs"), CASES)
def test_pooling(name: str, args: tuple, kwargs: dict) -> None:
    theirs, ours = seeded_pair(name, *args, **kwargs)
    assert_same_step(theirs, ours, torch.randn(2, 3, 9, 10))
    assert_same_step(theirs, ours, torch.randn(3, 8, 8))  # unbatched
