"""Upsample against torch."""

from __future__ import annotations

import pytest
import torch
from layer_parity import assert_same_step, seeded_pair

CASES = [
    {"scale_factor": 2},
    {"scale_factor": (2, 1.5), "mode": "nearest"},
    {"size": (5, 7), "mode": "bilinear"},
    {"scale_factor": 2, "mode": "bilinear", "align_corners": True},
    {"scale_factor": 1.7, "mode": "bicubic", "recompute_scale_factor": True},
]


@pytest.mark.parametrize("kwargs", CASES)
def test_upsample(kwargs: dict) -> None:
    theirs, ours = seeded_pair("Upsample", **kwargs)
    assert_same_step(theirs, ours, torch.randn(2, 3, 4, 6))


def test_upsample_stores_float_scale_and_name() -> None:
    _, ours = seeded_pair("Upsample", scale_factor=3)
    assert ours.scale_factor == 3.0 and isinstance(ours.scale_factor, float)
    assert ours.name == "Upsample"
