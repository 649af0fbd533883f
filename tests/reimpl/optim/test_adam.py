"""Adam against torch: every flag combination on the single-tensor, foreach and
fused paths (ours fused = the numba kernel, theirs = torch's C++ kernel)."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys

import numba
import numpy as np
import pytest
import torch
from optim_parity import raised, run_twins, twin_params
from sinks import ListSink

import reimpl.optim
from reimpl import _trace
from reimpl.optim import adam as adam_module

PATHS = {"single": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}
FLAGS = [
    {"amsgrad": a, "weight_decay": wd, "maximize": m}
    for a, wd, m in itertools.product((False, True), (0.0, 0.1), (False, True))
]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("flags", FLAGS, ids=lambda f: "-".join(f"{k}={v}" for k, v in f.items()))
def test_trajectory(flags: dict, path: str, dtype: torch.dtype) -> None:
    second = {"lr": 0.003, "betas": (0.8, 0.99)}
    run_twins("Adam", {"lr": 0.01, **flags, **PATHS[path]}, second, dtype)


def test_decoupled_weight_decay_flag_matches_torch() -> None:
    run_twins("Adam", {"lr": 0.01, "weight_decay": 0.1, "decoupled_weight_decay": True}, {})


@pytest.mark.parametrize("parallel", [False, True], ids=["serial", "parallel"])
def test_fused_kernel_is_the_python_reference_compiled(parallel: bool) -> None:
    """The numba kernels and the plain-Python loop they compile agree exactly.

    Calling ``_adam_fused_kernel_py`` directly is what ``NUMBA_DISABLE_JIT=1``
    runs, so the reference stays checkable without the compiler.
    """
    rng = np.random.default_rng(0)
    kernel = adam_module._adam_fused_kernel(parallel)
    for dtype in (np.float32, np.float64):
        arrays = [rng.standard_normal(37).astype(dtype) for _ in range(5)]
        arrays[3] = np.abs(arrays[3])
        arrays[4] = np.abs(arrays[4])
        py = [a.copy() for a in arrays]
        jit = [a.copy() for a in arrays]
        scalars = [dtype(x) for x in (0.01, 0.3, 0.1, 0.9, 0.999, 0.001, 1e-8, 0.1, 0.999)]
        for flags in itertools.product((False, True), repeat=3):
            adam_module._adam_fused_kernel_py(*py, *scalars, *flags)
            kernel(*jit, *scalars, *flags)
        for a, b in zip(py, jit):
            np.testing.assert_array_equal(a, b)


_NO_JIT_SCRIPT = """
import torch, reimpl.optim
from reimpl.optim import adam
assert not hasattr(adam._adam_fused_kernel(True), "py_func")  # numba handed back Python
adam._PARALLEL_MIN_NUMEL = 20  # so the 40-element param takes the prange variant
results = []
for lib in (torch, reimpl):
    ps = [torch.linspace(-1, 1, n, dtype=torch.float64).requires_grad_() for n in (10, 40)]
    opt = lib.optim.AdamW(ps, lr=0.01, amsgrad=True, fused=True)
    for step in range(3):
        for p in ps:
            p.grad = torch.sin(torch.arange(p.numel(), dtype=torch.float64) + step)
        opt.step()
    results.append(torch.cat([p.detach() for p in ps]))
assert torch.allclose(results[0], results[1], rtol=1e-12, atol=1e-12)
"""


def test_fused_path_runs_as_plain_python_without_jit() -> None:
    """``NUMBA_DISABLE_JIT=1``: the same kernels run as Python and still match torch."""
    env = {**os.environ, "NUMBA_DISABLE_JIT": "1"}
    done = subprocess.run(
        [sys.executable, "-c", _NO_JIT_SCRIPT], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr


def test_large_params_take_the_parallel_kernel() -> None:
    """Past the threshold the prange kernel runs; the trajectory still matches torch."""
    n = adam_module._PARALLEL_MIN_NUMEL
    theirs = torch.randn(n + 3, requires_grad=True)
    ours = theirs.detach().clone().requires_grad_()
    t_opt = torch.optim.Adam([theirs], lr=0.01, fused=True)
    r_opt = reimpl.optim.Adam([ours], lr=0.01, fused=True)
    for step in range(3):
        g = torch.randn(n + 3, generator=torch.Generator().manual_seed(step))
        theirs.grad, ours.grad = g.clone(), g.clone()
        t_opt.step()
        r_opt.step()
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-6)
    assert True in adam_module._compiled_kernels
    if not numba.config.DISABLE_JIT:
        # raises if no prange loop ever ran (a serial kernel loaded from a shared cache)
        assert numba.threading_layer()


def test_fused_handles_non_contiguous_state() -> None:
    """A strided param is updated through a contiguous copy and written back.

    Compared with torch's single-tensor path: torch 2.13's fused CPU kernel
    walks raw memory order, so for a transposed param with a contiguous grad
    it pairs the wrong elements (it disagrees with its own for-loop path).
    """
    base_t = torch.randn(4, 6, dtype=torch.float64)
    theirs = base_t.clone().t().requires_grad_()
    ours = base_t.clone().t().requires_grad_()
    t_opt = torch.optim.Adam([theirs], lr=0.1, foreach=False)
    r_opt = reimpl.optim.Adam([ours], lr=0.1, fused=True)
    for _ in range(5):
        g = torch.randn(6, 4, dtype=torch.float64)
        theirs.grad, ours.grad = g.clone(), g.clone()
        t_opt.step()
        r_opt.step()
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"lr": -1.0},
        {"eps": -1.0},
        {"betas": (1.0, 0.999)},
        {"betas": (0.9, -0.1)},
        {"weight_decay": -1.0},
        {"betas": (0.9, torch.tensor(0.999))},
        {"fused": True, "foreach": True},
        {"lr": torch.tensor(0.1), "foreach": True},
        {"betas": (torch.tensor(0.9), torch.tensor(0.99)), "foreach": True},
        {"betas": (torch.tensor([0.9, 0.8]), torch.tensor(0.99))},
    ],
)
def test_constructor_errors_match_torch(kwargs: dict) -> None:
    theirs_p, ours_p = twin_params()
    assert raised(lambda: reimpl.optim.Adam(ours_p, **kwargs)) == raised(
        lambda: torch.optim.Adam(theirs_p, **kwargs)
    )


def test_sparse_gradient_error_matches_torch() -> None:
    def attempt(lib):
        p = torch.zeros(3, requires_grad=True)
        p.grad = torch.zeros(3).to_sparse()
        lib.optim.Adam([p]).step()

    assert raised(lambda: attempt(reimpl)) == raised(lambda: attempt(torch))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "f16"])
@pytest.mark.parametrize("name", ["Adam", "AdamW"])
def test_fused_half_precision_runs_torchs_kernel(name: str, dtype: torch.dtype) -> None:
    """The numba kernel has no half types: those params take torch's fused kernel."""
    run_twins(name, {"lr": 0.01, "fused": True, "amsgrad": True}, {"lr": 0.003}, dtype, steps=5)


def test_fused_mixes_both_kernels_in_one_group() -> None:
    """float32 params take the numba kernel, a bfloat16 one torch's; each is traced."""

    def params() -> list[torch.Tensor]:
        g = torch.Generator().manual_seed(0)
        w = torch.randn(4, 3, generator=g)
        kinds = (w, w[0].to(torch.bfloat16), w[1])
        return [t.clone().requires_grad_() for t in kinds]

    theirs_p, ours_p = params(), params()
    t_opt = torch.optim.AdamW(theirs_p, lr=0.01, fused=True)
    r_opt = reimpl.optim.AdamW(ours_p, lr=0.01, fused=True)
    sink = ListSink()
    _trace.attach(sink)
    try:
        for step in range(3):
            for t, o in zip(theirs_p, ours_p):
                g = torch.randn(t.shape, generator=torch.Generator().manual_seed(step))
                t.grad, o.grad = g.to(t.dtype), g.to(o.dtype)
            t_opt.step()
            r_opt.step()
    finally:
        _trace.detach()
    for t, o, tol in zip(theirs_p, ours_p, (1e-6, 0.0, 1e-6)):
        torch.testing.assert_close(o, t, rtol=tol, atol=tol)
    updates = sink.of_kind("optim.update")
    assert sorted(u[8]["param"] for u in updates) == sorted([0, 1, 2] * 3)
    assert {u[8]["path"] for u in updates} == {"fused"}
