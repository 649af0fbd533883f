"""Conv1d, Conv2d and ConvTranspose2d against torch: init, step, repr, checks."""

from __future__ import annotations

import pytest
import torch
from layer_parity import (
    assert_raises_like_torch,
    assert_same_step,
    seeded_pair,
)

CONV1D = [
    ((2, 4, 3), {}),
    ((2, 4, 3), {"stride": 2, "padding": 1, "dilation": 2, "groups": 2, "bias": False}),
    ((2, 3, 4), {"padding": "same", "dilation": 3}),  # even kernel: extra pad on the right
    ((2, 3, 3), {"padding": "valid"}),
    ((2, 3, 3), {"padding": 2, "padding_mode": "circular"}),
]
CONV2D = [
    ((3, 4, 3), {}),
    ((3, 6, (3, 2)), {"stride": (2, 1), "padding": (1, 0), "groups": 3}),
    ((3, 4, 3), {"padding": "same", "dilation": 2, "padding_mode": "reflect"}),
    ((3, 4, (2, 4)), {"padding": "same"}),
    ((3, 4, 3), {"padding": 1, "padding_mode": "replicate", "bias": False}),
    ((3, 4, 3), {"padding": (2, 1), "padding_mode": "circular", "stride": 2}),
    ((3, 4, 1), {"dtype": torch.float64}),
]
CONVT2D = [
    ((3, 4, 3), {}),
    ((3, 4, 3), {"stride": 2, "padding": 1, "output_padding": 1}),
    ((4, 2, (2, 3)), {"stride": (2, 3), "groups": 2, "dilation": 2, "bias": False}),
]


SAME_PADDING_WARNING = "ignore:Using padding='same' with even kernel"


@pytest.mark.filterwarnings(SAME_PADDING_WARNING)
@pytest.mark.parametrize(("args", "kwargs"), CONV1D)
def test_conv1d(args: tuple, kwargs: dict) -> None:
    theirs, ours = seeded_pair("Conv1d", *args, **kwargs)
    assert_same_step(theirs, ours, torch.randn(2, args[0], 11))
    assert_same_step(theirs, ours, torch.randn(args[0], 9))  # unbatched


@pytest.mark.filterwarnings(SAME_PADDING_WARNING)
@pytest.mark.parametrize(("args", "kwargs"), CONV2D)
def test_conv2d(args: tuple, kwargs: dict) -> None:
    theirs, ours = seeded_pair("Conv2d", *args, **kwargs)
    x = torch.randn(2, args[0], 9, 8, dtype=kwargs.get("dtype", torch.float32))
    assert_same_step(theirs, ours, x)
    assert ours._reversed_padding_repeated_twice == theirs._reversed_padding_repeated_twice


@pytest.mark.parametrize(("args", "kwargs"), CONVT2D)
def test_conv_transpose2d(args: tuple, kwargs: dict) -> None:
    theirs, ours = seeded_pair("ConvTranspose2d", *args, **kwargs)
    assert ours.weight.shape == (args[0], args[1] // kwargs.get("groups", 1), *ours.kernel_size)
    assert_same_step(theirs, ours, torch.randn(2, args[0], 5, 6))


def test_conv_transpose2d_output_size() -> None:
    theirs, ours = seeded_pair("ConvTranspose2d", 4, 4, 3, stride=2, padding=1)
    x = torch.randn(1, 4, 6, 6)
    out = assert_same_step(theirs, ours, x, output_size=[12, 12])
    assert out.shape == (1, 4, 12, 12)
    assert_same_step(theirs, ours, x, output_size=torch.Size([1, 4, 11, 11]))
    assert_raises_like_torch(ValueError, lambda nn: _bad_output_size(nn, x, [20, 20]))
    assert_raises_like_torch(ValueError, lambda nn: _bad_output_size(nn, x, [11]))


def _bad_output_size(nn, x: torch.Tensor, size: list[int]) -> None:
    torch.manual_seed(0)
    nn.ConvTranspose2d(4, 4, 3, stride=2, padding=1)(x, output_size=size)


@pytest.mark.parametrize(
    "build",
    [
        lambda nn: nn.Conv2d(4, 4, 3, groups=0),
        lambda nn: nn.Conv2d(3, 4, 3, groups=2),
        lambda nn: nn.Conv2d(4, 3, 3, groups=2),
        lambda nn: nn.Conv2d(3, 4, 3, padding="full"),
        lambda nn: nn.Conv2d(3, 4, 3, padding="same", stride=2),
        lambda nn: nn.Conv1d(3, 4, 3, padding_mode="mirror"),
        lambda nn: nn.ConvTranspose2d(3, 4, 3, padding_mode="reflect"),
    ],
)
def test_argument_errors_match_torch(build) -> None:
    assert_raises_like_torch(ValueError, build)


def test_reset_parameters_channels_last_draws_like_contiguous() -> None:
    theirs, ours = seeded_pair("Conv2d", 3, 4, 3)
    theirs.to(memory_format=torch.channels_last)
    ours.to(memory_format=torch.channels_last)
    assert not ours.weight.is_contiguous()
    for m in (theirs, ours):
        torch.manual_seed(7)
        m.reset_parameters()
    assert torch.equal(theirs.weight, ours.weight)
    assert torch.equal(theirs.bias, ours.bias)
    assert_same_step(theirs, ours, torch.randn(1, 3, 5, 5))
