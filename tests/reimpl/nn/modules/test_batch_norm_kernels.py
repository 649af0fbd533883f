"""The numba batch-norm kernels against their Python reference and torch's math.

torch.batch_norm_stats and friends exist only for CUDA, so "torch's math" is a
float64 torch computation (F.batch_norm and autograd) of the same quantities.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from reimpl.nn.modules import _batch_norm_kernels as K

ROOT = Path(__file__).resolve().parents[4]
EPS = 1e-5
TOL = {torch.float32: dict(rtol=1e-5, atol=1e-5), torch.float64: dict(rtol=1e-10, atol=1e-10)}


def _input(shape, dtype, layout=None, offset=0.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(shape, generator=g, dtype=torch.float64) * 2 + offset).to(dtype)
    return x.contiguous(memory_format=layout) if layout is not None else x


def _forward_backward(x, w, b, dy):
    """One kernel-only batch-norm step (world size 1), as SyncBatchNorm chains them."""
    mean, invstd = K.batch_norm_stats(x, EPS)
    count = torch.tensor([x.numel() // x.shape[1]], dtype=torch.int32)
    y = K.batch_norm_elemt(x, w, b, mean, invstd, EPS)
    sum_dy, sum_dy_xmu, gw, gb = K.batch_norm_backward_reduce(
        dy, x, mean, invstd, w, True, True, True
    )
    dx = K.batch_norm_backward_elemt(dy, x, mean, invstd, w, sum_dy, sum_dy_xmu, count)
    return mean, invstd, y, dx, gw, gb


def _torch_forward_backward(x, w, b, dy):
    """The same quantities from torch in float64: the oracle."""
    x64, w64, b64 = (t.detach().double().clone().requires_grad_() for t in (x, w, b))
    dims = [d for d in range(x.dim()) if d != 1]
    mean = x64.detach().mean(dims)
    invstd = (x64.detach().var(dims, unbiased=False) + EPS).rsqrt()
    y = F.batch_norm(x64, None, None, w64, b64, True, 0.0, EPS)
    y.backward(dy.double())
    return mean, invstd, y.detach(), x64.grad, w64.grad, b64.grad


CASES = [
    ((8, 3), None),
    ((4, 3, 7), None),
    ((4, 5, 6, 7), None),
    ((4, 5, 6, 7), torch.channels_last),
    ((2, 3, 4, 5, 6), torch.channels_last_3d),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("shape", "layout"), CASES)
def test_kernels_match_torch_math(shape, layout, dtype):
    x = _input(shape, dtype, layout)
    dy = _input(shape, dtype, layout, seed=1)
    w = _input(shape[1:2], dtype, seed=2)
    b = _input(shape[1:2], dtype, seed=3)
    ours = _forward_backward(x, w, b, dy)
    expected = _torch_forward_backward(x, w, b, dy)
    for name, got, want in zip(["mean", "invstd", "y", "dx", "dw", "db"], ours, expected):
        assert got.dtype == dtype, name
        torch.testing.assert_close(got.double(), want, **TOL[dtype], msg=name)
    y, dx = ours[2], ours[3]
    if layout is not None:  # outputs keep the input's memory format, as torch's do
        assert y.is_contiguous(memory_format=layout) and dx.is_contiguous(memory_format=layout)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    ("shape", "layout"), [((3, 4, 5, 2), None), ((3, 4, 5, 2), torch.channels_last), ((7, 4), None)]
)
def test_compiled_equals_python_reference(shape, layout, dtype):
    x = _input(shape, dtype, layout)
    dy = _input(shape, dtype, layout, seed=1)
    w, b = _input((4,), dtype, seed=2), _input((4,), dtype, seed=3)
    compiled = _forward_backward(x, w, b, dy)
    with K.python_reference():
        assert K._kernels["stats"] is K._COMPILED["stats"].py_func
        assert K._block_sums is K._HELPERS["_block_sums"].py_func
        reference = _forward_backward(x, w, b, dy)
    assert K._kernels["stats"] is K._COMPILED["stats"]
    # Only the summation order differs (the compiled sums are vectorised).
    for got, want in zip(compiled, reference):
        torch.testing.assert_close(got, want, **TOL[dtype])


def test_strided_inputs_and_mixed_layouts():
    # A transposed (N, L, C) buffer seen as (N, C, L): no memory format covers it.
    x = _input((4, 6, 3), torch.float64).transpose(1, 2)
    dy = _input((4, 3, 6), torch.float64, seed=1)
    w, b = _input((3,), torch.float64, seed=2), _input((3,), torch.float64, seed=3)
    for got, want in zip(_forward_backward(x, w, b, dy), _torch_forward_backward(x, w, b, dy)):
        torch.testing.assert_close(got, want)
    # A channels-last input with a contiguous output grad (and the reverse).
    x = _input((2, 3, 4, 5), torch.float64, torch.channels_last)
    dy = _input((2, 3, 4, 5), torch.float64, seed=1)
    for a, b_ in ((x, dy), (dy.contiguous(memory_format=torch.channels_last), x.contiguous())):
        got = _forward_backward(a, w, b, b_)
        for g, want in zip(got, _torch_forward_backward(a, w, b, b_)):
            torch.testing.assert_close(g, want)


@pytest.mark.parametrize("layout", [None, torch.channels_last])
def test_stats_are_accurate_for_large_offsets_in_float32(layout):
    # E[x^2] - E[x]^2 would lose every digit of the variance here.
    x = _input((16, 2, 5, 10), torch.float32, layout, offset=1e4)
    mean, invstd = K.batch_norm_stats(x, EPS)
    x64 = x.double()
    var = x64.var((0, 2, 3), unbiased=False)
    torch.testing.assert_close(mean.double(), x64.mean((0, 2, 3)), rtol=1e-7, atol=0)
    torch.testing.assert_close(invstd.double(), (var + EPS).rsqrt(), rtol=1e-5, atol=0)


@pytest.mark.parametrize("momentum", [0.1, 1.0 / 3])
def test_gather_stats_with_counts_merges_unequal_and_empty_ranks(momentum):
    x = _input((9, 3, 4), torch.float64, offset=3.0)
    chunks = [x[:2], x[2:2], x[2:9]]  # the middle rank holds an empty batch
    stats = [K.batch_norm_stats(c, EPS) for c in chunks if c.numel() > 0]
    mean_all = torch.stack([m for m, _ in stats])
    invstd_all = torch.stack([s for _, s in stats])
    counts = torch.tensor([2 * 4, 7 * 4], dtype=torch.float64)
    running_mean, running_var = torch.full((3,), 0.5, dtype=torch.float64), torch.ones(3).double()
    mean, invstd = K.batch_norm_gather_stats_with_counts(
        x, mean_all, invstd_all, running_mean, running_var, momentum, EPS, counts
    )
    expected_rm, expected_rv = torch.full((3,), 0.5, dtype=torch.float64), torch.ones(3).double()
    F.batch_norm(x, expected_rm, expected_rv, None, None, True, momentum, EPS)
    torch.testing.assert_close(mean, x.mean((0, 2)))
    torch.testing.assert_close(invstd, (x.var((0, 2), unbiased=False) + EPS).rsqrt())
    torch.testing.assert_close(running_mean, expected_rm)
    torch.testing.assert_close(running_var, expected_rv)
    # Without running stats only the global statistics come back.
    again = K.batch_norm_gather_stats_with_counts(
        x, mean_all, invstd_all, None, None, momentum, EPS, counts
    )
    torch.testing.assert_close(again, (mean, invstd))


def test_backward_reduce_returns_none_for_what_was_not_asked():
    x, dy = _input((4, 3), torch.float64), _input((4, 3), torch.float64, seed=1)
    mean, invstd = K.batch_norm_stats(x, EPS)
    w = torch.ones(3, dtype=torch.float64)
    sum_dy, sum_dy_xmu, gw, gb = K.batch_norm_backward_reduce(
        dy, x, mean, invstd, w, False, True, False
    )
    assert sum_dy is None and sum_dy_xmu is None and gb is None
    torch.testing.assert_close(gw, (dy * (x - mean) * invstd).sum(0))
    *_, gw, gb = K.batch_norm_backward_reduce(dy, x, mean, invstd, None, True, True, True)
    assert gw is None and gb is None


def test_kernels_reject_half_precision():
    with pytest.raises(TypeError, match="float32 and float64"):
        K.batch_norm_stats(torch.randn(4, 3).half(), EPS)


class _KernelBatchNorm(torch.autograd.Function):
    """The kernels chained into one autograd op (world size 1), for gradcheck."""

    @staticmethod
    def forward(ctx, x, w, b):
        mean, invstd = K.batch_norm_stats(x, EPS)
        ctx.save_for_backward(x, w, mean, invstd)
        return K.batch_norm_elemt(x, w, b, mean, invstd, EPS)

    @staticmethod
    def backward(ctx, dy):
        x, w, mean, invstd = ctx.saved_tensors
        count = torch.tensor([x.numel() // x.shape[1]], dtype=torch.int32)
        sum_dy, sum_dy_xmu, gw, gb = K.batch_norm_backward_reduce(
            dy, x, mean, invstd, w, True, True, True
        )
        dx = K.batch_norm_backward_elemt(dy, x, mean, invstd, w, sum_dy, sum_dy_xmu, count)
        return dx, gw, gb


def test_kernels_pass_gradcheck_in_float64():
    x = _input((3, 2, 4), torch.float64).requires_grad_()
    w = _input((2,), torch.float64, seed=2).requires_grad_()
    b = _input((2,), torch.float64, seed=3).requires_grad_()
    assert torch.autograd.gradcheck(_KernelBatchNorm.apply, (x, w, b))


@settings(max_examples=20, deadline=None)
@given(
    n=st.integers(2, 5),
    c=st.integers(1, 4),
    length=st.integers(1, 6),
    scale=st.sampled_from([1e-3, 1.0, 1e3]),
    seed=st.integers(0, 1000),
)
def test_kernels_match_torch_on_random_shapes(n, c, length, scale, seed):
    shape = (n, c, length)
    x = _input(shape, torch.float64, seed=seed) * scale
    dy = _input(shape, torch.float64, seed=seed + 1)
    w, b = _input((c,), torch.float64, seed=2), _input((c,), torch.float64, seed=3)
    for got, want in zip(_forward_backward(x, w, b, dy), _torch_forward_backward(x, w, b, dy)):
        torch.testing.assert_close(got, want, rtol=1e-8, atol=1e-8)


@pytest.mark.slow
def test_kernels_run_as_plain_python_with_the_jit_disabled():
    script = textwrap.dedent(
        """
        import torch
        from reimpl.nn.modules import _batch_norm_kernels as K
        assert not hasattr(K._COMPILED["stats"], "py_func"), "the JIT is still on"
        x = torch.randn(3, 2, 4, dtype=torch.float64)
        mean, invstd = K.batch_norm_stats(x, 1e-5)
        y = K.batch_norm_elemt(x, None, None, mean, invstd, 1e-5)
        expected = torch.nn.functional.batch_norm(x, None, None, training=True)
        torch.testing.assert_close(y, expected)
        print("ok")
        """
    )
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("layout", [None, torch.channels_last])
def test_kernels_match_torchs_own_cuda_operators(layout):
    """Where torch's operators exist (CUDA), ours must return what they return."""
    x = _input((4, 3, 5, 6), torch.float64, layout)
    dy = _input((4, 3, 5, 6), torch.float64, layout, seed=1)
    w = _input((3,), torch.float64, seed=2)
    cuda = [t.cuda() for t in (x, dy, w)]
    mean, invstd = K.batch_norm_stats(x, EPS)
    cuda_mean, cuda_invstd = torch.batch_norm_stats(cuda[0], EPS)
    torch.testing.assert_close((mean, invstd), (cuda_mean.cpu(), cuda_invstd.cpu()))
    counts = torch.tensor([120.0, 40.0], dtype=torch.float64)
    args = (torch.stack([mean, mean + 1]), torch.stack([invstd, invstd / 2]))
    rm, rv = torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
    rm_c, rv_c = rm.cuda(), rv.cuda()
    ours = K.batch_norm_gather_stats_with_counts(x, *args, rm, rv, 0.1, EPS, counts)
    theirs = torch.batch_norm_gather_stats_with_counts(
        cuda[0], *(a.cuda() for a in args), rm_c, rv_c, 0.1, EPS, counts.cuda()
    )
    torch.testing.assert_close(ours, tuple(t.cpu() for t in theirs))
    torch.testing.assert_close((rm, rv), (rm_c.cpu(), rv_c.cpu()))
    y = K.batch_norm_elemt(x, w, None, mean, invstd, EPS)
    y_c = torch.batch_norm_elemt(cuda[0], cuda[2], None, cuda_mean, cuda_invstd, EPS)
    torch.testing.assert_close(y, y_c.cpu())
    reduced = K.batch_norm_backward_reduce(dy, x, mean, invstd, w, True, True, True)
    reduced_c = torch.batch_norm_backward_reduce(
        cuda[1], cuda[0], cuda_mean, cuda_invstd, cuda[2], True, True, True
    )
    torch.testing.assert_close(reduced, tuple(t.cpu() for t in reduced_c))
    count = torch.tensor([120], dtype=torch.int32)
    dx = K.batch_norm_backward_elemt(dy, x, mean, invstd, w, *reduced[:2], count)
    dx_c = torch.batch_norm_backward_elemt(
        cuda[1], cuda[0], cuda_mean, cuda_invstd, cuda[2], *reduced_c[:2], count.cuda()
    )
    torch.testing.assert_close(dx, dx_c.cpu())
