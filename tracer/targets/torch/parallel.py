"""``dp.*`` spans of torch.nn.DataParallel, and names for its replica threads.

Seams: ``replicate``, ``scatter_kwargs``, ``parallel_apply`` and ``gather``
wrapped, for the run, where ``DataParallel`` and ``data_parallel`` look them
up (``torch.nn.parallel.data_parallel``'s globals) and where users import them
from (``torch.nn.parallel``). Spans, names and attributes as reimpl's
(``reimpl/nn/parallel/``): ``dp.scatter`` (``chunks``: shapes per device),
``dp.replicate`` (``devices``), ``dp.parallel_apply`` (``replicas``),
``dp.replica`` on each replica thread (linked to its ``dp.parallel_apply``),
``dp.gather`` (``target``, ``dim``).

torch's replica threads are anonymous (a closure inside ``parallel_apply``
starts them): each replica is handed to it inside a small callable that,
on its thread, names the thread ``replica i`` serving ``cuda:d`` in the
trace's thread table, then opens the ``dp.replica`` span and calls the
replica. ``dp.broadcast`` and ``dp.reduce_add`` (inside torch's C++
``Broadcast``/``ReduceAddCoalesced``) are not seen.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from threading import get_ident
from typing import Any

import torch
import torch.nn.parallel

from reimpl import _trace
from reimpl.nn.parallel.scatter_gather import _chunk_shapes
from tracer.targets.torch.attach import Options, Patches

_FUNCS = {
    "replicate": "torch.nn.parallel.replicate.replicate",
    "scatter_kwargs": "torch.nn.parallel.scatter_gather.scatter_kwargs",
    "parallel_apply": "torch.nn.parallel.parallel_apply.parallel_apply",
    "gather": "torch.nn.parallel.scatter_gather.gather",
}


def _device_name(device: Any) -> str:
    if isinstance(device, torch.device):
        return str(device)
    if isinstance(device, int):
        return f"cuda:{device}"
    return str(device)


def _traced_replicate(replicate: Callable) -> Callable:
    @functools.wraps(replicate)
    def wrapper(network: Any, devices: Any, *args: Any, **kwargs: Any) -> Any:
        with _trace.span("dp.replicate", type(network).__name__, func=_FUNCS["replicate"],
                         devices=[_device_name(d) for d in devices]):  # fmt: skip
            return replicate(network, devices, *args, **kwargs)

    return wrapper


def _traced_scatter_kwargs(scatter_kwargs: Callable) -> Callable:
    @functools.wraps(scatter_kwargs)
    def wrapper(inputs: Any, kwargs: Any, target_gpus: Any, dim: int = 0) -> Any:
        with _trace.span("dp.scatter", "scatter_kwargs", func=_FUNCS["scatter_kwargs"],
                         dim=dim) as span:  # fmt: skip
            out = scatter_kwargs(inputs, kwargs, target_gpus, dim)
            if _trace.sink is not None:
                devices = [_device_name(d) for d in target_gpus]
                span.set(chunks=_chunk_shapes(list(out[0]), list(out[1]), devices))
        return out

    return wrapper


def _traced_gather(gather: Callable) -> Callable:
    @functools.wraps(gather)
    def wrapper(outputs: Any, target_device: Any, dim: int = 0) -> Any:
        with _trace.span("dp.gather", "gather", func=_FUNCS["gather"],
                         target=_device_name(target_device), dim=dim):  # fmt: skip
            return gather(outputs, target_device, dim)

    return wrapper


class _Replica:
    """One replica as ``parallel_apply`` calls it, on its own thread."""

    __slots__ = ("caller", "device", "index", "link", "module")

    def __init__(self, module: Any, index: int, device: Any, link: int, caller: int) -> None:
        self.module = module
        self.index = index
        self.device = device
        self.link = link
        self.caller = caller

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        device = self.device
        if device is None:  # as torch finds it: the first tensor's device
            t = next((a for a in args if isinstance(a, torch.Tensor)), None)
            device = t.device if t is not None else "cpu"
        name = _device_name(device)
        if get_ident() != self.caller:  # a thread of its own (one replica runs inline)
            _trace.set_thread_info(f"replica {self.index}", name)
        with _trace.span("dp.replica", f"replica {self.index}", func=_FUNCS["parallel_apply"],
                         link=self.link, index=self.index, device=name):  # fmt: skip
            return self.module(*args, **kwargs)


def _traced_parallel_apply(parallel_apply: Callable) -> Callable:
    @functools.wraps(parallel_apply)
    def wrapper(modules: Any, inputs: Any, kwargs_tup: Any = None, devices: Any = None) -> Any:
        if _trace.sink is None:
            return parallel_apply(modules, inputs, kwargs_tup, devices)
        with _trace.span("dp.parallel_apply", "parallel_apply", func=_FUNCS["parallel_apply"],
                         replicas=len(modules)) as span:  # fmt: skip
            caller = get_ident()
            wrapped = [
                _Replica(m, i, devices[i] if devices else None, span.id, caller)
                for i, m in enumerate(modules)
            ]
            return parallel_apply(wrapped, inputs, kwargs_tup, devices)

    return wrapper


_WRAPPERS = {
    "replicate": _traced_replicate,
    "scatter_kwargs": _traced_scatter_kwargs,
    "parallel_apply": _traced_parallel_apply,
    "gather": _traced_gather,
}


def install(patches: Patches, options: Options) -> None:
    """Wraps the four steps where DataParallel and users look them up."""
    data_parallel = sys.modules["torch.nn.parallel.data_parallel"]
    for namespace in (data_parallel, torch.nn.parallel):
        for name, wrap in _WRAPPERS.items():
            if name in vars(namespace):
                patches.wrap(namespace, name, wrap)
