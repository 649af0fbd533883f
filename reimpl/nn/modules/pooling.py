"""Pooling: ``MaxPool2d``, ``AvgPool2d`` and ``AdaptiveAvgPool2d``.

Mirrors ``torch/nn/modules/pooling.py``. Pooling layers hold no parameters,
only their window arguments, stored as given (an int stays an int, which is
why ``MaxPool2d(2)`` prints ``kernel_size=2``); the kernels are torch's.
Leaves out the 1d/3d variants, ``MaxUnpool``, ``LPPool``,
``FractionalMaxPool`` and ``AdaptiveMaxPool``.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor
from torch.nn import functional as F

from ..._trace import mirrors
from .module import Module

__all__ = ["AdaptiveAvgPool2d", "AvgPool2d", "MaxPool2d"]


@mirrors("torch.nn.modules.pooling._MaxPoolNd")
class _MaxPoolNd(Module):
    """Stores a max-pool window; the stride defaults to the window (no overlap)."""

    __constants__ = [
        "kernel_size",
        "stride",
        "padding",
        "dilation",
        "return_indices",
        "ceil_mode",
    ]
    return_indices: bool
    ceil_mode: bool

    def __init__(
        self,
        kernel_size: Any,
        stride: Any | None = None,
        padding: Any = 0,
        dilation: Any = 1,
        return_indices: bool = False,
        ceil_mode: bool = False,
    ) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride if (stride is not None) else kernel_size
        self.padding = padding
        self.dilation = dilation
        self.return_indices = return_indices
        self.ceil_mode = ceil_mode

    def extra_repr(self) -> str:
        """Shows the window arguments."""
        return (
            "kernel_size={kernel_size}, stride={stride}, padding={padding}"
            ", dilation={dilation}, ceil_mode={ceil_mode}".format(**self.__dict__)
        )


@mirrors("torch.nn.modules.pooling.MaxPool2d")
class MaxPool2d(_MaxPoolNd):
    """The maximum of each window of an (N, C, H, W) input."""

    @mirrors("torch.nn.modules.pooling.MaxPool2d.forward")
    def forward(self, input: Tensor) -> Any:
        """Pools by torch's kernel; returns (output, indices) if ``return_indices``."""
        return F.max_pool2d(
            input,
            self.kernel_size,
            self.stride,
            self.padding,
            self.dilation,
            ceil_mode=self.ceil_mode,
            return_indices=self.return_indices,
        )


@mirrors("torch.nn.modules.pooling._AvgPoolNd")
class _AvgPoolNd(Module):
    """What average pools share: their constants and repr."""

    __constants__ = [
        "kernel_size",
        "stride",
        "padding",
        "ceil_mode",
        "count_include_pad",
    ]

    def extra_repr(self) -> str:
        """Shows kernel, stride and padding only (as torch does)."""
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


@mirrors("torch.nn.modules.pooling.AvgPool2d")
class AvgPool2d(_AvgPoolNd):
    """The mean of each window; padding counts as zeros unless told otherwise."""

    __constants__ = [
        "kernel_size",
        "stride",
        "padding",
        "ceil_mode",
        "count_include_pad",
        "divisor_override",
    ]

    kernel_size: Any
    stride: Any
    padding: Any
    ceil_mode: bool
    count_include_pad: bool

    def __init__(
        self,
        kernel_size: Any,
        stride: Any | None = None,
        padding: Any = 0,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
        divisor_override: int | None = None,
    ) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride if (stride is not None) else kernel_size
        self.padding = padding
        self.ceil_mode = ceil_mode
        self.count_include_pad = count_include_pad
        self.divisor_override = divisor_override

    @mirrors("torch.nn.modules.pooling.AvgPool2d.forward")
    def forward(self, input: Tensor) -> Tensor:
        """Pools by torch's kernel."""
        return F.avg_pool2d(
            input,
            self.kernel_size,
            self.stride,
            self.padding,
            self.ceil_mode,
            self.count_include_pad,
            self.divisor_override,
        )


@mirrors("torch.nn.modules.pooling._AdaptiveAvgPoolNd")
class _AdaptiveAvgPoolNd(Module):
    """Stores the wanted output size; the window adapts to the input size."""

    __constants__ = ["output_size"]

    def __init__(self, output_size: Any) -> None:
        super().__init__()
        self.output_size = output_size

    def extra_repr(self) -> str:
        """Shows the output size."""
        return f"output_size={self.output_size}"


@mirrors("torch.nn.modules.pooling.AdaptiveAvgPool2d")
class AdaptiveAvgPool2d(_AdaptiveAvgPoolNd):
    """Averages to a fixed (H, W) whatever the input size: a classifier head's friend."""

    @mirrors("torch.nn.modules.pooling.AdaptiveAvgPool2d.forward")
    def forward(self, input: Tensor) -> Tensor:
        """Pools by torch's kernel."""
        return F.adaptive_avg_pool2d(input, self.output_size)
