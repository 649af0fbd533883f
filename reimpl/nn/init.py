"""Weight initialisers, so a reader sees what ``reset_parameters`` draws.

Mirrors ``torch/nn/init.py``. The functions fill real torch tensors in place
under ``torch.no_grad()`` with the same random calls in the same order as
torch, so a model built here from a seed gets torch's weights bit for bit.
Leaves out ``__torch_function__`` dispatch, ``trunc_normal_``, ``orthogonal_``,
``sparse_``, ``dirac_``, ``eye_`` and the deprecated non-underscore aliases.
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import Tensor

from .._trace import mirrors

__all__ = [
    "calculate_gain",
    "constant_",
    "kaiming_normal_",
    "kaiming_uniform_",
    "normal_",
    "ones_",
    "uniform_",
    "xavier_normal_",
    "xavier_uniform_",
    "zeros_",
]


# The _no_grad_* helpers exist because initialising a Parameter is not an
# operation autograd should record: it would make the leaf non-leaf.


@mirrors("torch.nn.init._no_grad_uniform_")
def _no_grad_uniform_(
    tensor: Tensor, a: float, b: float, generator: torch.Generator | None = None
) -> Tensor:
    with torch.no_grad():
        return tensor.uniform_(a, b, generator=generator)


@mirrors("torch.nn.init._no_grad_normal_")
def _no_grad_normal_(
    tensor: Tensor, mean: float, std: float, generator: torch.Generator | None = None
) -> Tensor:
    with torch.no_grad():
        return tensor.normal_(mean, std, generator=generator)


@mirrors("torch.nn.init._no_grad_fill_")
def _no_grad_fill_(tensor: Tensor, val: float) -> Tensor:
    with torch.no_grad():
        return tensor.fill_(val)


@mirrors("torch.nn.init._no_grad_zero_")
def _no_grad_zero_(tensor: Tensor) -> Tensor:
    with torch.no_grad():
        return tensor.zero_()


@mirrors("torch.nn.init.calculate_gain")
def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """The factor that keeps activations' variance stable through a nonlinearity."""
    linear_fns = [
        "linear",
        "conv1d",
        "conv2d",
        "conv3d",
        "conv_transpose1d",
        "conv_transpose2d",
        "conv_transpose3d",
    ]
    if nonlinearity in linear_fns or nonlinearity == "sigmoid":
        return 1
    elif nonlinearity == "tanh":
        return 5.0 / 3
    elif nonlinearity == "relu":
        return math.sqrt(2.0)
    elif nonlinearity == "leaky_relu":
        if param is None:
            negative_slope = 0.01
        elif (not isinstance(param, bool) and isinstance(param, int)) or isinstance(param, float):
            # True/False are instances of int, hence the explicit bool check
            negative_slope = param
        else:
            raise ValueError(f"negative_slope {param} not a valid number")
        return math.sqrt(2.0 / (1 + negative_slope**2))
    elif nonlinearity == "selu":
        return 3.0 / 4
    else:
        raise ValueError(f"Unsupported nonlinearity {nonlinearity}")


@mirrors("torch.nn.init.uniform_")
def uniform_(
    tensor: Tensor, a: float = 0.0, b: float = 1.0, generator: torch.Generator | None = None
) -> Tensor:
    """Fills ``tensor`` from U(a, b)."""
    return _no_grad_uniform_(tensor, a, b, generator)


@mirrors("torch.nn.init.normal_")
def normal_(
    tensor: Tensor, mean: float = 0.0, std: float = 1.0, generator: torch.Generator | None = None
) -> Tensor:
    """Fills ``tensor`` from N(mean, std²); Embedding's default."""
    return _no_grad_normal_(tensor, mean, std, generator)


@mirrors("torch.nn.init.constant_")
def constant_(tensor: Tensor, val: float) -> Tensor:
    """Fills ``tensor`` with ``val``."""
    return _no_grad_fill_(tensor, val)


@mirrors("torch.nn.init.ones_")
def ones_(tensor: Tensor) -> Tensor:
    """Fills ``tensor`` with ones (a norm layer's weight)."""
    return _no_grad_fill_(tensor, 1.0)


@mirrors("torch.nn.init.zeros_")
def zeros_(tensor: Tensor) -> Tensor:
    """Fills ``tensor`` with zeros (a norm layer's bias)."""
    return _no_grad_zero_(tensor)


@mirrors("torch.nn.init._calculate_fan_in_and_fan_out")
def _calculate_fan_in_and_fan_out(tensor: Tensor) -> tuple[int, int]:
    """Inputs and outputs one weight element connects, counting the kernel window."""
    dimensions = tensor.dim()
    if dimensions < 2:
        raise ValueError(
            "Fan in and fan out can not be computed for tensor with fewer than 2 dimensions"
        )
    num_input_fmaps = tensor.size(1)
    num_output_fmaps = tensor.size(0)
    receptive_field_size = 1
    if tensor.dim() > 2:
        # math.prod is not always available, accumulate the product manually
        for s in tensor.shape[2:]:
            receptive_field_size *= s
    fan_in = num_input_fmaps * receptive_field_size
    fan_out = num_output_fmaps * receptive_field_size
    return fan_in, fan_out


@mirrors("torch.nn.init.xavier_uniform_")
def xavier_uniform_(
    tensor: Tensor, gain: float = 1.0, generator: torch.Generator | None = None
) -> Tensor:
    """Glorot uniform: bound from fan-in plus fan-out."""
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    std = gain * math.sqrt(2.0 / float(fan_in + fan_out))
    a = math.sqrt(3.0) * std  # a uniform U(-a, a) has standard deviation a / sqrt(3)
    return _no_grad_uniform_(tensor, -a, a, generator)


@mirrors("torch.nn.init.xavier_normal_")
def xavier_normal_(
    tensor: Tensor, gain: float = 1.0, generator: torch.Generator | None = None
) -> Tensor:
    """Glorot normal: std from fan-in plus fan-out."""
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    std = gain * math.sqrt(2.0 / float(fan_in + fan_out))
    return _no_grad_normal_(tensor, 0.0, std, generator)


@mirrors("torch.nn.init._calculate_correct_fan")
def _calculate_correct_fan(tensor: Tensor, mode: str) -> int:
    mode = mode.lower()
    valid_modes = ["fan_in", "fan_out"]
    if mode not in valid_modes:
        raise ValueError(f"Mode {mode} not supported, please use one of {valid_modes}")
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    return fan_in if mode == "fan_in" else fan_out


@mirrors("torch.nn.init.kaiming_uniform_")
def kaiming_uniform_(
    tensor: Tensor,
    a: float = 0,
    mode: str = "fan_in",
    nonlinearity: str = "leaky_relu",
    generator: torch.Generator | None = None,
) -> Tensor:
    """He uniform; Linear and Conv pass ``a=sqrt(5)``, giving U(±1/sqrt(fan_in))."""
    if 0 in tensor.shape:
        warnings.warn("Initializing zero-element tensors is a no-op", stacklevel=2)
        return tensor
    fan = _calculate_correct_fan(tensor, mode)
    gain = calculate_gain(nonlinearity, a)
    std = gain / math.sqrt(fan)
    bound = math.sqrt(3.0) * std  # Calculate uniform bounds from standard deviation
    with torch.no_grad():
        return tensor.uniform_(-bound, bound, generator=generator)


@mirrors("torch.nn.init.kaiming_normal_")
def kaiming_normal_(
    tensor: Tensor,
    a: float = 0,
    mode: str = "fan_in",
    nonlinearity: str = "leaky_relu",
    generator: torch.Generator | None = None,
) -> Tensor:
    """He normal: N(0, gain² / fan)."""
    if 0 in tensor.shape:
        warnings.warn("Initializing zero-element tensors is a no-op", stacklevel=2)
        return tensor
    fan = _calculate_correct_fan(tensor, mode)
    gain = calculate_gain(nonlinearity, a)
    std = gain / math.sqrt(fan)
    with torch.no_grad():
        return tensor.normal_(0, std, generator=generator)
