"""Fused optimizers under ``torch.amp.GradScaler``, against torch.

A fused optimizer sets ``_step_supports_amp_scaling``: the scaler then leaves
the gradients scaled and hands the step ``grad_scale`` and ``found_inf``, and
the fused kernel must unscale them and skip the update (and take back the step
count) when an overflow was found. Ignoring them would train on gradients
1024 times too large and write NaN after an overflow.
"""

from __future__ import annotations

import warnings
from typing import Any

import pytest
import torch
from optim_parity import assert_close_tree
from parity import same_error

import reimpl

CASES = {
    "SGD": {"momentum": 0.9},
    "Adam": {"amsgrad": True},
    "AdamW": {},
    "Adagrad": {"lr_decay": 0.01},
}


def scaled_training(lib: Any, name: str, overflow_at: int | None) -> tuple[Any, ...]:
    """Four GradScaler steps of ``lib.optim.<name>(fused=True)`` on two dtypes; an
    infinite gradient at step ``overflow_at``. Returns weights, state, scales."""
    gen = torch.Generator().manual_seed(0)
    weights = [torch.randn(5, generator=gen), torch.randn(3, generator=gen).double()]
    params = [w.requires_grad_() for w in weights]
    opt = getattr(lib.optim, name)(params, lr=0.1, fused=True, **CASES[name])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # GradScaler's "no CUDA" notes on a CPU
        scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    scales = []
    for step in range(4):
        opt.zero_grad()
        loss = sum(((p * torch.arange(1.0, p.numel() + 1)).sum() ** 2) for p in params)
        scaler.scale(loss).backward()
        if step == overflow_at:
            params[0].grad[0] = float("inf")
        scaler.step(opt)
        scaler.update()
        scales.append(scaler.get_scale())
    state = [dict(opt.state[p]) for p in params]
    return [p.detach() for p in params], state, scales


@pytest.mark.parametrize("overflow_at", [None, 2], ids=["finite", "overflow"])
@pytest.mark.parametrize("name", CASES)
def test_fused_step_unscales_and_skips_like_torch(name: str, overflow_at: int | None) -> None:
    theirs = scaled_training(torch, name, overflow_at)
    ours = scaled_training(reimpl, name, overflow_at)
    assert_close_tree(ours, theirs, 0.0)
    assert all(torch.isfinite(p).all() for p in ours[0])
    if overflow_at is not None:
        assert ours[2][overflow_at] == ours[2][0] / 2  # the scaler backed off once
        if "step" in ours[1][0]:
            assert ours[1][0]["step"].item() == 3  # the skipped step is not counted


@pytest.mark.parametrize("name", ["SGD", "Adam", "Adagrad"])
def test_non_fused_paths_refuse_amp_scaling_like_torch(name: str) -> None:
    def attempt(lib: Any) -> None:
        p = torch.zeros(3, requires_grad=True)
        p.grad = torch.ones(3)
        opt = getattr(lib.optim, name)([p], lr=0.1)
        opt.grad_scale = torch.tensor(2.0)  # what GradScaler sets on fused optimizers
        opt.step()

    same_error(lambda: attempt(torch), lambda: attempt(reimpl))
