"""The element loop behind reimpl's fused Adam, compiled by numba.

``_fused_adam`` in ``adam.py`` (where torch calls its C++ ``torch._fused_adam_``)
hands each parameter here as flat numpy views. The loop is plain Python
(``_adam_fused_kernel_py``, what ``NUMBA_DISABLE_JIT=1`` runs) that numba
compiles on first use; a second variant runs the same code with numba's
``prange`` (threads) for large tensors.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any

import numpy as np
from torch import Tensor

# The reference loop below walks the elements with ``prange``: plain ``range`` when
# it runs as Python, numba's parallel range (elements split over threads, as
# torch's fused kernel splits them with ``parallel_for``) once compiled.
prange = range


def _adam_fused_kernel_py(
    param: np.ndarray,
    grad: np.ndarray,
    exp_avg: np.ndarray,
    exp_avg_sq: np.ndarray,
    max_exp_avg_sq: np.ndarray,
    step_size: Any,
    bias_correction2_sqrt: Any,
    lerp_weight: Any,
    one_minus_weight: Any,
    beta2: Any,
    beta2_coef: Any,
    eps: Any,
    weight_decay: Any,
    decay_factor: Any,
    maximize: bool,
    amsgrad: bool,
    decoupled: bool,
) -> None:
    """The reference Adam element loop: the whole rule per element, in one pass.

    Scalars arrive already rounded to the arrays' dtype (float32 math for
    float32 params, as torch's fused CPU kernel does). The lerp takes the
    branch torch's ``lerp`` takes for a weight below 0.5 (``1 - beta1``) or not.
    """
    small = abs(lerp_weight) < 0.5
    for d in prange(param.shape[0]):
        g = grad[d]
        if maximize:
            g = -g
        p = param[d]
        if weight_decay != 0:
            if decoupled:
                p = p * decay_factor
            else:
                g = g + p * weight_decay
        m = exp_avg[d]
        m = m + lerp_weight * (g - m) if small else g - (g - m) * one_minus_weight
        exp_avg[d] = m
        v = exp_avg_sq[d] * beta2
        v = v + beta2_coef * g * g
        exp_avg_sq[d] = v
        if amsgrad:
            v = max(max_exp_avg_sq[d], v)
            max_exp_avg_sq[d] = v
        denom = np.sqrt(v) / bias_correction2_sqrt + eps
        param[d] = p - step_size * m / denom


_compiled_kernels: dict[bool, Callable[..., None]] = {}


def _adam_fused_kernel(parallel: bool = False) -> Callable[..., None]:
    """The numba-compiled kernel, built on first use so importing reimpl stays cheap.

    ``parallel=True`` compiles the same code with ``prange`` split over threads.
    """
    kernel = _compiled_kernels.get(parallel)
    if kernel is None:
        import numba

        ref = _adam_fused_kernel_py
        if parallel:  # the same code object, seeing numba's prange where Python sees range
            scope = {**globals(), "prange": numba.prange}
            ref = types.FunctionType(ref.__code__, scope, "_adam_fused_kernel_parallel")
            # numba names its on-disk cache after __qualname__: keep the variants apart
            ref.__qualname__ = ref.__name__
        # cache=True keeps the machine code on disk: later processes skip the compile
        kernel = numba.njit(parallel=parallel, cache=True, nogil=True)(ref)
        _compiled_kernels[parallel] = kernel
    return kernel


def _flat(t: Tensor) -> np.ndarray:
    """A writable 1-D numpy view of a contiguous CPU tensor's memory."""
    return t.detach().view(-1).numpy()
