"""Stochastic weight averaging and EMA, mirroring ``torch/optim/swa_utils.py``.

``AveragedModel`` keeps a deep copy of a model whose parameters (and, with
``use_buffers``, buffers) are a running average of the training model's:
equal-weight (SWA) by default, or any ``avg_fn``/``multi_avg_fn`` such as an
exponential moving average. Because BatchNorm running statistics of the
average are not the average of the statistics, ``update_bn`` recomputes them
with one pass over the data. ``SWALR`` anneals each group's lr to a constant
``swa_lr``.

``AveragedModel`` is a ``reimpl.nn.Module``. It may wrap a reimpl model or a
``torch.nn.Module`` (then it reads the wrapped module's parameters directly,
since a reimpl Module does not register torch modules as children);
``update_bn`` recognises both libraries' BatchNorm layers.

Tracing: ``update_parameters`` records a ``swa.update`` span and
``update_bn`` a ``swa.update_bn`` span.

Left out: nothing of torch's behaviour.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Callable, Iterable
from copy import deepcopy
from typing import Any, Literal

import torch
from torch import Tensor
from torch.utils._foreach_utils import _get_foreach_kernels_supported_devices

from reimpl import _trace
from reimpl._trace import mirrors
from reimpl.nn.modules.batchnorm import _BatchNorm
from reimpl.nn.modules.module import Module

from .lr_scheduler import LRScheduler, _format_param
from .optimizer import _group_tensors_by_device_and_dtype

__all__ = [
    "SWALR",
    "AveragedModel",
    "get_ema_avg_fn",
    "get_ema_multi_avg_fn",
    "get_swa_avg_fn",
    "get_swa_multi_avg_fn",
    "update_bn",
]

PARAM_LIST = tuple[Tensor, ...] | list[Tensor]
_BATCHNORMS = (_BatchNorm, torch.nn.modules.batchnorm._BatchNorm)


@mirrors("torch.optim.swa_utils.get_ema_multi_avg_fn")
def get_ema_multi_avg_fn(decay: float = 0.999) -> Callable[[PARAM_LIST, PARAM_LIST, Any], None]:
    """An in-place EMA over lists of tensors: ``ema = decay * ema + (1 - decay) * p``."""
    if decay < 0.0 or decay > 1.0:
        raise ValueError(
            f"Invalid decay value {decay} provided. Please provide a value in [0,1] range."
        )

    @torch.no_grad()
    def ema_update(ema_param_list: PARAM_LIST, current_param_list: PARAM_LIST, _: Any) -> None:
        # lerp is one fused kernel, but only for floating (and complex) tensors
        if torch.is_floating_point(ema_param_list[0]) or torch.is_complex(ema_param_list[0]):
            torch._foreach_lerp_(ema_param_list, current_param_list, 1 - decay)
        else:
            for p_ema, p_model in zip(ema_param_list, current_param_list):
                p_ema.copy_(p_ema * decay + p_model * (1 - decay))

    return ema_update


@mirrors("torch.optim.swa_utils.get_swa_multi_avg_fn")
def get_swa_multi_avg_fn() -> Callable[[PARAM_LIST, PARAM_LIST, Any], None]:
    """An in-place equal-weight running mean over lists of tensors."""

    @torch.no_grad()
    def swa_update(
        averaged_param_list: PARAM_LIST, current_param_list: PARAM_LIST, num_averaged: Any
    ) -> None:
        # avg += (p - avg) / (n + 1), written as a lerp where lerp exists
        if torch.is_floating_point(averaged_param_list[0]) or torch.is_complex(
            averaged_param_list[0]
        ):
            torch._foreach_lerp_(averaged_param_list, current_param_list, 1 / (num_averaged + 1))
        else:
            diffs = torch._foreach_sub(current_param_list, averaged_param_list)
            if isinstance(num_averaged, Tensor):
                torch._foreach_addcdiv_(
                    averaged_param_list, diffs, [num_averaged + 1] * len(averaged_param_list)
                )
            else:
                torch._foreach_add_(averaged_param_list, diffs, alpha=1.0 / (num_averaged + 1))

    return swa_update


@mirrors("torch.optim.swa_utils.get_ema_avg_fn")
def get_ema_avg_fn(decay: float = 0.999) -> Callable[[Tensor, Tensor, Any], Tensor]:
    """A per-tensor EMA that returns the new average."""
    if decay < 0.0 or decay > 1.0:
        raise ValueError(
            f"Invalid decay value {decay} provided. Please provide a value in [0,1] range."
        )

    @torch.no_grad()
    def ema_update(ema_param: Tensor, current_param: Tensor, num_averaged: Any) -> Tensor:
        return decay * ema_param + (1 - decay) * current_param

    return ema_update


@mirrors("torch.optim.swa_utils.get_swa_avg_fn")
def get_swa_avg_fn() -> Callable[[Tensor, Tensor, Any], Tensor]:
    """A per-tensor equal-weight running mean that returns the new average."""

    @torch.no_grad()
    def swa_update(averaged_param: Tensor, current_param: Tensor, num_averaged: Any) -> Tensor:
        return averaged_param + (current_param - averaged_param) / (num_averaged + 1)

    return swa_update


@mirrors("torch.optim.swa_utils.AveragedModel")
class AveragedModel(Module):
    """A copy of ``model`` whose weights are the average of ``model``'s over time."""

    n_averaged: Tensor

    def __init__(
        self,
        model: Any,
        device: int | torch.device | None = None,
        avg_fn: Callable[[Tensor, Tensor, Any], Tensor] | None = None,
        multi_avg_fn: Callable[[PARAM_LIST, PARAM_LIST, Any], None] | None = None,
        use_buffers: bool = False,
    ) -> None:
        super().__init__()
        if avg_fn is not None and multi_avg_fn is not None:
            raise AssertionError("Only one of avg_fn and multi_avg_fn should be provided")
        self.module = deepcopy(model)
        if device is not None:
            self.module = self.module.to(device)
        self.register_buffer("n_averaged", torch.tensor(0, dtype=torch.long, device=device))
        self.avg_fn = avg_fn
        self.multi_avg_fn = multi_avg_fn
        self.use_buffers = use_buffers

    @mirrors("torch.optim.swa_utils.AveragedModel.forward")
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """Runs the averaged copy."""
        return self.module(*args, **kwargs)

    @mirrors("torch.optim.swa_utils.AveragedModel.update_parameters")
    def update_parameters(self, model: Any) -> None:
        """Folds ``model``'s current weights into the average (copies them the first time)."""
        with _trace.span(
            "swa.update",
            type(model).__name__,
            n_averaged=int(self.n_averaged),
            use_buffers=self.use_buffers,
        ):
            self._update_parameters(model)

    def _update_parameters(self, model: Any) -> None:
        # torch reads self.parameters(); the wrapped module's are the same tensors,
        # and reading them directly also works when it is a torch.nn.Module
        self_param = (
            itertools.chain(self.module.parameters(), self.module.buffers())
            if self.use_buffers
            else self.module.parameters()
        )
        model_param = (
            itertools.chain(model.parameters(), model.buffers())
            if self.use_buffers
            else model.parameters()
        )
        self_param_detached: list[Tensor] = []
        model_param_detached: list[Tensor] = []
        copy_param = bool(self.n_averaged == 0)
        for p_averaged, p_model in zip(self_param, model_param):
            p_model_ = p_model.detach().to(p_averaged.device)
            self_param_detached.append(p_averaged.detach())
            model_param_detached.append(p_model_)
            if copy_param:
                p_averaged.detach().copy_(p_model_)

        if self.n_averaged > 0:
            if self.multi_avg_fn is not None or self.avg_fn is None:
                grouped = _group_tensors_by_device_and_dtype(
                    [self_param_detached, model_param_detached]
                )
                for (device, _), ([self_params, model_params], _) in grouped.items():
                    if self.multi_avg_fn:
                        self.multi_avg_fn(self_params, model_params, self.n_averaged.to(device))
                    elif device.type in _get_foreach_kernels_supported_devices():
                        get_swa_multi_avg_fn()(
                            self_params, model_params, self.n_averaged.to(device)
                        )
                    else:  # no foreach kernels here (the CPU): one tensor at a time
                        avg_fn = get_swa_avg_fn()
                        n_averaged = self.n_averaged.to(device)
                        for p_averaged, p_model in zip(self_params, model_params):
                            p_averaged.copy_(avg_fn(p_averaged, p_model, n_averaged))
            else:
                for p_averaged, p_model in zip(self_param_detached, model_param_detached):
                    n_averaged = self.n_averaged.to(p_averaged.device)
                    p_averaged.detach().copy_(self.avg_fn(p_averaged.detach(), p_model, n_averaged))

        if not self.use_buffers:
            # buffers (BN statistics) are not averaged: keep the latest, or run update_bn
            for b_swa, b_model in zip(self.module.buffers(), model.buffers()):
                b_swa.detach().copy_(b_model.detach().to(b_swa.device))
        self.n_averaged += 1


@mirrors("torch.optim.swa_utils.update_bn")
@torch.no_grad()
def update_bn(loader: Iterable[Any], model: Any, device: int | torch.device | None = None) -> None:
    """Recomputes BatchNorm running statistics with one pass over ``loader``.

    ``momentum = None`` makes each BN keep a cumulative average over the pass
    instead of an exponential one, so every batch counts equally.
    """
    with _trace.span("swa.update_bn", type(model).__name__) as sp:
        momenta = {}
        for module in model.modules():
            if isinstance(module, _BATCHNORMS):
                module.reset_running_stats()
                momenta[module] = module.momentum
        if not momenta:
            return
        was_training = model.training
        model.train()
        for module in momenta:
            module.momentum = None
        batches = 0
        for input in loader:
            if isinstance(input, (list, tuple)):
                input = input[0]
            if device is not None:
                input = input.to(device)
            model(input)
            batches += 1
        for bn_module in momenta:
            bn_module.momentum = momenta[bn_module]
        model.train(was_training)
        sp.set(batchnorms=len(momenta), batches=batches)


@mirrors("torch.optim.swa_utils.SWALR")
class SWALR(LRScheduler):
    """Anneals each group's lr from its current value to ``swa_lr`` (cos or linear)."""

    def __init__(
        self,
        optimizer: Any,
        swa_lr: float | list[float],
        anneal_epochs: int = 10,
        anneal_strategy: Literal["cos", "linear"] = "cos",
        last_epoch: int = -1,
    ) -> None:
        swa_lrs = _format_param("swa_lr", optimizer, swa_lr)
        for lr, group in zip(swa_lrs, optimizer.param_groups):
            group["swa_lr"] = lr
        if anneal_strategy not in ["cos", "linear"]:
            raise ValueError(
                f"anneal_strategy must be one of 'cos' or 'linear', instead got {anneal_strategy}"
            )
        self._set_anneal_func(anneal_strategy)
        if not isinstance(anneal_epochs, int) or anneal_epochs < 0:
            raise ValueError(f"anneal_epochs must be equal or greater than 0, got {anneal_epochs}")
        self.anneal_epochs = anneal_epochs
        super().__init__(optimizer, last_epoch)

    @staticmethod
    def _linear_anneal(t: float) -> float:
        return t

    @staticmethod
    def _cosine_anneal(t: float) -> float:
        return (1 - math.cos(math.pi * t)) / 2

    @staticmethod
    @mirrors("torch.optim.swa_utils.SWALR._get_initial_lr")
    def _get_initial_lr(lr: float, swa_lr: float, alpha: float) -> float:
        """Inverts one annealing step: the lr before it, from the lr after it."""
        if alpha == 1:
            return swa_lr
        return (lr - alpha * swa_lr) / (1 - alpha)

    @mirrors("torch.optim.swa_utils.SWALR.get_lr")
    def get_lr(self) -> list[Any]:
        """lr_t = alpha_t * swa_lr + (1 - alpha_t) * lr_0, chained from the current lr."""
        if not self._get_lr_called_within_step:
            warnings.warn(
                "To get the last learning rate computed by the scheduler, "
                "please use `get_last_lr()`.",
                UserWarning,
                stacklevel=2,
            )
        step = self._step_count - 1
        if self.anneal_epochs == 0:
            step = max(1, step)
        prev_t = max(0, min(1, (step - 1) / max(1, self.anneal_epochs)))
        prev_alpha = self.anneal_func(prev_t)
        prev_lrs = [
            self._get_initial_lr(group["lr"], group["swa_lr"], prev_alpha)
            for group in self.optimizer.param_groups
        ]
        t = max(0, min(1, step / max(1, self.anneal_epochs)))
        alpha = self.anneal_func(t)
        return [
            group["swa_lr"] * alpha + lr * (1 - alpha)
            for group, lr in zip(self.optimizer.param_groups, prev_lrs)
        ]

    @mirrors("torch.optim.swa_utils.SWALR._set_anneal_func")
    def _set_anneal_func(self, anneal_strategy: Literal["cos", "linear"]) -> None:
        self._anneal_strategy = anneal_strategy
        self.anneal_func = self._cosine_anneal if anneal_strategy == "cos" else self._linear_anneal

    @mirrors("torch.optim.swa_utils.SWALR.state_dict")
    def state_dict(self) -> dict[str, Any]:
        """Every attribute except the optimizer and the (re-derivable) anneal function."""
        return {
            key: value
            for key, value in self.__dict__.items()
            if key not in ("optimizer", "anneal_func")
        }

    @mirrors("torch.optim.swa_utils.SWALR.load_state_dict")
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restores attributes and re-derives the anneal function."""
        self.__dict__.update(state_dict)
        self._set_anneal_func(self._anneal_strategy)
