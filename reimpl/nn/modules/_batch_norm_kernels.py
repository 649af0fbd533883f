"""The native batch-norm kernels that SyncBatchNorm calls, as numba CPU kernels.

Mirrors the ATen operators ``torch.batch_norm_stats``,
``torch.batch_norm_gather_stats_with_counts``, ``torch.batch_norm_elemt``,
``torch.batch_norm_backward_reduce`` and ``torch.batch_norm_backward_elemt``.
Torch implements them in C++/CUDA (``aten/src/ATen/native/cuda/Normalization.cu``
and ``Normalization.cuh``) and registers them for CUDA only, which is why
upstream SyncBatchNorm cannot run on a CPU. Here each is a plain Python loop
nest, compiled by numba (``parallel=True``; ``cache=True``: compiled once per
machine). Two memory layouts, two loop orders: contiguous (N, C, L) inputs go
one channel per ``prange`` step; channels-last (N, H, W, C) memory and 2D
(N, C) inputs are walked as (M, C) rows (row blocks in parallel), so neither
layout is copied. The plain Python functions stay reachable as the reference
(``kernel.py_func``, or every kernel at once inside :func:`python_reference`),
and the file runs unchanged with ``NUMBA_DISABLE_JIT=1``. Numba's threads come
from its threading layer (OpenMP here): safe from several Python threads, but
not in a child *forked* after the parent ran a kernel, so start ranks with
spawn (``torch.multiprocessing.spawn``, ``torchrun``), as the samples do.

Numerics: sums are accumulated in float64 whatever the input dtype, and the
variance is computed in two passes (mean first, then squared deviations), so
there is no ``E[x^2] - E[x]^2`` cancellation. Statistics from several ranks
are merged with Chan's parallel Welford update, exactly as the CUDA kernel
does.

Left out: float16/bfloat16 inputs (numba has no fast half type; a TypeError
says so) and CUDA (CUDA tensors use torch's own operators). An input that is
neither contiguous nor channels-last (a transposed view) is copied first.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from numba import njit, prange

from reimpl._trace import mirrors

__all__ = [
    "batch_norm_backward_elemt",
    "batch_norm_backward_reduce",
    "batch_norm_elemt",
    "batch_norm_gather_stats_with_counts",
    "batch_norm_stats",
    "python_reference",
]

# Reassociation lets LLVM vectorise the per-channel sums (several partial
# accumulators); it keeps IEEE semantics for NaN/inf, unlike fastmath=True.
_FASTMATH = {"reassoc", "contract", "nsz", "arcp"}


def _jit(fn, parallel: bool = True):
    """Compiles a kernel once per machine; ``.py_func`` keeps the Python source."""
    return njit(parallel=parallel, cache=True, fastmath=_FASTMATH)(fn)


# --------------------------------------------------------------------------
# The kernels: plain loops over (N, C, L) arrays, one channel per prange step.
# --------------------------------------------------------------------------


def _stats_kernel(x, eps, mean, invstd):
    """Per-channel mean and 1/sqrt(biased var + eps), two passes in float64."""
    n_batch, channels, length = x.shape
    count = n_batch * length
    for c in prange(channels):
        total = 0.0
        for n in range(n_batch):
            for i in range(length):
                total += x[n, c, i]
        m = total / count
        squares = 0.0
        for n in range(n_batch):
            for i in range(length):
                d = x[n, c, i] - m
                squares += d * d
        var = squares / count
        mean[c] = m
        # The CUDA kernel returns 0 rather than inf for a zero denominator.
        invstd[c] = 0.0 if var + eps == 0.0 else 1.0 / math.sqrt(var + eps)


def _gather_stats_kernel(
    mean_all,
    invstd_all,
    counts,
    eps,
    momentum,
    running_mean,
    running_var,
    update_mean,
    update_var,
    mean,
    invstd,
):
    """Merges per-rank (mean, invstd, count) with Chan's parallel Welford update."""
    world, channels = mean_all.shape
    for c in range(channels):
        avg = 0.0
        var_n = 0.0  # sum of squared deviations from avg, over all ranks
        n = 0.0
        for j in range(world):
            count = counts[j]
            m = mean_all[j, c]
            v = 1.0 / invstd_all[j, c]
            v = (v * v - eps) * count  # this rank's sum of squared deviations
            factor = 1.0 / (n + count)
            var_n += v + (avg - m) * (avg - m) * n * count * factor
            avg = n * factor * avg + count * factor * m
            n += count
        mean[c] = avg
        var = var_n / n
        invstd[c] = 0.0 if var + eps == 0.0 else 1.0 / math.sqrt(var + eps)
        if update_mean:
            running_mean[c] = momentum * avg + (1.0 - momentum) * running_mean[c]
        if update_var:
            # running_var tracks the unbiased estimate, like torch.var(correction=1).
            unbiased = var_n / (n - 1.0)
            running_var[c] = momentum * unbiased + (1.0 - momentum) * running_var[c]


def _elemt_kernel(x, weight, bias, mean, invstd, out):
    """y = (x - mean) * invstd * weight + bias, one fused pass per channel."""
    n_batch, channels, length = x.shape
    for c in prange(channels):
        m = mean[c]
        scale = invstd[c] * weight[c]
        shift = bias[c]
        for n in range(n_batch):
            for i in range(length):
                out[n, c, i] = (x[n, c, i] - m) * scale + shift


def _backward_reduce_kernel(dy, x, mean, sum_dy, sum_dy_xmu):
    """Per-channel sum(dy) and sum(dy * (x - mean)), accumulated in float64."""
    n_batch, channels, length = x.shape
    for c in prange(channels):
        m = mean[c]
        s = 0.0
        sx = 0.0
        for n in range(n_batch):
            for i in range(length):
                g = dy[n, c, i]
                s += g
                sx += g * (x[n, c, i] - m)
        sum_dy[c] = s
        sum_dy_xmu[c] = sx


def _backward_elemt_kernel(dy, x, mean, invstd, weight, sum_dy, sum_dy_xmu, total, dx):
    """dx = (dy - mean(dy) - (x - mean) * invstd^2 * mean(dy * xmu)) * invstd * w."""
    n_batch, channels, length = x.shape
    norm = 1.0 / total
    for c in prange(channels):
        m = mean[c]
        mean_dy = sum_dy[c] * norm
        istd = invstd[c]
        proj = istd * istd * sum_dy_xmu[c] * norm
        scale = istd * weight[c]
        for n in range(n_batch):
            for i in range(length):
                dx[n, c, i] = (dy[n, c, i] - mean_dy - (x[n, c, i] - m) * proj) * scale


# --------------------------------------------------------------------------
# The same kernels over (M, C) rows: channels-last (N, H, W, C) memory and 2D
# (N, C) inputs, where a channel is strided. The element-wise kernels go row
# by row; the reductions sum a fixed number of row blocks in parallel (fixed,
# so the result does not depend on the thread count) and add the blocks up.
# --------------------------------------------------------------------------

_BLOCKS = 64


def _block_sums(partial):
    """Adds up the row blocks' partial sums (serial: blocks x C numbers)."""
    blocks, channels = partial.shape
    total = np.empty(channels)
    for c in range(channels):
        acc = 0.0
        for k in range(blocks):
            acc += partial[k, c]
        total[c] = acc
    return total


def _zeros(blocks, channels):
    """A float64 accumulator. (np.zeros would become a parfor: slow to compile.)"""
    out = np.empty((blocks, channels))
    for k in range(blocks):
        for c in range(channels):
            out[k, c] = 0.0
    return out


def _stats_rows_kernel(x, eps, mean, invstd):
    """_stats_kernel for (M, C) rows: block partial sums, then squared deviations."""
    rows, channels = x.shape
    blocks = min(rows, _BLOCKS)
    partial = _zeros(blocks, channels)
    for k in prange(blocks):
        for m in range(k * rows // blocks, (k + 1) * rows // blocks):
            for c in range(channels):
                partial[k, c] += x[m, c]
    mu = _block_sums(partial)
    for c in range(channels):
        mu[c] /= rows
    partial = _zeros(blocks, channels)
    for k in prange(blocks):
        for m in range(k * rows // blocks, (k + 1) * rows // blocks):
            for c in range(channels):
                d = x[m, c] - mu[c]
                partial[k, c] += d * d
    squares = _block_sums(partial)
    for c in range(channels):
        var = squares[c] / rows
        mean[c] = mu[c]
        invstd[c] = 0.0 if var + eps == 0.0 else 1.0 / math.sqrt(var + eps)


def _elemt_rows_kernel(x, weight, bias, mean, invstd, out):
    """_elemt_kernel for (M, C) rows."""
    rows, channels = x.shape
    for m in prange(rows):
        for c in range(channels):
            out[m, c] = (x[m, c] - mean[c]) * (invstd[c] * weight[c]) + bias[c]


def _backward_reduce_rows_kernel(dy, x, mean, sum_dy, sum_dy_xmu):
    """_backward_reduce_kernel for (M, C) rows."""
    rows, channels = x.shape
    blocks = min(rows, _BLOCKS)
    partial_dy = _zeros(blocks, channels)
    partial_dy_xmu = _zeros(blocks, channels)
    for k in prange(blocks):
        for m in range(k * rows // blocks, (k + 1) * rows // blocks):
            for c in range(channels):
                g = dy[m, c]
                partial_dy[k, c] += g
                partial_dy_xmu[k, c] += g * (x[m, c] - mean[c])
    totals_dy = _block_sums(partial_dy)
    totals_dy_xmu = _block_sums(partial_dy_xmu)
    for c in range(channels):
        sum_dy[c] = totals_dy[c]
        sum_dy_xmu[c] = totals_dy_xmu[c]


def _backward_elemt_rows_kernel(dy, x, mean, invstd, weight, sum_dy, sum_dy_xmu, total, dx):
    """_backward_elemt_kernel for (M, C) rows."""
    rows, channels = x.shape
    norm = 1.0 / total
    for m in prange(rows):
        for c in range(channels):
            istd = invstd[c]
            proj = istd * istd * sum_dy_xmu[c] * norm
            g = dy[m, c] - sum_dy[c] * norm - (x[m, c] - mean[c]) * proj
            dx[m, c] = g * (istd * weight[c])


_block_sums = njit(cache=True)(_block_sums)
_zeros = njit(cache=True)(_zeros)

_COMPILED = {
    "stats": _jit(_stats_kernel),
    # C x world_size numbers: threads would cost more than they save.
    "gather_stats": _jit(_gather_stats_kernel, parallel=False),
    "elemt": _jit(_elemt_kernel),
    "backward_reduce": _jit(_backward_reduce_kernel),
    "backward_elemt": _jit(_backward_elemt_kernel),
    "stats_rows": _jit(_stats_rows_kernel),
    "elemt_rows": _jit(_elemt_rows_kernel),
    "backward_reduce_rows": _jit(_backward_reduce_rows_kernel),
    "backward_elemt_rows": _jit(_backward_elemt_rows_kernel),
}
_kernels = dict(_COMPILED)
"""The kernels the wrappers call: compiled, or the Python reference."""


_HELPERS = {"_block_sums": _block_sums, "_zeros": _zeros}


@contextmanager
def python_reference() -> Iterator[None]:
    """Runs the plain-Python kernels (and helpers) instead of compiled ones; for tests."""
    saved = dict(_kernels)
    _kernels.update({k: getattr(f, "py_func", f) for k, f in _COMPILED.items()})
    # The row kernels look their helpers up as module globals when run as Python.
    globals().update({k: getattr(f, "py_func", f) for k, f in _HELPERS.items()})
    try:
        yield
    finally:
        _kernels.update(saved)
        globals().update(_HELPERS)


# --------------------------------------------------------------------------
# Tensor wrappers with torch's signatures: tensors in, tensors out.
# --------------------------------------------------------------------------

_NUMPY_DTYPE = {torch.float32: np.float32, torch.float64: np.float64}


def _check(t: torch.Tensor, what: str) -> None:
    """Rejects what the kernels do not handle, with torch-like wording."""
    if t.dtype not in _NUMPY_DTYPE:
        raise TypeError(
            f"{what}: the numba batch-norm kernels support float32 and float64, got {t.dtype}"
        )
    if t.device.type != "cpu":
        raise RuntimeError(f"{what}: the numba batch-norm kernels run on CPU, got {t.device}")


def _ncl(t: torch.Tensor) -> np.ndarray:
    """A (N, C, L) C-contiguous numpy view (a copy if strided)."""
    t = t.detach().contiguous()
    return t.reshape(t.shape[0], t.shape[1], math.prod(t.shape[2:])).numpy()


def _rows(t: torch.Tensor) -> np.ndarray:
    """A (M, C) numpy view, channel last (a view for channels-last memory and 2D)."""
    t = t.detach().movedim(1, -1).contiguous()
    return t.reshape(-1, t.shape[-1]).numpy()


_CHANNELS_LAST = {4: torch.channels_last, 5: torch.channels_last_3d}


def _channels_last(t: torch.Tensor) -> bool:
    """Whether ``t`` is best walked as (M, C) rows: 2D, or channels-last memory."""
    if t.dim() == 2:
        return True
    if t.is_contiguous():
        return False
    fmt = _CHANNELS_LAST.get(t.dim())
    return fmt is not None and t.is_contiguous(memory_format=fmt)


def _empty_like(t: torch.Tensor) -> torch.Tensor:
    """An output laid out as the kernels write it: channels-last kept, else contiguous.

    Torch's operators do the same (``suggest_memory_format``), and it makes
    ``_rows``/``_ncl`` of the output a view, not a copy.
    """
    fmt = _CHANNELS_LAST.get(t.dim()) if _channels_last(t) else None
    return torch.empty_like(t, memory_format=fmt or torch.contiguous_format)


def _layout(t: torch.Tensor) -> tuple[str, Any]:
    """The kernel-name suffix and the numpy view that suit ``t``'s memory layout."""
    return ("_rows", _rows) if _channels_last(t) else ("", _ncl)


def _vec(t: torch.Tensor | None, fill: float, like: torch.Tensor) -> np.ndarray:
    """A per-channel vector as contiguous numpy; ``fill`` stands in for None."""
    if t is None:
        return np.full(like.shape[1], fill, dtype=_NUMPY_DTYPE[like.dtype])
    return t.detach().contiguous().numpy()


@mirrors("torch.batch_norm_stats")
def batch_norm_stats(input: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Local per-channel mean and invstd: what each rank contributes to the gather."""
    _check(input, "batch_norm_stats")
    channels = input.shape[1]
    mean = torch.empty(channels, dtype=input.dtype)
    invstd = torch.empty(channels, dtype=input.dtype)
    suffix, view = _layout(input)
    _kernels["stats" + suffix](view(input), float(eps), mean.numpy(), invstd.numpy())
    return mean, invstd


@mirrors("torch.batch_norm_gather_stats_with_counts")
def batch_norm_gather_stats_with_counts(
    input: torch.Tensor,
    mean: torch.Tensor,
    invstd: torch.Tensor,
    running_mean: torch.Tensor | None,
    running_var: torch.Tensor | None,
    momentum: float,
    eps: float,
    counts: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Global mean/invstd from every rank's stats; updates running stats in place.

    ``input`` only supplies the output dtype, as in the CUDA operator.
    """
    _check(mean, "batch_norm_gather_stats_with_counts")
    channels = mean.shape[-1]
    mean_all = mean.detach().reshape(-1, channels).contiguous().numpy()
    invstd_all = invstd.detach().reshape(-1, channels).to(mean.dtype).contiguous().numpy()
    counts_np = counts.detach().to(torch.float64).contiguous().numpy()
    dummy = np.zeros(channels, dtype=mean_all.dtype)
    # Running stats are updated through numpy views, so they must be contiguous.
    rm = running_mean.numpy() if running_mean is not None else dummy
    rv = running_var.numpy() if running_var is not None else dummy
    mean_out = torch.empty(channels, dtype=input.dtype)
    invstd_out = torch.empty(channels, dtype=input.dtype)
    _kernels["gather_stats"](
        mean_all,
        invstd_all,
        counts_np,
        float(eps),
        float(momentum),
        rm,
        rv,
        running_mean is not None,
        running_var is not None,
        mean_out.numpy(),
        invstd_out.numpy(),
    )
    return mean_out, invstd_out


@mirrors("torch.batch_norm_elemt")
def batch_norm_elemt(
    input: torch.Tensor,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    mean: torch.Tensor,
    invstd: torch.Tensor,
    eps: float,
) -> torch.Tensor:
    """Normalises with the (global) statistics; ``eps`` is unused, as upstream."""
    _check(input, "batch_norm_elemt")
    suffix, view = _layout(input)
    out = _empty_like(input)
    _kernels["elemt" + suffix](
        view(input),
        _vec(weight, 1.0, input),
        _vec(bias, 0.0, input),
        _vec(mean, 0.0, input),
        _vec(invstd, 1.0, input),
        view(out),
    )
    return out


@mirrors("torch.batch_norm_backward_reduce")
def batch_norm_backward_reduce(
    grad_out: torch.Tensor,
    input: torch.Tensor,
    mean: torch.Tensor,
    invstd: torch.Tensor,
    weight: torch.Tensor | None,
    input_g: bool,
    weight_g: bool,
    bias_g: bool,
) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """Local sum_dy, sum_dy_xmu (to all-reduce) and grad_weight, grad_bias.

    Like the CUDA operator, outputs that were not asked for come back as None.
    """
    _check(input, "batch_norm_backward_reduce")
    channels = input.shape[1]
    sum_dy = torch.empty(channels, dtype=mean.dtype)
    sum_dy_xmu = torch.empty(channels, dtype=mean.dtype)
    suffix, view = _layout(input)
    _kernels["backward_reduce" + suffix](
        view(grad_out), view(input), _vec(mean, 0.0, input), sum_dy.numpy(), sum_dy_xmu.numpy()
    )
    has_weight = weight is not None
    grad_weight = (sum_dy_xmu * invstd).to(weight.dtype) if weight_g and has_weight else None
    grad_bias = sum_dy.to(weight.dtype) if bias_g and has_weight else None
    if not input_g:
        return None, None, grad_weight, grad_bias
    return sum_dy, sum_dy_xmu, grad_weight, grad_bias


@mirrors("torch.batch_norm_backward_elemt")
def batch_norm_backward_elemt(
    grad_out: torch.Tensor,
    input: torch.Tensor,
    mean: torch.Tensor,
    invstd: torch.Tensor,
    weight: torch.Tensor | None,
    sum_dy: torch.Tensor,
    sum_dy_xmu: torch.Tensor,
    count: torch.Tensor,
) -> torch.Tensor:
    """grad_input from the all-reduced sums; ``count`` holds every rank's count."""
    _check(input, "batch_norm_backward_elemt")
    total = float(count.sum().item())
    suffix, view = _layout(input)
    grad_input = _empty_like(input)
    _kernels["backward_elemt" + suffix](
        view(grad_out),
        view(input),
        _vec(mean, 0.0, input),
        _vec(invstd, 1.0, input),
        _vec(weight, 1.0, input),
        _vec(sum_dy, 0.0, input),
        _vec(sum_dy_xmu, 0.0, input),
        total,
        view(grad_input),
    )
    return grad_input
