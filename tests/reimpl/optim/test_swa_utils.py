"""SWA against torch: AveragedModel averages, update_bn statistics, SWALR lrs, events.

The reimpl side wraps reimpl.nn layers (and, in one test, torch layers); the
torch side wraps the same weights in torch.nn layers.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from optim_parity import assert_close_tree
from sinks import ListSink

import reimpl.nn
import reimpl.optim
from reimpl import _trace


def twin_models(seed: int = 0) -> tuple[torch.nn.Module, Any]:
    """The same small BN network in torch and in reimpl, with equal weights."""
    torch.manual_seed(seed)
    theirs = torch.nn.Sequential(
        torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(), torch.nn.Linear(8, 2)
    ).double()
    ours = reimpl.nn.Sequential(
        reimpl.nn.Linear(4, 8), reimpl.nn.BatchNorm1d(8), reimpl.nn.ReLU(), reimpl.nn.Linear(8, 2)
    ).double()
    ours.load_state_dict(theirs.state_dict())
    return theirs, ours


def train_step(models: tuple, step: int) -> None:
    """Moves both models' weights the same way and updates BN running stats."""
    gen = torch.Generator().manual_seed(100 + step)
    x = torch.randn(16, 4, generator=gen, dtype=torch.float64)
    for model in models:
        model.train()
        model(x)  # BN running stats move with the forward
        with torch.no_grad():
            for i, p in enumerate(model.parameters()):
                g = torch.Generator().manual_seed(step * 10 + i)
                p.add_(torch.randn(p.shape, generator=g, dtype=p.dtype), alpha=0.1)


AVERAGERS = {
    "swa-default": {},
    "ema-avg_fn": {"avg_fn": "ema"},
    "ema-multi": {"multi_avg_fn": "ema_multi"},
    "swa-multi": {"multi_avg_fn": "swa_multi"},
    "ema-multi-buffers": {"multi_avg_fn": "ema_multi", "use_buffers": True},
    "swa-buffers": {"use_buffers": True},
}


def _resolve(lib: Any, spec: dict) -> dict:
    swa = lib.optim.swa_utils
    makers = {
        "ema": lambda: swa.get_ema_avg_fn(0.9),
        "ema_multi": lambda: swa.get_ema_multi_avg_fn(0.9),
        "swa_multi": swa.get_swa_multi_avg_fn,
    }
    return {k: makers[v]() if isinstance(v, str) else v for k, v in spec.items()}


@pytest.mark.parametrize("spec", AVERAGERS)
def test_averaged_model_matches_torch(spec: str) -> None:
    theirs, ours = twin_models()
    avg_t = torch.optim.swa_utils.AveragedModel(theirs, **_resolve(torch, AVERAGERS[spec]))
    avg_o = reimpl.optim.swa_utils.AveragedModel(ours, **_resolve(reimpl, AVERAGERS[spec]))
    for step in range(6):
        train_step((theirs, ours), step)
        avg_t.update_parameters(theirs)
        avg_o.update_parameters(ours)
    assert_close_tree(dict(avg_o.state_dict()), dict(avg_t.state_dict()), 1e-12)
    x = torch.randn(3, 4, dtype=torch.float64)
    avg_t.eval()
    avg_o.eval()
    torch.testing.assert_close(avg_o(x), avg_t(x), rtol=1e-12, atol=1e-12)


def test_averaged_model_wraps_a_torch_module_too() -> None:
    theirs, _ = twin_models()
    twin, _ = twin_models()
    avg_t = torch.optim.swa_utils.AveragedModel(theirs)
    avg_o = reimpl.optim.swa_utils.AveragedModel(twin)
    for step in range(4):
        train_step((theirs, twin), step)
        avg_t.update_parameters(theirs)
        avg_o.update_parameters(twin)
    assert_close_tree(dict(avg_o.module.state_dict()), dict(avg_t.module.state_dict()), 1e-12)
    assert int(avg_o.n_averaged) == int(avg_t.n_averaged) == 4


@pytest.mark.parametrize("use_torch_model", [False, True], ids=["reimpl-bn", "torch-bn"])
def test_update_bn_matches_torch(use_torch_model: bool) -> None:
    theirs, ours = twin_models()
    if use_torch_model:
        ours, _ = twin_models()
    loader = [
        (torch.randn(8, 4, generator=torch.Generator().manual_seed(i), dtype=torch.float64), i)
        for i in range(5)
    ]
    theirs.eval()
    ours.eval()
    torch.optim.swa_utils.update_bn(loader, theirs)
    reimpl.optim.swa_utils.update_bn(loader, ours)
    assert_close_tree(dict(ours.state_dict()), dict(theirs.state_dict()), 1e-12)
    assert ours.training is False
    assert ours[1].momentum == theirs[1].momentum == 0.1


def test_update_bn_without_batchnorm_is_a_no_op() -> None:
    model = reimpl.nn.Sequential(reimpl.nn.Linear(2, 2))
    reimpl.optim.swa_utils.update_bn([torch.randn(3, 2)], model)


@pytest.mark.parametrize("strategy", ["cos", "linear"])
@pytest.mark.parametrize("anneal_epochs", [0, 5])
def test_swalr_matches_torch(strategy: str, anneal_epochs: int) -> None:
    def run(lib: Any) -> list:
        p = [torch.zeros(2, requires_grad=True), torch.zeros(2, requires_grad=True)]
        opt = lib.optim.SGD([{"params": p[:1]}, {"params": p[1:], "lr": 0.5}], lr=0.1)
        sched = lib.optim.swa_utils.SWALR(
            opt, swa_lr=[0.05, 0.01], anneal_epochs=anneal_epochs, anneal_strategy=strategy
        )
        out = []
        for epoch in range(20):
            opt.step()
            sched.step()
            out.append(sched.get_last_lr())
            if epoch == 8:
                state = sched.state_dict()
                sched = lib.optim.swa_utils.SWALR(opt, swa_lr=0.2)
                sched.load_state_dict(state)
        return out

    assert run(reimpl) == run(torch)


@pytest.mark.parametrize(
    "make",
    [
        lambda swa, o: swa.SWALR(o, 0.1, anneal_strategy="step"),
        lambda swa, o: swa.SWALR(o, 0.1, anneal_epochs=-1),
        lambda swa, o: swa.get_ema_avg_fn(1.5),
        lambda swa, o: swa.get_ema_multi_avg_fn(-0.1),
    ],
)
def test_errors_match_torch(make: Any) -> None:
    def attempt(lib: Any) -> tuple[type, str]:
        opt = lib.optim.SGD([torch.zeros(2, requires_grad=True)], lr=0.1)
        try:
            make(lib.optim.swa_utils, opt)
        except Exception as e:
            return type(e), str(e)
        raise AssertionError("no error")

    assert attempt(reimpl) == attempt(torch)


def test_swa_events() -> None:
    _, ours = twin_models()
    avg = reimpl.optim.swa_utils.AveragedModel(ours)
    sink = ListSink()
    _trace.attach(sink)
    try:
        avg.update_parameters(ours)
        avg.update_parameters(ours)
        reimpl.optim.swa_utils.update_bn([torch.randn(4, 4, dtype=torch.float64)], avg)
    finally:
        _trace.detach()
    updates = sink.of_kind("swa.update")
    assert [u[8]["n_averaged"] for u in updates] == [0, 1]
    (bn,) = sink.of_kind("swa.update_bn")
    assert bn[8] == {"batchnorms": 1, "batches": 1}
    assert bn[7] == "reimpl.optim.swa_utils.update_bn"
