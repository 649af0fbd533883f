"""Losses: ``MSELoss`` and ``CrossEntropyLoss``.

Mirrors ``torch/nn/modules/loss.py``. A loss is a module so it can hold its
options (``reduction``, ``ignore_index``, ``label_smoothing``) and, for
weighted losses, a class-weight *buffer*: it moves with ``.to()`` and appears
in ``state_dict`` when given. The arithmetic is ``F.mse_loss`` /
``F.cross_entropy``. The legacy ``size_average``/``reduce`` arguments are
translated with torch's own ``_Reduction.legacy_get_string`` (and its
warning). Leaves out every other loss.
"""

from __future__ import annotations

from torch import Tensor
from torch.nn import _reduction as _Reduction
from torch.nn import functional as F

from ..._trace import mirrors
from .module import Module

__all__ = ["CrossEntropyLoss", "MSELoss"]


@mirrors("torch.nn.modules.loss._Loss")
class _Loss(Module):
    """Stores ``reduction`` ('none' | 'mean' | 'sum'), translating legacy flags."""

    reduction: str

    def __init__(
        self,
        size_average: bool | None = None,
        reduce: bool | None = None,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        if size_average is not None or reduce is not None:
            self.reduction: str = _Reduction.legacy_get_string(size_average, reduce)
        else:
            self.reduction = reduction


@mirrors("torch.nn.modules.loss._WeightedLoss")
class _WeightedLoss(_Loss):
    """A loss with an optional per-class ``weight``, registered as a buffer."""

    def __init__(
        self,
        weight: Tensor | None = None,
        size_average: bool | None = None,
        reduce: bool | None = None,
        reduction: str = "mean",
    ) -> None:
        super().__init__(size_average, reduce, reduction)
        # a buffer, not a Parameter: it follows .to(device) but is never trained;
        # registering None keeps self.weight defined and out of state_dict
        self.register_buffer("weight", weight)
        self.weight: Tensor | None


@mirrors("torch.nn.modules.loss.MSELoss")
class MSELoss(_Loss):
    """The mean (or sum) of squared differences."""

    __constants__ = ["reduction"]

    @mirrors("torch.nn.modules.loss.MSELoss.forward")
    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        """Computes the loss by torch's kernel."""
        return F.mse_loss(input, target, reduction=self.reduction)


@mirrors("torch.nn.modules.loss.CrossEntropyLoss")
class CrossEntropyLoss(_WeightedLoss):
    """log-softmax plus negative log-likelihood, from raw logits.

    Targets are class indices (``ignore_index`` ones are skipped) or class
    probabilities; ``label_smoothing`` mixes the target with a uniform one.
    """

    __constants__ = ["ignore_index", "reduction", "label_smoothing"]
    ignore_index: int
    label_smoothing: float

    def __init__(
        self,
        weight: Tensor | None = None,
        size_average: bool | None = None,
        ignore_index: int = -100,
        reduce: bool | None = None,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__(weight, size_average, reduce, reduction)
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing

    @mirrors("torch.nn.modules.loss.CrossEntropyLoss.forward")
    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        """Computes the loss by torch's kernel."""
        return F.cross_entropy(
            input,
            target,
            weight=self.weight,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
            label_smoothing=self.label_smoothing,
        )
