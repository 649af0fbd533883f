"""``collective.<op>`` spans of torch.distributed's collectives.

Seam: the blocking collectives wrapped, for the run, on ``torch.distributed``
(where programs and torch's own SyncBatchNorm call them) and on
``torch.distributed.distributed_c10d`` (where they are defined). Each call
goes through reimpl's ``reimpl/_collectives.py: collective``, so the spans are
exactly reimpl's: ``group`` (``"world"`` or the group's global ranks,
``"0,1"``), ``seq`` (this process's count of that group's collectives, shared
with reimpl's own collectives), ``op``, ``sizes`` (the shapes this rank
contributed), ``dtype``, ``bytes``, ``backend``, ``world_size``, ``wait_ns``;
``torchscope merge`` matches them across ranks by (group, seq). With
``async_op=True`` the span covers the launch only (the wait happens in
``Work.wait``, not seen). A collective that torch runs through another
(``all_gather_object`` through ``all_gather``) records the inner one only.
"""

from __future__ import annotations

import functools
import inspect
import threading
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist

from reimpl import _trace
from reimpl._collectives import collective
from tracer.targets.torch.attach import Options, Patches

CONTRIBUTED = {
    "all_reduce": "tensor",
    "broadcast": "tensor",
    "reduce": "tensor",
    "all_gather": "tensor",
    "all_gather_into_tensor": "input_tensor",
    "reduce_scatter": "input_list",
    "reduce_scatter_tensor": "input",
    "all_to_all_single": "input",
    "all_to_all": "input_tensor_list",
    "gather": "tensor",
    "scatter": "tensor",
    "barrier": None,
}
"""Each wrapped collective -> the parameter holding what this rank contributes."""

_inside = threading.local()


def _tensors(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for t in value if isinstance(t, torch.Tensor)]
    return []


def _traced(op: str, fn: Callable) -> Callable:
    params = inspect.signature(fn)
    contributed = CONTRIBUTED[op]
    func = f"{fn.__module__}.{fn.__qualname__}"

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if _trace.sink is None or getattr(_inside, "on", False):
            return fn(*args, **kwargs)
        bound = params.bind(*args, **kwargs).arguments
        tensors = _tensors(bound.get(contributed)) if contributed else []
        _inside.on = True
        try:
            return collective(
                op, lambda: fn(*args, **kwargs), tensors, bound.get("group"), func=func
            )
        finally:
            _inside.on = False

    return wrapper


def install(patches: Patches, options: Options) -> None:
    """Wraps each collective where it is defined and where programs call it."""
    if not dist.is_available():
        return
    c10d = dist.distributed_c10d
    for op in CONTRIBUTED:
        original = getattr(c10d, op, None)
        if original is None:
            continue
        wrapped = _traced(op, original)
        patches.setattr(c10d, op, wrapped)
        if getattr(dist, op, None) is original:
            patches.setattr(dist, op, wrapped)
