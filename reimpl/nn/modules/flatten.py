"""``Flatten``: merges a range of dimensions into one (conv features to a Linear).

Mirrors ``torch/nn/modules/flatten.py``. Leaves out ``Unflatten``.
"""

from __future__ import annotations

from torch import Tensor

from ..._trace import mirrors
from .module import Module

__all__ = ["Flatten"]


@mirrors("torch.nn.modules.flatten.Flatten")
class Flatten(Module):
    """Flattens dims ``start_dim``..``end_dim``; the default keeps the batch dim."""

    __constants__ = ["start_dim", "end_dim"]
    start_dim: int
    end_dim: int

    def __init__(self, start_dim: int = 1, end_dim: int = -1) -> None:
        super().__init__()
        self.start_dim = start_dim
        self.end_dim = end_dim

    @mirrors("torch.nn.modules.flatten.Flatten.forward")
    def forward(self, input: Tensor) -> Tensor:
        """A view when possible, a copy otherwise (``Tensor.flatten``)."""
        return input.flatten(self.start_dim, self.end_dim)

    def extra_repr(self) -> str:
        """Shows the flattened range."""
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"
