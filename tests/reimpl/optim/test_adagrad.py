"""Adagrad against torch: every flag combination, every path, both float widths."""

from __future__ import annotations

import itertools

import pytest
import torch
from optim_parity import raised, run_twins, twin_params

import reimpl.optim

PATHS = {"single": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}
FLAGS = [
    {"lr_decay": d, "initial_accumulator_value": a, "weight_decay": wd, "maximize": m}
    for d, a, wd, m in itertools.product((0.0, 0.01), (0.0, 0.1), (0.0, 0.1), (False, True))
]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("flags", FLAGS, ids=lambda f: "-".join(f"{k}={v}" for k, v in f.items()))
def test_trajectory(flags: dict, path: str, dtype: torch.dtype) -> None:
    run_twins("Adagrad", {"lr": 0.1, **flags, **PATHS[path]}, {"lr": 0.05, "eps": 1e-6}, dtype)


def test_sparse_gradients_match_torch() -> None:
    theirs = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    ours = theirs.detach().clone().requires_grad_()
    t_opt = torch.optim.Adagrad([theirs], lr=0.1)
    r_opt = reimpl.optim.Adagrad([ours], lr=0.1)
    with torch.sparse.check_sparse_tensor_invariants(enable=True):
        for step in range(5):
            idx = torch.tensor([[step % 6, (step + 2) % 6, step % 6]])
            vals = torch.randn(3, 3, dtype=torch.float64)
            grad = torch.sparse_coo_tensor(idx, vals, (6, 3))
            theirs.grad, ours.grad = grad.clone(), grad.clone()
            t_opt.step()
            r_opt.step()
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"lr": -1.0},
        {"lr_decay": -1.0},
        {"weight_decay": -1.0},
        {"initial_accumulator_value": -1.0},
        {"eps": -1.0},
    ],
)
def test_constructor_errors_match_torch(kwargs: dict) -> None:
    theirs_p, ours_p = twin_params()
    assert raised(lambda: reimpl.optim.Adagrad(ours_p, **kwargs)) == raised(
        lambda: torch.optim.Adagrad(theirs_p, **kwargs)
    )
