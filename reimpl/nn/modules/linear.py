"""Linear layers: ``Identity`` and ``Linear``.

Mirrors ``torch/nn/modules/linear.py``. Leaves out ``Bilinear``, ``LazyLinear``
and ``NonDynamicallyQuantizableLinear``. The matrix product itself is
``F.linear`` (torch's kernel); what is ours is the parameter layout and the
initialisation, which draws the same random numbers as torch's.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor
from torch.nn import functional as F

from ..._trace import mirrors
from .. import init
from ..parameter import Parameter
from .module import Module

__all__ = ["Identity", "Linear"]


@mirrors("torch.nn.modules.linear.Identity")
class Identity(Module):
    """Returns its input; a placeholder that keeps a model's structure (and names)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()

    @mirrors("torch.nn.modules.linear.Identity.forward")
    def forward(self, input: Tensor) -> Tensor:
        """Returns ``input`` unchanged."""
        return input


@mirrors("torch.nn.modules.linear.Linear")
class Linear(Module):
    """y = x Aᵀ + b, with A of shape (out_features, in_features)."""

    __constants__ = ["in_features", "out_features"]
    in_features: int
    out_features: int
    weight: Tensor

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        factory_kwargs = {"device": device, "dtype": dtype}
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        # torch.empty: the values are placeholders until reset_parameters draws them
        self.weight = Parameter(torch.empty((out_features, in_features), **factory_kwargs))
        if bias:
            self.bias = Parameter(torch.empty(out_features, **factory_kwargs))
        else:
            # registering None keeps "bias" a known parameter name (self.bias is None)
            self.register_parameter("bias", None)
        self.reset_parameters()

    @mirrors("torch.nn.modules.linear.Linear.reset_parameters")
    def reset_parameters(self) -> None:
        """Draws weight then bias, in torch's order, so a seed gives torch's values."""
        # Setting a=sqrt(5) in kaiming_uniform is the same as initializing with
        # uniform(-1/sqrt(in_features), 1/sqrt(in_features)).
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in, _ = init._calculate_fan_in_and_fan_out(self.weight)
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
            init.uniform_(self.bias, -bound, bound)

    @mirrors("torch.nn.modules.linear.Linear.forward")
    def forward(self, input: Tensor) -> Tensor:
        """The affine map, by torch's kernel."""
        return F.linear(input, self.weight, self.bias)

    def extra_repr(self) -> str:
        """Shown inside ``Linear(...)`` by ``Module.__repr__``."""
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}"
        )
