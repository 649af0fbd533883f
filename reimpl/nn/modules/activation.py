"""Element-wise activations: ``ReLU``, ``LeakyReLU``, ``GELU``, ``Sigmoid``, ``Tanh``.

Mirrors ``torch/nn/modules/activation.py``. These modules hold no parameters;
they exist so the activation appears in a model's structure, its repr and its
trace. Leaves out every other activation (``PReLU``, ``Softmax``,
``MultiheadAttention`` ...).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F

from ..._trace import mirrors
from .module import Module

__all__ = ["GELU", "LeakyReLU", "ReLU", "Sigmoid", "Tanh"]


@mirrors("torch.nn.modules.activation.ReLU")
class ReLU(Module):
    """max(0, x); ``inplace=True`` overwrites the input to save memory."""

    __constants__ = ["inplace"]
    inplace: bool

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.inplace = inplace

    @mirrors("torch.nn.modules.activation.ReLU.forward")
    def forward(self, input: Tensor) -> Tensor:
        """Applies ReLU by torch's kernel."""
        return F.relu(input, inplace=self.inplace)

    def extra_repr(self) -> str:
        """Shows ``inplace=True`` only when set."""
        inplace_str = "inplace=True" if self.inplace else ""
        return inplace_str


@mirrors("torch.nn.modules.activation.Sigmoid")
class Sigmoid(Module):
    """1 / (1 + exp(-x))."""

    @mirrors("torch.nn.modules.activation.Sigmoid.forward")
    def forward(self, input: Tensor) -> Tensor:
        """Applies the logistic function."""
        return torch.sigmoid(input)


@mirrors("torch.nn.modules.activation.Tanh")
class Tanh(Module):
    """The hyperbolic tangent."""

    @mirrors("torch.nn.modules.activation.Tanh.forward")
    def forward(self, input: Tensor) -> Tensor:
        """Applies tanh."""
        return torch.tanh(input)


@mirrors("torch.nn.modules.activation.GELU")
class GELU(Module):
    """x·Φ(x); ``approximate='tanh'`` uses the cheaper tanh formula."""

    __constants__ = ["approximate"]
    approximate: str

    def __init__(self, approximate: str = "none") -> None:
        super().__init__()
        self.approximate = approximate

    @mirrors("torch.nn.modules.activation.GELU.forward")
    def forward(self, input: Tensor) -> Tensor:
        """Applies GELU by torch's kernel."""
        return F.gelu(input, approximate=self.approximate)

    def extra_repr(self) -> str:
        """Shows the approximation in use."""
        return f"approximate={self.approximate!r}"


@mirrors("torch.nn.modules.activation.LeakyReLU")
class LeakyReLU(Module):
    """x for x ≥ 0, ``negative_slope``·x otherwise: negative inputs keep a gradient."""

    __constants__ = ["inplace", "negative_slope"]
    inplace: bool
    negative_slope: float

    def __init__(self, negative_slope: float = 1e-2, inplace: bool = False) -> None:
        super().__init__()
        self.negative_slope = negative_slope
        self.inplace = inplace

    @mirrors("torch.nn.modules.activation.LeakyReLU.forward")
    def forward(self, input: Tensor) -> Tensor:
        """Applies LeakyReLU by torch's kernel."""
        return F.leaky_relu(input, self.negative_slope, self.inplace)

    def extra_repr(self) -> str:
        """Shows the slope, and ``inplace=True`` when set."""
        inplace_str = ", inplace=True" if self.inplace else ""
        return f"negative_slope={self.negative_slope}{inplace_str}"
