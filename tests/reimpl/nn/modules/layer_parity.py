"""Layer and container parity on top of the shared ``tests/parity.py``.

``parity.pair`` copies torch's weights into reimpl's; for layers we want more:
both sides built from the same seed *without* copying, to prove that
``reset_parameters`` draws the same numbers in the same order. Steps and
state_dicts are then compared with ``parity``'s own helpers, exactly
(``atol=rtol=0``: the kernels are torch's on both sides). ``assert_same_script``
runs one container script on ``torch.nn`` and on ``reimpl.nn``.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

import torch
from parity import assert_same_state_dict, default_loss, raised, run_step
from parity import assert_same_step as _assert_same_steps

import reimpl.nn


def seeded_pair(name: str, *args: Any, seed: int = 0, **kwargs: Any) -> tuple[Any, Any]:
    """``torch.nn.<name>`` and ``reimpl.nn.<name>`` built after the same seed.

    Asserts what must already agree before any forward: state_dict (same
    init), repr, the attributes the layer stores, and ``__constants__``.
    """
    torch.manual_seed(seed)
    theirs = getattr(torch.nn, name)(*args, **kwargs)
    torch.manual_seed(seed)
    ours = getattr(reimpl.nn, name)(*args, **kwargs)
    assert_same_state(theirs, ours)
    assert repr(ours) == repr(theirs), (repr(ours), repr(theirs))
    assert _own_attributes(ours, reimpl.nn.Module()) == _own_attributes(theirs, torch.nn.Module())
    assert getattr(type(ours), "__constants__", None) == getattr(
        type(theirs), "__constants__", None
    )
    for method in ("__init__", "forward", "extra_repr"):
        assert _signature(ours, method) == _signature(theirs, method), method
    return theirs, ours


def _signature(m: Any, method: str) -> list[tuple[str, Any, Any]]:
    """Parameter names, kinds and defaults (annotations differ in spelling, not meaning)."""
    params = inspect.signature(getattr(type(m), method)).parameters.values()
    return [(p.name, p.kind, p.default) for p in params]


def _own_attributes(m: Any, plain: Any) -> dict[str, Any]:
    """The attributes a layer adds to a bare Module's ``__dict__`` (in_features, stride...)."""
    return {k: v for k, v in vars(m).items() if k not in vars(plain)}


def assert_same_state(theirs: Any, ours: Any) -> None:
    """Equal state_dicts (keys, order, values) and the same trainable parameters."""
    assert_same_state_dict(ours.state_dict(), theirs.state_dict())
    trainable = [(n, p.requires_grad) for n, p in theirs.named_parameters()]
    assert [(n, p.requires_grad) for n, p in ours.named_parameters()] == trainable


def assert_same_step(
    theirs: Any, ours: Any, *inputs: Any, seed: int = 1, backward: bool = True, **kw: Any
) -> Any:
    """One forward and backward on both sides (``parity.run_step``), compared exactly.

    Each side runs after the same seed, so dropout masks agree; parameters are
    compared after the step too, since a forward may change them in place
    (Embedding's ``max_norm``). ``backward=False`` for a frozen layer.
    Returns reimpl's output.
    """
    torch.manual_seed(seed)
    loss_fn = default_loss if backward else None
    step_t = run_step(theirs, inputs, loss_fn=loss_fn, kwargs=kw)
    torch.manual_seed(seed)
    step_o = run_step(ours, inputs, loss_fn=loss_fn, kwargs=kw)
    _assert_same_steps(step_o, step_t, atol=0, rtol=0)
    assert_same_state(theirs, ours)
    return step_o.output


def assert_raises_like_torch(exc: type[BaseException], call: Any) -> None:
    """``call(torch.nn)`` and ``call(reimpl.nn)`` raise ``exc`` with the same message.

    Like ``parity.same_error``, but a printed set is compared sorted: its
    order depends on the process's string hashing (torch's set literal was
    compiled in another process).
    """
    et, eo = raised(lambda: call(torch.nn)), raised(lambda: call(reimpl.nn))
    assert isinstance(et, exc), f"torch raised {et!r}"
    assert type(eo) is type(et), (eo, et)
    assert _normalise(str(eo)) == _normalise(str(et)), (eo, et)


def _normalise(message: str) -> str:
    """Reads ``reimpl.nn.`` as ``torch.nn.`` and prints sets sorted."""
    message = message.replace("reimpl.nn.", "torch.nn.")
    return re.sub(r"\{[^{}]*\}", lambda m: str(sorted(m.group(0)[1:-1].split(", "))), message)


def describe(x: Any) -> Any:
    """A comparable summary: a module becomes its repr and state_dict, tensors their values."""
    if isinstance(x, (torch.nn.Module, reimpl.nn.Module)):
        return ("module", repr(x), describe(dict(x.state_dict())))
    if isinstance(x, torch.Tensor):
        return ("tensor", type(x).__name__, x.tolist(), x.requires_grad)
    if isinstance(x, dict):
        return {k: describe(v) for k, v in x.items()}, list(x)
    if isinstance(x, (list, tuple)):
        return type(x).__name__, [describe(v) for v in x]
    return x


def assert_same_script(script: Any, seed: int = 0) -> Any:
    """Runs ``script(nn)`` for torch.nn and reimpl.nn from one seed; same result."""
    torch.manual_seed(seed)
    theirs = script(torch.nn)
    torch.manual_seed(seed)
    ours = script(reimpl.nn)
    assert describe(ours) == describe(theirs), (describe(ours), describe(theirs))
    return ours
