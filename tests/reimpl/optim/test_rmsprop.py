"""RMSprop against torch: every flag combination, both paths, both float widths."""

from __future__ import annotations

import itertools

import pytest
import torch
from optim_parity import raised, run_twins, twin_params

import reimpl.optim

PATHS = {"single": {"foreach": False}, "foreach": {"foreach": True}}
FLAGS = [
    {"alpha": al, "centered": c, "momentum": m, "weight_decay": wd, "maximize": mx}
    for al, c, m, wd, mx in itertools.product(
        (0.99, 0.9), (False, True), (0.0, 0.5), (0.0, 0.1), (False, True)
    )
]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("flags", FLAGS, ids=lambda f: "-".join(f"{k}={v}" for k, v in f.items()))
def test_trajectory(flags: dict, path: str, dtype: torch.dtype) -> None:
    run_twins("RMSprop", {"lr": 0.01, **flags, **PATHS[path]}, {"lr": 0.003, "eps": 1e-6}, dtype)


@pytest.mark.parametrize(
    "kwargs",
    [{"lr": -1.0}, {"eps": -1.0}, {"momentum": -1.0}, {"weight_decay": -1.0}, {"alpha": -1.0}],
)
def test_constructor_errors_match_torch(kwargs: dict) -> None:
    theirs_p, ours_p = twin_params()
    assert raised(lambda: reimpl.optim.RMSprop(ours_p, **kwargs)) == raised(
        lambda: torch.optim.RMSprop(theirs_p, **kwargs)
    )
