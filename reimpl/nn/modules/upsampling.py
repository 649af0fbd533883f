"""``Upsample``: resizes by a scale factor or to a size (a U-Net decoder's step).

Mirrors ``torch/nn/modules/upsampling.py``. The work is ``F.interpolate``.
Leaves out the deprecated ``UpsamplingNearest2d`` and ``UpsamplingBilinear2d``.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor
from torch.nn import functional as F

from ..._trace import mirrors
from .module import Module

__all__ = ["Upsample"]


@mirrors("torch.nn.modules.upsampling.Upsample")
class Upsample(Module):
    """Upsamples 1d/2d/3d data; ``size`` or ``scale_factor``, not both."""

    __constants__ = [
        "size",
        "scale_factor",
        "mode",
        "align_corners",
        "name",
        "recompute_scale_factor",
    ]
    name: str
    size: Any
    scale_factor: Any
    mode: str
    align_corners: bool | None
    recompute_scale_factor: bool | None

    def __init__(
        self,
        size: Any = None,
        scale_factor: Any = None,
        mode: str = "nearest",
        align_corners: bool | None = None,
        recompute_scale_factor: bool | None = None,
    ) -> None:
        super().__init__()
        self.name = type(self).__name__
        self.size = size
        # stored as floats, so Upsample(scale_factor=2) prints scale_factor=2.0
        if isinstance(scale_factor, tuple):
            self.scale_factor = tuple(float(factor) for factor in scale_factor)
        else:
            self.scale_factor = float(scale_factor) if scale_factor else None
        self.mode = mode
        self.align_corners = align_corners
        self.recompute_scale_factor = recompute_scale_factor

    @mirrors("torch.nn.modules.upsampling.Upsample.forward")
    def forward(self, input: Tensor) -> Tensor:
        """Resizes by ``F.interpolate``."""
        return F.interpolate(
            input,
            self.size,
            self.scale_factor,
            self.mode,
            self.align_corners,
            recompute_scale_factor=self.recompute_scale_factor,
        )

    def __setstate__(self, state: dict) -> None:
        if "recompute_scale_factor" not in state:
            state["recompute_scale_factor"] = True

        super().__setstate__(state)

    def extra_repr(self) -> str:
        """Shows the scale factor (or the size) and the mode."""
        if self.scale_factor is not None:
            info = "scale_factor=" + repr(self.scale_factor)
        else:
            info = "size=" + repr(self.size)
        info += ", mode=" + repr(self.mode)
        return info
