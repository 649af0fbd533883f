"""``bn.forward`` evidence and ``bn.running_stats`` spans of torch's BatchNorm layers.

Seam: ``torch.nn.functional.batch_norm`` wrapped for the run (torch's
``_BatchNorm.forward`` calls it through the module, after counting the batch and
choosing the averaging factor, which it passes as ``momentum``). When the
call comes from a BatchNorm layer's ``forward`` (wrapped on ``_BatchNorm``
to say so), the wrapper records what reimpl's ``_BatchNorm.forward`` records,
with reimpl's own helpers (``reimpl/nn/modules/batchnorm.py``): a ``bn.forward``
instant when the layer's state changes (train mode, grad and inference mode,
values per channel: ``torchscope check``'s ``bn-*`` rules read it) and a
``bn.running_stats`` span around the call when its running-statistics state
changes. torch's SyncBatchNorm runs its own autograd function on CUDA: its
statistics exchange shows as the ``collective.*`` spans of the collectives seam;
its ``bn.stats``/``bn.elemt``/``bn.backward_*`` kernels are not seen.
"""

from __future__ import annotations

import functools
import inspect
import threading
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch.nn.modules.batchnorm import _BatchNorm

from reimpl import _trace
from reimpl.nn.modules.batchnorm import (
    _record_evidence,
    _running_stats_begin,
    _running_stats_end,
)
from tracer.targets.torch.attach import Options, Patches

_current = threading.local()
"""``layer``: the BatchNorm layer whose forward runs on this thread (None outside)."""


def _traced_forward(forward: Callable) -> Callable:
    """``_BatchNorm.forward`` telling ``F.batch_norm`` which layer calls it."""

    @functools.wraps(forward)
    def wrapper(self: Any, input: torch.Tensor) -> Any:
        if _trace.sink is None:
            return forward(self, input)
        outer = getattr(_current, "layer", None)
        _current.layer = self
        try:
            return forward(self, input)
        finally:
            _current.layer = outer

    return wrapper


def _layer() -> Any:
    return getattr(_current, "layer", None)


def _traced_batch_norm(batch_norm: Callable) -> Callable:
    @functools.wraps(batch_norm)
    def wrapper(input: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        layer = _layer() if _trace.sink is not None else None
        if layer is None:
            return batch_norm(input, *args, **kwargs)
        if len(args) == 7 and not kwargs:  # as torch's _BatchNorm.forward calls it
            training, factor = args[4], args[5]
        else:
            bound = _PARAMS.bind(input, *args, **kwargs).arguments
            training, factor = bound.get("training", False), bound.get("momentum", 0.1)
        if training:
            _record_evidence(layer, input, 1)
        begun = _running_stats_begin(layer, factor, training)
        out = batch_norm(input, *args, **kwargs)
        if begun is not None:
            _running_stats_end(layer, begun)
        return out

    return wrapper


_PARAMS = inspect.signature(F.batch_norm)


def install(patches: Patches, options: Options) -> None:
    """Wraps ``F.batch_norm`` (torch's BatchNorm layers look it up on the module) and
    ``_BatchNorm.forward`` (which says which layer calls it)."""
    patches.wrap(F, "batch_norm", _traced_batch_norm)
    patches.wrap(_BatchNorm, "forward", _traced_forward)
