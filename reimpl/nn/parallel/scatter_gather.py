"""Splitting inputs over devices and joining outputs, as in ``torch/nn/parallel/scatter_gather.py``.

``scatter`` walks tensors, tuples, lists, dicts and namedtuples and splits
every tensor along ``dim`` with the ``Scatter`` autograd Function (anything
else is repeated once per device); ``scatter_kwargs`` does it for positional
and keyword arguments together; ``gather`` walks the replicas' outputs and
joins every tensor with ``Gather``.

torchscope records a ``dp.scatter`` span (the chunk shapes per device) and a
``dp.gather`` span. Left out: the deprecated public ``is_namedtuple``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ... import _trace
from ..._trace import mirrors
from ._functions import Gather, Scatter

__all__ = ["gather", "scatter", "scatter_kwargs"]


@mirrors("torch.nn.parallel.scatter_gather._is_namedtuple")
def _is_namedtuple(obj: Any) -> bool:
    # Check if type was created from collections.namedtuple or a typing.NamedTuple.
    return isinstance(obj, tuple) and hasattr(obj, "_asdict") and hasattr(obj, "_fields")


@mirrors("torch.nn.parallel.scatter_gather.scatter")
def scatter(inputs: Any, target_gpus: Sequence[Any], dim: int = 0) -> Any:
    r"""Slice tensors into approximately equal chunks and distributes them across given GPUs.

    Duplicates references to objects that are not tensors. (Upstream returns a
    tuple for a single tensor and a list otherwise; so does this.)
    """

    def scatter_map(obj: Any) -> Any:
        if isinstance(obj, torch.Tensor):
            return Scatter.apply(target_gpus, None, dim, obj)
        if _is_namedtuple(obj):
            return [type(obj)(*args) for args in zip(*map(scatter_map, obj))]
        if isinstance(obj, tuple) and len(obj) > 0:
            return list(zip(*map(scatter_map, obj)))
        if isinstance(obj, list) and len(obj) > 0:
            return [list(i) for i in zip(*map(scatter_map, obj))]
        if isinstance(obj, dict) and len(obj) > 0:
            return [type(obj)(i) for i in zip(*map(scatter_map, obj.items()))]
        return [obj for _ in target_gpus]

    # After scatter_map is called, a scatter_map cell will exist. This cell
    # has a reference to the actual function scatter_map, which has references
    # to a closure that has a reference to the scatter_map cell (because the
    # fn is recursive). To avoid this reference cycle, we set the function to
    # None, clearing the cell
    try:
        res = scatter_map(inputs)
    finally:
        scatter_map = None  # type: ignore[assignment]
    return res


@mirrors("torch.nn.parallel.scatter_gather.scatter_kwargs")
def scatter_kwargs(
    inputs: tuple[Any, ...],
    kwargs: dict[str, Any] | None,
    target_gpus: Sequence[Any],
    dim: int = 0,
) -> tuple[tuple[Any, ...], tuple[dict[str, Any], ...]]:
    r"""Scatter with support for kwargs dictionary."""
    with _trace.span("dp.scatter", "scatter_kwargs", dim=dim) as span:
        scattered_inputs = scatter(inputs, target_gpus, dim) if inputs else []
        scattered_kwargs = scatter(kwargs, target_gpus, dim) if kwargs else []
        if len(scattered_inputs) < len(scattered_kwargs):
            scattered_inputs.extend(
                () for _ in range(len(scattered_kwargs) - len(scattered_inputs))
            )
        elif len(scattered_kwargs) < len(inputs):
            scattered_kwargs.extend(
                {} for _ in range(len(scattered_inputs) - len(scattered_kwargs))
            )
        if _trace.sink is not None:  # recording: which chunk went where
            span.set(chunks=_chunk_shapes(scattered_inputs, scattered_kwargs, target_gpus))
    return tuple(scattered_inputs), tuple(scattered_kwargs)


def _chunk_shapes(inputs: list, kwargs: list, devices: Sequence[Any]) -> dict[str, list]:
    """``{device: [shape, ...]}`` of every tensor each device received."""
    out: dict[str, list] = {}
    for device, args, kw in zip(devices, inputs, kwargs or [{}] * len(inputs)):
        shapes: list[list[int]] = []
        _collect_shapes((args, kw), shapes)
        out[str(device)] = shapes
    return out


def _collect_shapes(obj: Any, shapes: list) -> None:
    if isinstance(obj, torch.Tensor):
        shapes.append(list(obj.shape))
    elif isinstance(obj, (list, tuple)):
        for item in obj:
            _collect_shapes(item, shapes)
    elif isinstance(obj, dict):
        for item in obj.values():
            _collect_shapes(item, shapes)


@mirrors("torch.nn.parallel.scatter_gather.gather")
def gather(outputs: Any, target_device: Any, dim: int = 0) -> Any:
    r"""Gather tensors from different GPUs on a specified device.

    Takes one object per device (tensors, or dicts, namedtuples, tuples and
    lists of them) and returns one object on ``target_device``.
    """

    def gather_map(outputs: Any) -> Any:
        out = outputs[0]
        if isinstance(out, torch.Tensor):
            return Gather.apply(target_device, dim, *outputs)
        if out is None:
            return None
        if isinstance(out, dict):
            if not all(len(out) == len(d) for d in outputs):
                raise ValueError("All dicts must have the same number of keys")
            return type(out)((k, gather_map([d[k] for d in outputs])) for k in out)
        if _is_namedtuple(out):
            return type(out)._make(map(gather_map, zip(*outputs, strict=True)))
        return type(out)(map(gather_map, zip(*outputs, strict=True)))

    # Recursive function calls like this create reference cycles.
    # Setting the function to None clears the refcycle.
    with _trace.span("dp.gather", "gather", target=str(target_device), dim=dim):
        try:
            res = gather_map(outputs)
        finally:
            gather_map = None  # type: ignore[assignment]
    return res
