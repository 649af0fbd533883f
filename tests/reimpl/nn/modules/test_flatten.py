"""Flatten against torch."""

from __future__ import annotations

import pytest
import torch
from layer_parity import assert_same_step, seeded_pair


@pytest.mark.parametrize(
    ("args", "shape"), [((), (2, 3, 4, 5)), ((0, 2), (2, 3, 4, 5)), ((-2,), (2, 3, 4))]
)
def test_flatten(args: tuple, shape: tuple) -> None:
    theirs, ours = seeded_pair("Flatten", *args)
    assert_same_step(theirs, ours, torch.randn(shape))
