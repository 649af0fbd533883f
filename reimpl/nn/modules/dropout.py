"""``Dropout``: zeroes random elements while training, does nothing in eval.

Mirrors ``torch/nn/modules/dropout.py``. The one behaviour that matters here is
that ``forward`` reads ``self.training``, which ``Module.train()``/``eval()``
set; the random mask itself is torch's kernel (so the same seed drops the same
elements). Leaves out ``Dropout1d/2d/3d``, ``AlphaDropout`` and
``FeatureAlphaDropout``.
"""

from __future__ import annotations

from torch import Tensor
from torch.nn import functional as F

from ..._trace import mirrors
from .module import Module

__all__ = ["Dropout"]


@mirrors("torch.nn.modules.dropout._DropoutNd")
class _DropoutNd(Module):
    """Checks and stores ``p`` and ``inplace`` for every dropout variant."""

    __constants__ = ["p", "inplace"]
    p: float
    inplace: bool

    def __init__(self, p: float = 0.5, inplace: bool = False) -> None:
        super().__init__()
        if p < 0 or p > 1:
            raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
        self.p = p
        self.inplace = inplace

    def extra_repr(self) -> str:
        """Shows ``p`` and ``inplace``."""
        return f"p={self.p}, inplace={self.inplace}"


@mirrors("torch.nn.modules.dropout.Dropout")
class Dropout(_DropoutNd):
    """Zeroes each element with probability ``p`` and scales the rest by 1/(1-p)."""

    @mirrors("torch.nn.modules.dropout.Dropout.forward")
    def forward(self, input: Tensor) -> Tensor:
        """Drops out in training mode only: this is where ``eval()`` takes effect."""
        return F.dropout(input, self.p, self.training, self.inplace)
