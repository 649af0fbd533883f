"""``capturable=True`` against torch, on the CPU.

torch (and reimpl) accept capturable only for params on a device that can
capture graphs (CUDA, XPU...); on a CPU both raise the same AssertionError
(tested in test_differentiable.py). The capturable branches themselves are
plain tensor math, so here both libraries are told that the CPU captures:
their device lists are patched, and the two capturable trajectories (the
bias corrections computed on step tensors, without ``.item()``) must agree.
What this cannot show is a real CUDA-graph capture and replay.
"""

from __future__ import annotations

import importlib
import itertools

import pytest
import torch
from optim_parity import run_twins

from reimpl.optim import optimizer as reimpl_optimizer

FLAGS = [
    {"amsgrad": a, "weight_decay": wd, "maximize": m}
    for a, wd, m in itertools.product((False, True), (0.0, 0.1), (False, True))
]


@pytest.fixture
def cpu_captures(monkeypatch: pytest.MonkeyPatch) -> None:
    """Adds "cpu" to the capturable device lists both libraries check."""

    def with_cpu(supports_xla: bool = True) -> list[str]:
        return ["cuda", "xpu", "hpu", "cpu"]

    for module in ("torch.optim.adam", "torch.optim.rmsprop", "torch.optim.optimizer"):
        monkeypatch.setattr(
            importlib.import_module(module), "_get_capturable_supported_devices", with_cpu
        )
    monkeypatch.setattr(reimpl_optimizer, "_get_capturable_supported_devices", with_cpu)


def assert_bitwise_equal(theirs_p: list[torch.Tensor], ours_p: list[torch.Tensor]) -> None:
    """The capturable branches round differently from the default ones (the step
    size is folded into the denominator): only equal bits show the same branch ran."""
    for t, o in zip(theirs_p, ours_p):
        assert torch.equal(o.detach(), t.detach())


@pytest.mark.usefixtures("cpu_captures")
@pytest.mark.parametrize("foreach", [False, True], ids=["single", "foreach"])
@pytest.mark.parametrize("flags", FLAGS, ids=lambda f: "-".join(f"{k}={v}" for k, v in f.items()))
def test_adam_capturable_trajectory(flags: dict, foreach: bool) -> None:
    kwargs = {"lr": 0.01, "capturable": True, "foreach": foreach, **flags}
    _, _, theirs_p, ours_p = run_twins("Adam", kwargs, {"lr": 0.003}, steps=10)
    assert_bitwise_equal(theirs_p, ours_p)


@pytest.mark.usefixtures("cpu_captures")
@pytest.mark.parametrize("name", ["Adam", "AdamW"])
def test_tensor_hyperparameters_take_the_capturable_foreach_path(name: str) -> None:
    """foreach refuses tensor lr and betas unless capturable; then they stay tensors."""
    kwargs = {
        "lr": torch.tensor(0.01),
        "betas": (torch.tensor(0.9), torch.tensor(0.99)),
        "capturable": True,
        "foreach": True,
    }
    assert_bitwise_equal(*run_twins(name, kwargs, {}, steps=10)[2:])


@pytest.mark.usefixtures("cpu_captures")
@pytest.mark.parametrize("foreach", [False, True], ids=["single", "foreach"])
@pytest.mark.parametrize("lr", [0.01, torch.tensor(0.01)], ids=["float-lr", "tensor-lr"])
@pytest.mark.parametrize(
    "flags",
    [{}, {"centered": True}, {"momentum": 0.5}, {"centered": True, "momentum": 0.5}],
    ids=lambda f: "-".join(f) or "plain",
)
def test_rmsprop_capturable_trajectory(flags: dict, lr: object, foreach: bool) -> None:
    kwargs = {"lr": lr, "capturable": True, "foreach": foreach, "weight_decay": 0.1, **flags}
    assert_bitwise_equal(*run_twins("RMSprop", kwargs, {"alpha": 0.9}, steps=10)[2:])
