"""reimpl.nn.init draws exactly what torch.nn.init draws from the same seed."""

from __future__ import annotations

import math

import pytest
import torch

from reimpl.nn import init

SHAPES = [(5, 3), (4, 2, 3, 3), (6, 4, 5)]
CASES = [
    ("uniform_", {"a": -0.5, "b": 2.0}),
    ("normal_", {"mean": 1.0, "std": 0.3}),
    ("constant_", {"val": 0.25}),
    ("ones_", {}),
    ("zeros_", {}),
    ("xavier_uniform_", {"gain": 2.0}),
    ("xavier_normal_", {}),
    ("kaiming_uniform_", {"a": math.sqrt(5)}),
    ("kaiming_uniform_", {"mode": "fan_out", "nonlinearity": "relu"}),
    ("kaiming_normal_", {"a": 0.1}),
    ("kaiming_normal_", {"mode": "FAN_OUT", "nonlinearity": "tanh"}),
]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(("name", "kwargs"), CASES)
def test_same_values_as_torch(name: str, kwargs: dict, shape: tuple[int, ...]) -> None:
    ours, theirs = torch.empty(shape), torch.empty(shape)
    torch.manual_seed(3)
    assert getattr(init, name)(ours, **kwargs) is ours  # in place, returns its argument
    torch.manual_seed(3)
    getattr(torch.nn.init, name)(theirs, **kwargs)
    assert torch.equal(ours, theirs)


def test_generator_argument_and_no_autograd_record() -> None:
    p = torch.nn.Parameter(torch.empty(4, 3))
    init.kaiming_uniform_(p, generator=torch.Generator().manual_seed(1))
    q = torch.empty(4, 3)
    torch.nn.init.kaiming_uniform_(q, generator=torch.Generator().manual_seed(1))
    assert torch.equal(p.detach(), q)
    assert p.is_leaf and p.grad_fn is None  # filled under no_grad


@pytest.mark.parametrize(
    ("nonlinearity", "param"),
    [("linear", None), ("conv2d", None), ("sigmoid", None), ("tanh", None), ("relu", None),
     ("leaky_relu", None), ("leaky_relu", 0.2), ("leaky_relu", 3), ("selu", None)],
)  # fmt: skip
def test_calculate_gain(nonlinearity: str, param: float | None) -> None:
    assert init.calculate_gain(nonlinearity, param) == torch.nn.init.calculate_gain(
        nonlinearity, param
    )


@pytest.mark.parametrize(
    ("call", "exc"),
    [
        (lambda m: m.calculate_gain("softsign"), ValueError),
        (lambda m: m.calculate_gain("leaky_relu", True), ValueError),
        (lambda m: m.xavier_uniform_(torch.empty(3)), ValueError),
        (lambda m: m.kaiming_uniform_(torch.empty(3, 3), mode="fan_avg"), ValueError),
    ],
)
def test_errors_match_torch(call, exc: type[Exception]) -> None:
    with pytest.raises(exc) as theirs:
        call(torch.nn.init)
    with pytest.raises(exc, match=None) as ours:
        call(init)
    assert str(ours.value) == str(theirs.value)


def test_zero_element_tensor_warns_and_is_untouched() -> None:
    t = torch.empty(0, 3)
    with pytest.warns(UserWarning, match="zero-element"):
        assert init.kaiming_uniform_(t) is t
    with pytest.warns(UserWarning, match="zero-element"):
        assert init.kaiming_normal_(t) is t


@pytest.mark.parametrize("shape", SHAPES)
def test_fans(shape: tuple[int, ...]) -> None:
    t = torch.empty(shape)
    assert init._calculate_fan_in_and_fan_out(t) == torch.nn.init._calculate_fan_in_and_fan_out(t)
