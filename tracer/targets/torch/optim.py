"""``optim.step`` and ``optim.zero_grad`` spans of torch.optim optimizers.

Seams: torch's global optimizer step hooks (``register_optimizer_step_pre_hook``
and ``..._post_hook``: the span covers the step and the optimizer's own hooks,
which torch runs inside the global ones), and ``Optimizer.zero_grad`` and
``Module.zero_grad``, ``Optimizer.add_param_group`` (``optim.add_param_group``,
the constructor's groups included), ``state_dict`` and ``load_state_dict``
(``optim.state_dict``) wrapped on their classes for the run. The step's
attributes are reimpl's (``reimpl/optim/optimizer.py``), evidence included:
``id``, ``no_grad``, ``param_names``. torch's per-group and per-parameter
updates run inside its kernels (foreach, fused) with no seam: no
``optim.group``/``optim.update`` spans. A step that raises leaves no span
(torch calls no post-hook then).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from threading import get_ident
from time import perf_counter_ns
from typing import Any

import torch
import torch.optim.optimizer as torch_optimizer

from reimpl import _trace
from reimpl.optim.optimizer import _added_group, _step_evidence
from tracer.targets.torch.attach import Options, Patches

_open: dict[int, tuple[int, int, dict]] = {}
"""id(optimizer) -> (span id, start, evidence) between its pre- and post-hook."""


def _step_pre(optimizer: Any, args: tuple, kwargs: dict) -> None:
    sink = _trace.sink
    if sink is not None:
        _open[id(optimizer)] = (sink.next_id(), perf_counter_ns(), _step_evidence(optimizer, sink))


def _step_post(optimizer: Any, args: tuple, kwargs: dict) -> None:
    opened = _open.pop(id(optimizer), None)
    sink = _trace.sink
    if sink is None or opened is None:
        return
    sid, t0, evidence = opened
    cls = type(optimizer)
    step = cls.step
    attrs = {
        "optimizer": cls.__name__,
        "groups": len(optimizer.param_groups),
        "params": sum(len(g["params"]) for g in optimizer.param_groups),
        **evidence,
    }
    func = f"{getattr(step, '__module__', cls.__module__)}.{getattr(step, '__qualname__', 'step')}"
    sink.append((sid, 0, get_ident(), t0, perf_counter_ns(), "optim.step", f"{cls.__name__}.step",
                 func, attrs))  # fmt: skip


def _traced_zero_grad(kind: str, suffix: str, zero_grad: Callable) -> Callable:
    """``zero_grad`` inside a ``kind`` span named as reimpl names it."""
    func = f"{zero_grad.__module__}.{zero_grad.__qualname__}"

    @functools.wraps(zero_grad)
    def wrapper(self: Any, set_to_none: bool = True) -> None:
        if _trace.sink is None:
            return zero_grad(self, set_to_none)
        with _trace.span(kind, type(self).__name__ + suffix, func=func,
                         set_to_none=set_to_none):  # fmt: skip
            return zero_grad(self, set_to_none)

    return wrapper


def _traced_add_param_group(add_param_group: Callable) -> Callable:
    """``add_param_group`` (the constructor's groups included) inside an
    ``optim.add_param_group`` span with reimpl's attributes."""
    func = f"{add_param_group.__module__}.{add_param_group.__qualname__}"

    @functools.wraps(add_param_group)
    def wrapper(self: Any, param_group: dict) -> None:
        if _trace.sink is None:
            return add_param_group(self, param_group)
        name = f"{type(self).__name__}.add_param_group"
        with _trace.span("optim.add_param_group", name, func=func) as span:
            add_param_group(self, param_group)
            span.set(**_added_group(self.param_groups))
        return None

    return wrapper


def _traced_state_dict_op(name: str, method: Callable) -> Callable:
    """``Optimizer.state_dict`` / ``load_state_dict`` in an ``optim.state_dict`` span."""
    func = f"{method.__module__}.{method.__qualname__}"

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        if _trace.sink is None:
            return method(self, *args, **kwargs)
        with _trace.span("optim.state_dict", name, func=func, optimizer=type(self).__name__):
            return method(self, *args, **kwargs)

    return wrapper


def install(patches: Patches, options: Options) -> None:
    """Registers the global step hooks, wraps both ``zero_grad``s and ``add_param_group``."""
    patches.wrap(torch.optim.Optimizer, "add_param_group", _traced_add_param_group)
    for name in ("state_dict", "load_state_dict"):
        patches.wrap(torch.optim.Optimizer, name, functools.partial(_traced_state_dict_op, name))
    patches.on_detach(_open.clear)
    patches.on_detach(torch_optimizer.register_optimizer_step_pre_hook(_step_pre).remove)
    patches.on_detach(torch_optimizer.register_optimizer_step_post_hook(_step_post).remove)
    patches.wrap(
        torch.optim.Optimizer,
        "zero_grad",
        functools.partial(_traced_zero_grad, "optim.zero_grad", ".zero_grad"),
    )
    patches.wrap(
        torch.nn.Module, "zero_grad", functools.partial(_traced_zero_grad, "module.zero_grad", "")
    )
