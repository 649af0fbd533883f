"""AdamW against torch: decoupled weight decay on all three paths."""

from __future__ import annotations

import itertools

import pytest
import torch
from optim_parity import run_twins

import reimpl.optim

PATHS = {"single": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}
FLAGS = [
    {"amsgrad": a, "weight_decay": wd, "maximize": m}
    for a, wd, m in itertools.product((False, True), (0.0, 0.1), (False, True))
]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("flags", FLAGS, ids=lambda f: "-".join(f"{k}={v}" for k, v in f.items()))
def test_trajectory(flags: dict, path: str, dtype: torch.dtype) -> None:
    second = {"lr": 0.003, "weight_decay": 0.05}
    run_twins("AdamW", {"lr": 0.01, **flags, **PATHS[path]}, second, dtype)


def test_loaded_adamw_stays_decoupled() -> None:
    """AdamW.__setstate__ forces decoupled decay, even from an Adam checkpoint."""
    p = torch.zeros(2, requires_grad=True)
    adam = reimpl.optim.Adam([p], weight_decay=0.1)
    opt = reimpl.optim.AdamW([p], weight_decay=0.1)
    opt.load_state_dict(adam.state_dict())
    assert opt.param_groups[0]["decoupled_weight_decay"] is True
    theirs = torch.optim.AdamW([torch.zeros(2, requires_grad=True)], weight_decay=0.1)
    assert repr(opt) == repr(theirs)
