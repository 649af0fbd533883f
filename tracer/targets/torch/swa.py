"""``swa.update`` and ``swa.update_bn`` spans of torch.optim.swa_utils.

Seams: ``AveragedModel.update_parameters`` and the module function
``update_bn`` wrapped for the run (a program that imported ``update_bn`` by
name before the recording started keeps the unwrapped one). Names and
attributes as reimpl's (``reimpl/optim/swa_utils.py``); ``SWALR`` steps are
``sched.step`` spans of the schedulers seam.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch.optim.swa_utils as torch_swa
from torch.nn.modules.batchnorm import _BatchNorm

from reimpl import _trace
from tracer.targets.torch.attach import Options, Patches


def _traced_update_parameters(update: Callable) -> Callable:
    func = f"{update.__module__}.{update.__qualname__}"

    @functools.wraps(update)
    def wrapper(self: Any, model: Any) -> Any:
        attrs = {"n_averaged": int(self.n_averaged), "use_buffers": self.use_buffers}
        with _trace.span("swa.update", type(model).__name__, func=func, **attrs):
            return update(self, model)

    return wrapper


def _traced_update_bn(update_bn: Callable) -> Callable:
    func = f"{update_bn.__module__}.{update_bn.__qualname__}"

    @functools.wraps(update_bn)
    def wrapper(loader: Any, model: Any, *args: Any, **kwargs: Any) -> Any:
        if _trace.sink is None:
            return update_bn(loader, model, *args, **kwargs)
        with _trace.span("swa.update_bn", type(model).__name__, func=func) as sp:
            norms = sum(isinstance(m, _BatchNorm) for m in model.modules())
            batches = _Counted(loader)
            out = update_bn(batches if norms else loader, model, *args, **kwargs)
            if norms:  # as reimpl: nothing to say when the model has no BatchNorm
                sp.set(batchnorms=norms, batches=batches.n)
        return out

    return wrapper


class _Counted:
    """The loader ``update_bn`` iterates, counting the batches it hands out."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader
        self.n = 0

    def __iter__(self) -> Any:
        for batch in self.loader:
            self.n += 1
            yield batch


def install(patches: Patches, options: Options) -> None:
    """Wraps the two SWA entry points."""
    patches.wrap(torch_swa.AveragedModel, "update_parameters", _traced_update_parameters)
    patches.wrap(torch_swa, "update_bn", _traced_update_bn)
