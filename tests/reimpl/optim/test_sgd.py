"""SGD against torch: every flag combination, every path, both float widths."""

from __future__ import annotations

import itertools

import pytest
import torch
from optim_parity import raised, run_twins, twin_params

import reimpl.optim

PATHS = {"single": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}
FLAGS = [
    {"momentum": m, "dampening": d, "nesterov": n, "weight_decay": wd, "maximize": mx}
    for m, d, n, wd, mx in itertools.product(
        (0.0, 0.9), (0.0, 0.1), (False, True), (0.0, 0.01), (False, True)
    )
    if not n or (m > 0 and d == 0)
]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("flags", FLAGS, ids=lambda f: "-".join(f"{k}={v}" for k, v in f.items()))
def test_trajectory(flags: dict, path: str, dtype: torch.dtype) -> None:
    # torch's fused SGD fails when a param gets its first grad after the others
    late = path != "fused"
    second = {"lr": 0.02, "momentum": 0.5}
    run_twins("SGD", {"lr": 0.05, **flags, **PATHS[path]}, second, dtype, late=late)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"lr": -1.0},
        {"lr": 0.1, "momentum": -0.5},
        {"lr": 0.1, "weight_decay": -1.0},
        {"lr": 0.1, "nesterov": True},
        {"lr": 0.1, "momentum": 0.9, "dampening": 0.1, "nesterov": True},
        {"lr": 0.1, "fused": True, "foreach": True},
        {"lr": torch.tensor([0.1, 0.2])},
    ],
)
def test_constructor_errors_match_torch(kwargs: dict) -> None:
    theirs_p, ours_p = twin_params()
    assert raised(lambda: reimpl.optim.SGD(ours_p, **kwargs)) == raised(
        lambda: torch.optim.SGD(theirs_p, **kwargs)
    )


def test_fused_rejects_integer_params_like_torch() -> None:
    p = torch.zeros(3, dtype=torch.int64)
    p.grad = torch.zeros(3, dtype=torch.int64)
    for lib in (torch, reimpl):
        opt = lib.optim.SGD([p], lr=0.1, fused=True)
    assert raised(lambda: reimpl.optim.SGD([p], lr=0.1, fused=True).step()) == raised(
        lambda: torch.optim.SGD([p], lr=0.1, fused=True).step()
    )
    del opt
