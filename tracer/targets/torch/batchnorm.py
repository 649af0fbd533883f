"""``bn.forward`` evidence and ``bn.running_stats`` spans of torch's BatchNorm layers.

Seam: ``_BatchNorm.forward`` wrapped for the run (BatchNorm1d/2d/3d and the
lazy ones inherit it). Around torch's own forward, the wrapper records what
reimpl's ``_BatchNorm.forward`` records, with reimpl's own helpers
(``reimpl/nn/modules/batchnorm.py``): a ``bn.forward`` instant when the layer's
state changes (train mode, grad and inference mode, values per channel:
``torchscope check``'s ``bn-*`` rules read it) and a ``bn.running_stats`` span
around the call when its running-statistics state changes, with the averaging
factor torch is about to use (worked out as torch's forward does, before it
counts the batch). A steady layer costs the wrapper, one helper call and one
tuple compare (``_evidence``). One Python call per layer call: a wrapper on
``F.batch_norm`` told by the layer's forward which layer calls it cost twice
that (5.6% of the 50-block BatchNorm MLP's step against 2-3%). ``F.batch_norm``
called directly, outside a BatchNorm layer, records nothing. torch's
SyncBatchNorm runs its own forward and autograd function on CUDA: its
statistics exchange shows as the ``collective.*`` spans of the collectives seam;
its ``bn.stats``/``bn.elemt``/``bn.backward_*`` kernels are not seen.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
from torch.nn.modules.batchnorm import _BatchNorm

from reimpl import _trace
from reimpl.nn.modules.batchnorm import _evidence, _running_stats_end
from tracer.targets.torch.attach import Options, Patches


def _factor(layer: Any) -> float:
    """The averaging factor torch's ``_BatchNorm.forward`` is about to use (it
    counts the batch first: with ``momentum=None``, 1 / (batches seen + 1))."""
    momentum = layer.momentum
    if momentum is not None:
        return momentum
    count = layer.num_batches_tracked
    if layer.training and layer.track_running_stats and count is not None:
        return 1.0 / (float(count) + 1.0)
    return 0.0


def _traced_forward(forward: Callable) -> Callable:
    """``_BatchNorm.forward`` recording reimpl's evidence around torch's own."""

    @functools.wraps(forward)
    def wrapper(self: Any, input: torch.Tensor) -> Any:
        if _trace.sink is None:
            return forward(self, input)
        if self.training:
            if input.dim() <= 1:  # torch's own check raises its own error
                return forward(self, input)
            bn_training = True
        else:  # torch reads the buffers through Module.__getattr__: only here
            bn_training = self.running_mean is None and self.running_var is None
        momentum = self.momentum
        factor = _factor(self) if momentum is None else momentum
        begun = _evidence(self, input, 1, factor, bn_training, counted=False)
        out = forward(self, input)
        if begun is not None:
            _running_stats_end(self, begun)
        return out

    return wrapper


def install(patches: Patches, options: Options) -> None:
    """Wraps ``_BatchNorm.forward`` (BatchNorm1d/2d/3d and the lazy ones inherit it)."""
    patches.wrap(_BatchNorm, "forward", _traced_forward)
