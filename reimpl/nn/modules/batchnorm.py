"""BatchNorm and SyncBatchNorm modules, as in ``torch/nn/modules/batchnorm.py``.

Same classes, attributes, buffers, state-dict versioning and error messages as
upstream: ``_NormBase`` (parameters, running-stat buffers, reset, loading a
version-1 state dict), ``_BatchNorm`` (the forward that decides between batch
and running statistics), ``BatchNorm1d/2d/3d`` (only ``_check_input_dim``
differs) and ``SyncBatchNorm`` (statistics synchronised over a process group
by :class:`._functions.SyncBatchNorm`). The arithmetic of plain BatchNorm is
``torch.nn.functional.batch_norm``, exactly as upstream.

One deliberate difference: upstream SyncBatchNorm refuses CPU inputs; ours
accepts them and synchronises over gloo with numba kernels (see
``_batch_norm_kernels.py``). Left out: the ``LazyBatchNorm*`` classes and
``_LazyNormBase`` (lazy modules), and the long upstream docstrings.

Added for torchscope: while a recorder is attached, a forward that normalises
with batch statistics records a ``bn.forward`` instant inside its module's
span whenever its state differs from the module's last record: the evidence
of ``torchscope check``'s ``bn-*`` rules (train mode, grad and inference mode,
whether the running stats move, values per channel). Likewise a
``bn.running_stats`` span around the arithmetic whenever the layer's
running-statistics state (training flag, whether the buffers are updated, the
factor used) differs from its last record: the factor, the training flag and
norms of the running mean and variance before and after, never their values.
With a fixed momentum a training loop records each layer once (and once more
per switch to eval); with ``momentum=None`` the factor is 1/n, so every step.
"""

from __future__ import annotations

import weakref
from threading import get_ident
from time import perf_counter_ns
from typing import Any

import torch
from torch import Tensor
from torch.nn import functional as F

from ... import _trace
from ..._trace import mirrors
from .. import init
from ..parameter import Parameter
from ._functions import SyncBatchNorm as sync_batch_norm
from .module import Module

__all__ = ["BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "SyncBatchNorm"]

_EVIDENCE_FUNC = "reimpl.nn.modules.batchnorm._BatchNorm.forward"
_STATS_FUNC = "reimpl.nn.modules.batchnorm._BatchNorm._exponential_average_factor"
_SYNC_STATS_FUNC = "reimpl.nn.modules.batchnorm.SyncBatchNorm._exponential_average_factor"
_recorded: dict[int, tuple] = {}
"""id(module) -> the state its last ``bn.forward`` recorded, for the current sink."""
_stats_recorded: dict[int, tuple] = {}
"""id(module) -> the running-statistics state its last ``bn.running_stats`` recorded."""
_steady: dict[int, tuple] = {}
"""id(module) -> what ``_evidence`` last saw: both records are current while it holds."""
_recorded_for: Any = None  # a weakref to the sink these dicts belong to


def _for_sink(sink: Any) -> None:
    """Forgets what an earlier recording recorded: a new sink gets every state afresh."""
    global _recorded_for
    if _recorded_for is None or _recorded_for() is not sink:
        _recorded.clear()
        _stats_recorded.clear()
        _steady.clear()
        _recorded_for = weakref.ref(sink)


def _evidence(
    module: _BatchNorm,
    input: Tensor,
    world_size: int,
    factor: float,
    bn_training: bool,
    counted: bool = True,
) -> tuple | None:
    """A traced forward's two records: the ``bn.forward`` evidence (on batch
    statistics) and the opening of ``bn.running_stats``; what
    ``_running_stats_begin`` returns.

    A layer in a steady loop costs one call and one tuple compare: the key
    holds what both states are made of, so while it repeats neither record
    would change (three calls cost about 2.5 us a layer, 1.6% of the
    50-block BatchNorm MLP's step).
    """
    grad = torch.is_grad_enabled()
    key = (
        module.training,
        bn_training,
        grad,
        not grad and torch.is_inference_mode_enabled(),
        input.numel(),
        world_size,
        factor,
        module.track_running_stats,
    )
    if _steady.get(id(module)) == key and _recorded_for() is _trace.sink:
        return None
    if bn_training:
        _record_evidence(module, input, world_size)
    begun = _running_stats_begin(module, factor, bn_training, counted)
    _steady[id(module)] = key
    return begun


def _record_evidence(module: _BatchNorm, input: Tensor, world_size: int) -> None:
    """A ``bn.forward`` instant when a forward on batch statistics (traced only)
    differs from the module's last recorded one.

    Records per module only the changes of (train mode, grad mode, inference
    mode, values, ranks pooled): a training loop records each layer once, and
    an evaluation under ``no_grad`` or a smaller batch once more. A record per
    call would cost as much as a module span (the BatchNorm MLP benchmark
    measured +4% per step); the check costs two C calls and a tuple compare.
    ``per_channel`` is what torch's "Expected more than 1 value per channel"
    counts (batch x spatial size) on this rank; ``world_size`` > 1 when
    SyncBatchNorm pools ranks. Recorded before the arithmetic, so a forward
    that raises keeps its evidence.
    """
    sink = _trace.sink
    _for_sink(sink)
    grad = torch.is_grad_enabled()
    state = (
        module.training,
        grad,
        not grad and torch.is_inference_mode_enabled(),
        input.numel(),
        world_size,
    )
    if _recorded.get(id(module)) == state:
        return
    _recorded[id(module)] = state
    training, _, inference, numel, _ = state
    channels = input.size(1)
    attrs = {
        "training": training,
        "updates": training
        and module.track_running_stats
        and module._buffers.get("running_mean") is not None,
        "grad": grad,
        "inference": inference,
        "per_channel": numel // channels if channels else 0,
        "batch": input.size(0),
        "world": world_size,
    }
    t = perf_counter_ns()
    sink.append(  # type: ignore[union-attr]
        (sink.next_id(), 0, get_ident(), t, t, "bn.forward", "batch_norm", _EVIDENCE_FUNC, attrs)  # type: ignore[union-attr]
    )


def _stats_summary(module: _NormBase, when: str) -> dict:
    """Norms of the running buffers and the batch count: a few numbers, never the values."""
    mean, var, count = module.running_mean, module.running_var, module.num_batches_tracked
    return {
        f"mean_norm_{when}": None if mean is None else float(mean.norm()),
        f"var_norm_{when}": None if var is None else float(var.norm()),
        f"batches_{when}": None if count is None else int(count),
    }


def _running_stats_begin(
    module: _BatchNorm, factor: float, bn_training: bool, counted: bool = True
) -> tuple | None:
    """Opens a ``bn.running_stats`` record (traced only) when the layer's running-stats
    state differs from its last record; None (nothing to record) otherwise.

    Called after ``_exponential_average_factor`` counted this batch (``counted``;
    the torch target calls it before torch's forward counts it), so
    ``batches_before`` is the count before it. The running buffers move when the
    forward normalises with batch statistics and passes them to the kernel.
    """
    # The steady case first, cheap: plain attributes (no buffer lookups through
    # Module.__getattr__), one dict get, one tuple compare, one weakref call.
    state = (module.training, bn_training, module.track_running_stats, factor)
    if _stats_recorded.get(id(module)) == state and _recorded_for() is _trace.sink:
        return None
    sink = _trace.sink
    _for_sink(sink)
    _stats_recorded[id(module)] = state
    updates = (
        bn_training
        and module.training
        and module.track_running_stats
        and module.running_mean is not None
    )
    attrs = {
        "training": module.training,
        "updated": updates,
        "factor": factor if updates else None,
        "momentum": module.momentum,
        **_stats_summary(module, "before"),
    }
    if counted and updates and attrs["batches_before"] is not None:
        attrs["batches_before"] -= 1  # the factor's side effect already counted this batch
    func = _SYNC_STATS_FUNC if isinstance(module, SyncBatchNorm) else _STATS_FUNC
    return sink, sink.next_id(), perf_counter_ns(), func, attrs  # type: ignore[union-attr]


def _running_stats_end(module: _BatchNorm, begun: tuple) -> None:
    """Closes the record ``_running_stats_begin`` opened, with the statistics after."""
    sink, sid, t0, func, attrs = begun
    t1 = perf_counter_ns()
    attrs.update(_stats_summary(module, "after"))
    sink.append((sid, 0, get_ident(), t0, t1, "bn.running_stats", "running_stats", func, attrs))


@mirrors("torch.nn.modules.batchnorm._NormBase")
class _NormBase(Module):
    """Common base of _InstanceNorm and _BatchNorm."""

    _version = 2  # version 2 added the num_batches_tracked buffer
    __constants__ = ["track_running_stats", "momentum", "eps", "num_features", "affine"]
    num_features: int
    eps: float
    momentum: float | None
    affine: bool
    track_running_stats: bool
    # weight and bias are purposely not declared here (pytorch/pytorch#39670).

    @mirrors("torch.nn.modules.batchnorm._NormBase.__init__")
    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        device: Any = None,
        dtype: Any = None,
        *,
        bias: bool = True,
    ) -> None:
        factory_kwargs = {"device": device, "dtype": dtype}
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        if self.affine:
            self.weight = Parameter(torch.empty(num_features, **factory_kwargs))
            if bias:
                self.bias = Parameter(torch.empty(num_features, **factory_kwargs))
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if self.track_running_stats:
            self.register_buffer("running_mean", torch.zeros(num_features, **factory_kwargs))
            self.register_buffer("running_var", torch.ones(num_features, **factory_kwargs))
            self.running_mean: Tensor | None
            self.running_var: Tensor | None
            # A counter, not a statistic: long whatever the module's dtype.
            self.register_buffer(
                "num_batches_tracked", torch.tensor(0, dtype=torch.long, device=device)
            )
            self.num_batches_tracked: Tensor | None
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)
        self.reset_parameters()

    @mirrors("torch.nn.modules.batchnorm._NormBase.reset_running_stats")
    def reset_running_stats(self) -> None:
        """Back to mean 0, variance 1, no batches seen (buffers kept, not replaced)."""
        if self.track_running_stats:
            self.running_mean.zero_()  # type: ignore[union-attr]
            self.running_var.fill_(1)  # type: ignore[union-attr]
            self.num_batches_tracked.zero_()  # type: ignore[union-attr]

    @mirrors("torch.nn.modules.batchnorm._NormBase.reset_parameters")
    def reset_parameters(self) -> None:
        """Resets the running stats and makes the affine transform the identity."""
        self.reset_running_stats()
        if self.affine:
            init.ones_(self.weight)
            if self.bias is not None:
                init.zeros_(self.bias)

    @mirrors("torch.nn.modules.batchnorm._NormBase._check_input_dim")
    def _check_input_dim(self, input: Tensor) -> None:
        raise NotImplementedError

    @mirrors("torch.nn.modules.batchnorm._NormBase.extra_repr")
    def extra_repr(self) -> str:
        return (
            "{num_features}, eps={eps}, momentum={momentum}, affine={affine}, "
            "bias={use_bias}, track_running_stats={track_running_stats}".format(
                **self.__dict__, use_bias=self.bias is not None
            )
        )

    @mirrors("torch.nn.modules.batchnorm._NormBase._load_from_state_dict")
    def _load_from_state_dict(
        self,
        state_dict: dict[str, Any],
        prefix: str,
        local_metadata: dict[str, Any],
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        version = local_metadata.get("version")
        if (version is None or version < 2) and self.track_running_stats:
            # A version-1 checkpoint predates num_batches_tracked: keep ours (or
            # 0) rather than report it missing under strict loading.
            num_batches_tracked_key = prefix + "num_batches_tracked"
            if num_batches_tracked_key not in state_dict:
                state_dict[num_batches_tracked_key] = (
                    self.num_batches_tracked
                    if self.num_batches_tracked is not None
                    and self.num_batches_tracked.device != torch.device("meta")
                    else torch.tensor(0, dtype=torch.long)
                )
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )


@mirrors("torch.nn.modules.batchnorm._BatchNorm")
class _BatchNorm(_NormBase):
    """Batch statistics in training, running statistics in eval (when tracked)."""

    @mirrors("torch.nn.modules.batchnorm._BatchNorm.__init__")
    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        device: Any = None,
        dtype: Any = None,
        *,
        bias: bool = True,
    ) -> None:
        factory_kwargs = {"device": device, "dtype": dtype}
        super().__init__(
            num_features, eps, momentum, affine, track_running_stats, **factory_kwargs, bias=bias
        )

    @mirrors("torch.nn.modules.batchnorm._BatchNorm.forward")
    def _exponential_average_factor(self) -> float:
        """The running-stat update weight; counts this batch as a side effect.

        Upstream inlines this in ``forward`` (no separate torch function), so it
        mirrors ``_BatchNorm.forward``, the function its code comes from; with
        ``momentum=None`` the running stats become a cumulative average,
        1 / (batches seen).
        """
        # (ONNX export is why upstream sets this even when it is not used.)
        exponential_average_factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:  # use cumulative moving average
                exponential_average_factor = 1.0 / float(self.num_batches_tracked)
            else:  # use exponential moving average
                exponential_average_factor = self.momentum
        return exponential_average_factor

    @mirrors("torch.nn.modules.batchnorm._BatchNorm.forward")
    def _bn_training(self) -> bool:
        """Whether to normalise with batch stats: in training, or when no buffers exist.

        Upstream inlines this in ``forward`` (no separate torch function), so it
        mirrors ``_BatchNorm.forward``, the function its code comes from.
        """
        if self.training:
            return True
        return (self.running_mean is None) and (self.running_var is None)

    @mirrors("torch.nn.modules.batchnorm._BatchNorm.forward")
    def forward(self, input: Tensor) -> Tensor:
        self._check_input_dim(input)
        exponential_average_factor = self._exponential_average_factor()
        bn_training = self._bn_training()
        begun = None
        if _trace.sink is not None:  # torchscope: see the module docstring
            begun = _evidence(self, input, 1, exponential_average_factor, bn_training)
        # Buffers are passed only when they are to be updated (training and
        # tracked) or read (eval): passing None keeps F.batch_norm off them.
        out = F.batch_norm(
            input,
            self.running_mean if not self.training or self.track_running_stats else None,
            self.running_var if not self.training or self.track_running_stats else None,
            self.weight,
            self.bias,
            bn_training,
            exponential_average_factor,
            self.eps,
        )
        if begun is not None:
            _running_stats_end(self, begun)
        return out


@mirrors("torch.nn.modules.batchnorm.BatchNorm1d")
class BatchNorm1d(_BatchNorm):
    """Batch norm over (N, C) or (N, C, L) inputs."""

    @mirrors("torch.nn.modules.batchnorm.BatchNorm1d._check_input_dim")
    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() != 2 and input.dim() != 3:
            raise ValueError(f"expected 2D or 3D input (got {input.dim()}D input)")


@mirrors("torch.nn.modules.batchnorm.BatchNorm2d")
class BatchNorm2d(_BatchNorm):
    """Batch norm over (N, C, H, W) inputs."""

    @mirrors("torch.nn.modules.batchnorm.BatchNorm2d._check_input_dim")
    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() != 4:
            raise ValueError(f"expected 4D input (got {input.dim()}D input)")


@mirrors("torch.nn.modules.batchnorm.BatchNorm3d")
class BatchNorm3d(_BatchNorm):
    """Batch norm over (N, C, D, H, W) inputs."""

    @mirrors("torch.nn.modules.batchnorm.BatchNorm3d._check_input_dim")
    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() != 5:
            raise ValueError(f"expected 5D input (got {input.dim()}D input)")


@mirrors("torch.nn.modules.batchnorm.SyncBatchNorm")
class SyncBatchNorm(_BatchNorm):
    """Batch norm whose training statistics span every rank of a process group."""

    @mirrors("torch.nn.modules.batchnorm.SyncBatchNorm.__init__")
    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        process_group: Any | None = None,
        device: Any = None,
        dtype: Any = None,
        *,
        bias: bool = True,
    ) -> None:
        factory_kwargs = {"device": device, "dtype": dtype}
        super().__init__(
            num_features, eps, momentum, affine, track_running_stats, **factory_kwargs, bias=bias
        )
        self.process_group = process_group

    @mirrors("torch.nn.modules.batchnorm.SyncBatchNorm._check_input_dim")
    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    @mirrors("torch.nn.modules.batchnorm.SyncBatchNorm._check_non_zero_input_channels")
    def _check_non_zero_input_channels(self, input: Tensor) -> None:
        if input.size(1) == 0:
            raise ValueError("SyncBatchNorm number of input channels should be non-zero")

    @mirrors("torch.nn.modules.batchnorm.SyncBatchNorm.forward")
    def _exponential_average_factor(self) -> float:
        """As in _BatchNorm, but upstream asserts the counter exists and uses .item().

        Upstream inlines this in ``SyncBatchNorm.forward`` (no separate torch
        function), so it mirrors that, the function its code comes from.
        """
        exponential_average_factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            if self.num_batches_tracked is None:
                raise AssertionError("num_batches_tracked must not be None")
            self.num_batches_tracked.add_(1)
            if self.momentum is None:  # use cumulative moving average
                exponential_average_factor = 1.0 / self.num_batches_tracked.item()
            else:  # use exponential moving average
                exponential_average_factor = self.momentum
        return exponential_average_factor

    @mirrors("torch.nn.modules.batchnorm.SyncBatchNorm.forward")
    def forward(self, input: Tensor) -> Tensor:
        self._check_input_dim(input)
        self._check_non_zero_input_channels(input)
        exponential_average_factor = self._exponential_average_factor()
        bn_training = self._bn_training()
        # If buffers are not to be tracked, ensure that they won't be updated
        running_mean = self.running_mean if not self.training or self.track_running_stats else None
        running_var = self.running_var if not self.training or self.track_running_stats else None

        # Don't sync batchnorm stats in inference mode (model.eval()).
        need_sync = (
            bn_training
            and self.training
            and torch.distributed.is_available()
            and torch.distributed.is_initialized()
        )
        if need_sync:
            # Upstream accepts only accelerator inputs; CPU works here (gloo + numba).
            if input.device.type not in ["cpu", "cuda"]:
                raise ValueError(
                    f"SyncBatchNorm expected input tensor to be on CPU or GPU, got {input.device}"
                )
            process_group = torch.distributed.group.WORLD
            if self.process_group:
                process_group = self.process_group
            world_size = torch.distributed.get_world_size(process_group)
            need_sync = world_size > 1
        begun = None
        if _trace.sink is not None:  # torchscope: see the module docstring
            world = world_size if need_sync else 1
            begun = _evidence(self, input, world, exponential_average_factor, bn_training)

        # fallback to framework BN when synchronization is not necessary
        if not need_sync:
            out = F.batch_norm(
                input,
                running_mean,
                running_var,
                self.weight,
                self.bias,
                bn_training,
                exponential_average_factor,
                self.eps,
            )
        else:
            if not bn_training:
                raise AssertionError("bn_training must be True")
            out = sync_batch_norm.apply(
                input,
                self.weight,
                self.bias,
                running_mean,
                running_var,
                self.eps,
                exponential_average_factor,
                process_group,
                world_size,
            )
        if begun is not None:
            _running_stats_end(self, begun)
        return out

    @classmethod
    @mirrors("torch.nn.modules.batchnorm.SyncBatchNorm.convert_sync_batchnorm")
    def convert_sync_batchnorm(cls, module: Module, process_group: Any | None = None) -> Module:
        """Replaces every BatchNorm*D in ``module`` (recursively) by a SyncBatchNorm.

        The new layer shares the old one's parameters and buffers (same tensor
        objects, so an optimizer built earlier still updates them) and keeps
        its training flag. Returns ``module`` itself unless it is a BatchNorm.
        """
        module_output = module
        if isinstance(module, _BatchNorm):
            module_output = SyncBatchNorm(
                module.num_features,
                module.eps,
                module.momentum,
                module.affine,
                module.track_running_stats,
                process_group,
                bias=module.bias is not None,
            )
            if module.affine:
                with torch.no_grad():
                    module_output.weight = module.weight
                    module_output.bias = module.bias
            module_output.running_mean = module.running_mean
            module_output.running_var = module.running_var
            module_output.num_batches_tracked = module.num_batches_tracked
            module_output.training = module.training
            if hasattr(module, "qconfig"):
                module_output.qconfig = module.qconfig
        for name, child in module.named_children():
            module_output.add_module(name, cls.convert_sync_batchnorm(child, process_group))
        del module
        return module_output
