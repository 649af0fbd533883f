"""``differentiable=True`` against torch: hyper-gradients through ``step()``.

Each run starts from leaf weights ``w0`` (the meta-parameters), optimises a
non-leaf copy for a few steps with ``create_graph=True`` backward passes, then
differentiates a meta-loss with respect to ``w0`` and to tensor hyper-parameters
(``lr``, ``betas``, ``weight_decay``) that require grad. torch and reimpl must
give the same meta-loss, the same weights and state, and the same gradients
(float64, to 1e-12), for every flag combination torch differentiates; where
torch refuses (a combination, or a backward through an in-place update it
cannot replay), reimpl must refuse with the same error.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from optim_parity import assert_close_tree
from parity import same_error
from torch.optim.adagrad import adagrad as torch_adagrad
from torch.optim.adam import adam as torch_adam

import reimpl
import reimpl.optim
from reimpl.optim.adagrad import adagrad as reimpl_adagrad
from reimpl.optim.adam import adam as reimpl_adam

# the inner loop's create_graph backward warns about a .grad reference cycle; zero_grad breaks it
pytestmark = pytest.mark.filterwarnings("ignore:Using backward\\(\\) with create_graph:UserWarning")

TOL = 1e-12
X = torch.linspace(0.5, 2.0, 6, dtype=torch.float64)


def inner_loss(p: torch.Tensor) -> torch.Tensor:
    """A loss whose backward keeps no reference to ``p`` itself (the step
    overwrites ``p`` in place), yet gives every element its own curvature."""
    return ((X * p).sum() - 2) ** 2 + torch.exp(0.3 * p).sum()


@dataclass
class MetaRun:
    """What one library produced: the meta-loss, final weights and state, and
    the meta-gradients with respect to ``w0`` and each hyper-parameter tensor."""

    meta_loss: torch.Tensor
    params: torch.Tensor
    state: dict[str, Any]
    grads: list[torch.Tensor | None]


def meta_run(lib: Any, name: str, flags: dict, hyper: dict[str, float], steps: int) -> MetaRun:
    """``steps`` differentiable steps of ``lib.optim.<name>``, then the meta-gradients."""
    w0 = torch.linspace(-1, 1, 6, dtype=torch.float64).requires_grad_()
    tensors = {
        k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in hyper.items()
    }
    kwargs = {**flags, "differentiable": True}
    for key, t in tensors.items():
        if key not in ("beta1", "beta2"):
            kwargs[key] = t
    if "beta1" in tensors:
        kwargs["betas"] = (tensors["beta1"], tensors["beta2"])
    p = w0.clone()  # a non-leaf: the optimizer's in-place updates become graph nodes
    opt = getattr(lib.optim, name)([p], **kwargs)
    for _ in range(steps):
        inner_loss(p).backward(inputs=[p], create_graph=True)
        opt.step()
        opt.zero_grad()
    meta = inner_loss(p)
    grads = torch.autograd.grad(meta, [w0, *tensors.values()], allow_unused=True)
    state = {k: v.detach() if torch.is_tensor(v) else v for k, v in opt.state[p].items()}
    return MetaRun(
        meta.detach(), p.detach(), state, [g if g is None else g.detach() for g in grads]
    )


def _flag_grid(**choices: tuple) -> list[dict]:
    return [dict(zip(choices, values)) for values in itertools.product(*choices.values())]


ADAM_TENSORS = {"lr": 0.01, "beta1": 0.9, "beta2": 0.99, "weight_decay": 0.1}
ADAM_TENSORS_NO_DECAY = {k: v for k, v in ADAM_TENSORS.items() if k != "weight_decay"}
# (optimizer, flags, tensor hyper-parameters, steps): every combination torch differentiates.
# amsgrad's torch.maximum saves exp_avg_sq, which the next step overwrites in place,
# so torch differentiates amsgrad through one step only (the refusal is tested below);
# centered RMSprop likewise (lerp_ of grad_avg saves what the next step overwrites).
ALLOWED = (
    [
        ("Adam", {**f, "weight_decay": 0.1 if wd else 0}, h, 1 if f["amsgrad"] else 3)
        for f in _flag_grid(
            amsgrad=(False, True), maximize=(False, True), decoupled_weight_decay=(False, True)
        )
        for wd in (False, True)
        for h in (
            {},
            ADAM_TENSORS if wd else {k: ADAM_TENSORS[k] for k in ("lr", "beta1", "beta2")},
        )
    ]
    + [
        ("AdamW", f, h, 1 if f["amsgrad"] else 3)
        for f in _flag_grid(amsgrad=(False, True), maximize=(False, True), foreach=(None, False))
        for h in ({}, ADAM_TENSORS)
    ]
    + [
        ("Adagrad", f, {}, 3)
        for f in _flag_grid(
            weight_decay=(0, 0.1),
            lr_decay=(0, 0.1),
            initial_accumulator_value=(0, 0.1),
            maximize=(False, True),
        )
    ]
    + [
        ("RMSprop", f, {}, 1 if f["centered"] else 3)
        for f in _flag_grid(
            centered=(False, True), momentum=(0, 0.5), weight_decay=(0, 0.1), maximize=(False, True)
        )
    ]
    + [
        ("SGD", f, h, 3)
        for f in _flag_grid(momentum=(0, 0.5), nesterov=(False, True), maximize=(False, True))
        if f["momentum"] or not f["nesterov"]
        for h in ({}, {"weight_decay": 0.1}, {"lr": 0.05, "weight_decay": 0.1})
        # a plain momentum step keeps the buffer a tensor lr multiplies: refused below
        if "lr" not in h or not f["momentum"] or f["nesterov"]
    ]
)


def _case_id(case: tuple) -> str:
    name, flags, hyper, steps = case
    on = [
        k if v is True else f"{k}={v}"
        for k, v in flags.items()
        if v not in (False, 0, None) or k == "foreach"
    ]
    return "-".join([name, *on, *(f"T{k}" for k in hyper), f"{steps}steps"])


@pytest.mark.parametrize("case", ALLOWED, ids=_case_id)
def test_meta_gradients_match_torch(case: tuple) -> None:
    name, flags, hyper, steps = case
    theirs = meta_run(torch, name, flags, hyper, steps)
    ours = meta_run(reimpl, name, flags, hyper, steps)
    assert_close_tree(ours.meta_loss, theirs.meta_loss, TOL, "meta_loss")
    assert_close_tree(ours.params, theirs.params, TOL, "params")
    assert_close_tree(ours.state, theirs.state, TOL, "state")
    # every meta-parameter gets a gradient, on both sides, and they agree
    assert all(g is not None for g in theirs.grads)
    assert_close_tree(ours.grads, theirs.grads, TOL, "meta-gradients")


REFUSED = [
    # autograd cannot replay an update whose saved input a later step overwrote
    ("Adam", {"amsgrad": True}, {}, 3),
    ("AdamW", {"amsgrad": True}, ADAM_TENSORS, 2),
    ("RMSprop", {"centered": True, "momentum": 0.5}, {}, 3),
    ("SGD", {"momentum": 0.5}, {"lr": 0.01}, 3),
    # torch's Adagrad and RMSprop pass lr and weight_decay as Python numbers only
    ("Adagrad", {}, {"lr": 0.1}, 1),
    ("Adagrad", {}, {"weight_decay": 0.1}, 1),
    ("RMSprop", {}, {"lr": 0.01}, 1),
    ("RMSprop", {"momentum": 0.5}, {"lr": 0.01}, 1),
    ("RMSprop", {}, {"weight_decay": 0.1}, 1),
]


@pytest.mark.parametrize("case", REFUSED, ids=_case_id)
def test_meta_gradients_refused_like_torch(case: tuple) -> None:
    same_error(lambda: meta_run(torch, *case), lambda: meta_run(reimpl, *case))


def _step_once(lib: Any, name: str, **kwargs: Any) -> None:
    params = [torch.zeros(3, dtype=torch.float64)]
    params[0].grad = torch.ones(3, dtype=torch.float64)
    getattr(lib.optim, name)(params, **kwargs).step()


MISUSE = {
    **{
        f"{name}-foreach": (name, {"differentiable": True, "foreach": True})
        for name in ("Adam", "AdamW", "Adagrad", "RMSprop")
    },
    **{
        f"{name}-fused": (name, {"differentiable": True, "fused": True})
        for name in ("Adam", "AdamW", "Adagrad", "SGD")
    },
    "Adam-capturable-on-cpu": ("Adam", {"capturable": True}),
    "Adam-capturable-foreach-on-cpu": ("Adam", {"capturable": True, "foreach": True}),
    "RMSprop-capturable-on-cpu": ("RMSprop", {"capturable": True}),
    "RMSprop-capturable-foreach-on-cpu": ("RMSprop", {"capturable": True, "foreach": True}),
    "Adam-tensor-beta-foreach": (
        "Adam",
        {"betas": (torch.tensor(0.9), torch.tensor(0.99)), "foreach": True},
    ),
}


@pytest.mark.parametrize("case", MISUSE)
def test_refused_combinations_match_torch(case: str) -> None:
    name, kwargs = MISUSE[case]
    same_error(
        lambda: _step_once(torch, name, **kwargs), lambda: _step_once(reimpl, name, **kwargs)
    )


def test_a_step_that_requires_grad_is_refused_like_torch() -> None:
    def attempt(lib: Any) -> None:
        p = torch.zeros(3, dtype=torch.float64)
        p.grad = torch.ones(3, dtype=torch.float64)
        opt = lib.optim.Adam([p], differentiable=True)
        opt.step()
        opt.state[p]["step"].requires_grad_()
        opt.step()

    same_error(lambda: attempt(torch), lambda: attempt(reimpl))


@pytest.mark.parametrize(
    ("torch_fn", "ours_fn", "state_lists"),
    [
        (torch_adam, reimpl_adam, 4),
        (torch_adagrad, reimpl_adagrad, 2),
    ],
    ids=["adam", "adagrad"],
)
def test_functional_fused_refuses_differentiable_like_torch(torch_fn, ours_fn, state_lists) -> None:
    """Only the functional API reaches the fused kernels with differentiable=True."""

    def call(fn: Any) -> None:
        p = torch.zeros(3)
        lists = [[torch.zeros(3)] for _ in range(state_lists - 1)]
        hyper = (
            {"amsgrad": False, "beta1": 0.9, "beta2": 0.99, "lr": 0.1, "weight_decay": 0.0}
            if state_lists == 4
            else {"lr": 0.1, "weight_decay": 0.0, "lr_decay": 0.0}
        )
        fn([p], [torch.ones(3)], *lists, [torch.zeros(())], fused=True, differentiable=True,
           eps=1e-8, maximize=False, **hyper)  # fmt: skip

    same_error(lambda: call(torch_fn), lambda: call(ours_fn))
