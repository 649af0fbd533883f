"""Runs one optimizer in torch and in reimpl side by side and compares them.

Both sides start from the same weights and receive the same gradients at
every step (drawn once, cloned into each side), so any difference in
parameters or state is a difference in the update rule.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

import reimpl.optim

SHAPES = ((4, 3), (5,), (2, 2))
# half precision runs torch's own kernels on both sides: equal bits expected
TOL = {torch.float64: 1e-12, torch.float32: 1e-6, torch.float16: 0.0, torch.bfloat16: 0.0}


def twin_params(
    dtype: torch.dtype = torch.float64,
    shapes: tuple = SHAPES,
    seed: int = 0,
    requires_grad: bool = True,
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Leaf tensors with equal values for torch and for reimpl.

    ``requires_grad=False`` suits ``differentiable=True`` optimizers, whose
    step runs with autograd on: an in-place update of a leaf that requires
    grad is an error there, in torch as in reimpl.
    """
    g = torch.Generator().manual_seed(seed)
    weights = [torch.randn(s, generator=g, dtype=dtype) for s in shapes]
    return (
        [w.clone().requires_grad_(requires_grad) for w in weights],
        [w.clone().requires_grad_(requires_grad) for w in weights],
    )


def two_groups(params: list[torch.Tensor], second: dict[str, Any]) -> list[dict[str, Any]]:
    """Group 0 holds the first param with defaults; group 1 the rest, with ``second``."""
    return [{"params": params[:1]}, {"params": params[1:], **second}]


def feed_same_grads(
    theirs: list[torch.Tensor],
    ours: list[torch.Tensor],
    gen: torch.Generator,
    step: int,
    late: bool = True,
) -> None:
    """Sets equal fresh gradients; the last param has none for the first 3 steps.

    A late first gradient makes a param's state appear after its group-mates',
    which takes the foreach paths through their "some buffers missing" branches.
    """
    for i, (a, b) in enumerate(zip(theirs, ours)):
        if late and i == len(theirs) - 1 and step < 3:
            a.grad = b.grad = None
            continue
        grad = torch.randn(a.shape, generator=gen, dtype=a.dtype)
        a.grad = grad.clone()
        b.grad = grad.clone()


def assert_close_tree(ours: Any, theirs: Any, tol: float, where: str = "") -> None:
    """Equal structure; tensors equal within ``tol`` (and same dtype); the rest equal."""
    if isinstance(theirs, torch.Tensor):
        assert isinstance(ours, torch.Tensor), where
        assert ours.dtype == theirs.dtype, where
        assert ours.shape == theirs.shape, where
        torch.testing.assert_close(ours, theirs, rtol=tol, atol=tol, msg=where)
    elif isinstance(theirs, dict):
        assert isinstance(ours, dict), where
        assert list(ours) == list(theirs), f"{where}: keys {list(ours)} != {list(theirs)}"
        for k in theirs:
            assert_close_tree(ours[k], theirs[k], tol, f"{where}[{k!r}]")
    elif isinstance(theirs, (list, tuple)):
        assert type(ours) is type(theirs), where
        assert len(ours) == len(theirs), where
        for i, (o, t) in enumerate(zip(ours, theirs)):
            assert_close_tree(o, t, tol, f"{where}[{i}]")
    else:
        assert ours == theirs, f"{where}: {ours!r} != {theirs!r}"


def run_twins(
    name: str,
    kwargs: dict[str, Any],
    second: dict[str, Any],
    dtype: torch.dtype = torch.float64,
    steps: int = 50,
    late: bool = True,
    requires_grad: bool = True,
) -> tuple[Any, Any, list[torch.Tensor], list[torch.Tensor]]:
    """``torch.optim.<name>`` and ``reimpl.optim.<name>`` after ``steps`` equal steps.

    Asserts equal parameters and equal state dicts (torch's format) at the end.
    ``late=False`` gives every param a grad from the first step on.
    """
    theirs_p, ours_p = twin_params(dtype, requires_grad=requires_grad)
    theirs = getattr(torch.optim, name)(two_groups(theirs_p, second), **kwargs)
    ours = getattr(reimpl.optim, name)(two_groups(ours_p, second), **kwargs)
    gen = torch.Generator().manual_seed(1)
    for step in range(steps):
        feed_same_grads(theirs_p, ours_p, gen, step, late)
        theirs.step()
        ours.step()
    tol = TOL[dtype]
    assert_close_tree(ours_p, theirs_p, tol, "params")
    assert_close_tree(ours.state_dict(), theirs.state_dict(), tol, "state_dict")
    return theirs, ours, theirs_p, ours_p


def continue_twins(
    theirs: Any,
    ours: Any,
    theirs_p: list[torch.Tensor],
    ours_p: list[torch.Tensor],
    steps: int = 10,
    tol: float = 1e-12,
) -> None:
    """Steps two already-built optimizers with equal grads and compares the result."""
    gen = torch.Generator().manual_seed(2)
    for step in range(steps):
        feed_same_grads(theirs_p, ours_p, gen, step + 3)
        theirs.step()
        ours.step()
    assert_close_tree(ours_p, theirs_p, tol, "params")
    assert_close_tree(ours.state_dict(), theirs.state_dict(), tol, "state_dict")


def raised(fn: Callable[[], Any]) -> tuple[type, str]:
    """The exception type and message ``fn`` raises (fails if it raises none)."""
    try:
        fn()
    except Exception as e:
        return type(e), str(e)
    raise AssertionError("expected an exception")
