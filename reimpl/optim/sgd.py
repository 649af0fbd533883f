"""Stochastic gradient descent, mirroring ``torch/optim/sgd.py``.

Three update paths chosen like torch: a for-loop over tensors
(``_single_tensor_sgd``, torch's default on CPU), batched ``torch._foreach_*``
ops (``_multi_tensor_sgd``), and torch's own fused kernel (``_fused_sgd``,
called as torch calls it).

``differentiable=True`` needs no path of its own: the for-loop is already
written so autograd can follow it, and a tensor ``lr`` or ``weight_decay``
that requires grad enters the update as a tensor (``addcmul_``) instead of a
Python number, so hyper-gradients reach it, as in torch.

With ``fused=True`` the optimizer tells ``torch.amp.GradScaler`` that it
unscales gradients itself (``_step_supports_amp_scaling``): the scaler's
``grad_scale`` and ``found_inf`` go to torch's fused kernel, which unscales and
skips the step on an overflow.

Left out: TorchScript and ``torch.compile`` branches.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from reimpl import _trace
from reimpl._trace import mirrors

from .optimizer import (
    Optimizer,
    ParamsT,
    _check_no_amp_scaling,
    _default_to_fused_or_foreach,
    _device_dtype_check_for_fused,
    _group_tensors_by_device_and_dtype,
    _GroupTrace,
    _on_device,
    _to_scalar,
    _use_grad_for_differentiable,
)

__all__ = ["SGD", "sgd"]

_SINGLE = "reimpl.optim.sgd._single_tensor_sgd"
_MULTI = "reimpl.optim.sgd._multi_tensor_sgd"
_FUSED = "reimpl.optim.sgd._fused_sgd"
_STEP = "reimpl.optim.sgd.SGD.step"


@mirrors("torch.optim.sgd._single_tensor_sgd")
def _single_tensor_sgd(
    params: list[Tensor],
    grads: list[Tensor],
    momentum_buffer_list: list[Tensor | None],
    *,
    weight_decay: float | Tensor,
    momentum: float,
    lr: float | Tensor,
    dampening: float,
    nesterov: bool,
    maximize: bool,
    has_sparse_grad: bool,
    grad_scale: Tensor | None = None,
    found_inf: Tensor | None = None,
    trace: _GroupTrace | None = None,
) -> None:
    """One parameter at a time: grad (+ weight decay) -> momentum buffer -> step."""
    _check_no_amp_scaling(grad_scale, found_inf)
    lr = _to_scalar(lr)
    for i, param in enumerate(params):
        if trace is not None:
            mark = trace.begin()
        grad = grads[i] if not maximize else -grads[i]
        if weight_decay != 0:
            if isinstance(weight_decay, Tensor) and weight_decay.requires_grad:
                # a tensor factor keeps the hyper-gradient (alpha= would take a number);
                # the clone keeps this param value for the backward, as torch does
                grad = grad.addcmul_(param.clone(), weight_decay)
            else:
                grad = grad.add(param, alpha=weight_decay)
        if momentum != 0:
            buf = momentum_buffer_list[i]
            if buf is None:
                # the first step seeds the buffer with the gradient itself
                buf = grad.detach().clone()
                momentum_buffer_list[i] = buf
            else:
                buf.mul_(momentum).add_(grad, alpha=1 - dampening)
            grad = grad.add(buf, alpha=momentum) if nesterov else buf
        if isinstance(lr, Tensor) and lr.requires_grad:
            param.addcmul_(grad, lr, value=-1)  # the lr stays in the graph
        else:
            param.add_(grad, alpha=-lr)
        if trace is not None:
            trace.end(i, mark, param, "single", _SINGLE)


@mirrors("torch.optim.sgd._multi_tensor_sgd")
def _multi_tensor_sgd(
    params: list[Tensor],
    grads: list[Tensor],
    momentum_buffer_list: list[Tensor | None],
    *,
    weight_decay: float,
    momentum: float,
    lr: float,
    dampening: float,
    nesterov: bool,
    maximize: bool,
    has_sparse_grad: bool,
    grad_scale: Tensor | None = None,
    found_inf: Tensor | None = None,
    trace: _GroupTrace | None = None,
) -> None:
    """The same rule with one foreach kernel per op over each device/dtype bucket."""
    _check_no_amp_scaling(grad_scale, found_inf)
    if len(params) == 0:
        return
    lr = _to_scalar(lr)
    grouped = _group_tensors_by_device_and_dtype([params, grads, momentum_buffer_list])
    for (device_params, device_grads, device_bufs), indices in grouped.values():
        if trace is not None:
            marks = trace.begin_all(len(indices))
        device_has_sparse_grad = has_sparse_grad and any(g.is_sparse for g in device_grads)
        if maximize:
            device_grads = torch._foreach_neg(device_grads)
        if weight_decay != 0:
            if maximize:  # reuse the negated copy instead of allocating again
                torch._foreach_add_(device_grads, device_params, alpha=weight_decay)
            else:
                device_grads = torch._foreach_add(device_grads, device_params, alpha=weight_decay)
        if momentum != 0:
            if all(b is not None for b in device_bufs):
                bufs = list(device_bufs)
                torch._foreach_mul_(bufs, momentum)
                torch._foreach_add_(bufs, device_grads, alpha=1 - dampening)
            else:
                bufs = []
                for i, b in enumerate(device_bufs):
                    if b is None:
                        # write the new buffer back so step() can store it in state
                        b = device_bufs[i] = momentum_buffer_list[indices[i]] = (
                            device_grads[i].detach().clone()
                        )
                    else:
                        b.mul_(momentum).add_(device_grads[i], alpha=1 - dampening)
                    bufs.append(b)
            if nesterov:
                torch._foreach_add_(device_grads, bufs, alpha=momentum)
            else:
                device_grads = bufs
        if not device_has_sparse_grad:
            torch._foreach_add_(device_params, device_grads, alpha=-lr)
        else:  # foreach ops do not take sparse tensors
            for i in range(len(device_params)):
                device_params[i].add_(device_grads[i], alpha=-lr)
        if trace is not None:
            trace.end_all(indices, marks, device_params, "foreach", _MULTI)


@mirrors("torch.optim.sgd._fused_sgd")
def _fused_sgd(
    params: list[Tensor],
    grads: list[Tensor],
    momentum_buffer_list: list[Tensor | None],
    *,
    weight_decay: float,
    momentum: float,
    lr: float,
    dampening: float,
    nesterov: bool,
    maximize: bool,
    has_sparse_grad: bool,
    grad_scale: Tensor | None = None,
    found_inf: Tensor | None = None,
    trace: _GroupTrace | None = None,
) -> None:
    """torch's fused kernel: the whole rule in one pass over memory per bucket."""
    if not params:
        return
    if has_sparse_grad:
        raise RuntimeError("`_fused_sgd` does not support sparse gradients")
    no_momentum_buffer = momentum == 0
    is_first_step = all(t is None for t in momentum_buffer_list) and not no_momentum_buffer
    if is_first_step:
        for i, g in enumerate(grads):
            momentum_buffer_list[i] = torch.empty_like(g)
    grad_scale_dict: dict = {}
    found_inf_dict: dict = {}
    grouped = _group_tensors_by_device_and_dtype([params, grads, momentum_buffer_list])
    for (device, _), ((device_params, device_grads, device_bufs), indices) in grouped.items():
        if trace is not None:
            marks = trace.begin_all(len(indices))
        torch._fused_sgd_(
            device_params,
            device_grads,
            [] if no_momentum_buffer else device_bufs,
            weight_decay=weight_decay,
            momentum=momentum,
            lr=lr,
            dampening=dampening,
            nesterov=nesterov,
            maximize=maximize,
            is_first_step=is_first_step,
            grad_scale=_on_device(grad_scale_dict, grad_scale, device),
            found_inf=_on_device(found_inf_dict, found_inf, device),
        )
        if trace is not None:
            trace.end_all(indices, marks, device_params, "fused", _FUSED)


@mirrors("torch.optim.sgd.sgd")
def sgd(
    params: list[Tensor],
    d_p_list: list[Tensor],
    momentum_buffer_list: list[Tensor | None],
    has_sparse_grad: bool = False,
    foreach: bool | None = None,
    fused: bool | None = None,
    grad_scale: Tensor | None = None,
    found_inf: Tensor | None = None,
    *,
    weight_decay: float,
    momentum: float,
    lr: float,
    dampening: float,
    nesterov: bool,
    maximize: bool,
    trace: _GroupTrace | None = None,
) -> None:
    """Functional SGD: picks the single-tensor, foreach or fused path like torch."""
    if foreach is None and fused is None:
        # torch defaults to foreach (never fused) where foreach kernels exist
        fused, foreach = _default_to_fused_or_foreach(params, differentiable=False, use_fused=False)
    foreach = bool(foreach)
    fused = bool(fused)
    func: Callable[..., None]
    if foreach:
        func = _multi_tensor_sgd
    elif fused:
        func = _fused_sgd
    else:
        func = _single_tensor_sgd
    func(
        params,
        d_p_list,
        momentum_buffer_list,
        weight_decay=weight_decay,
        momentum=momentum,
        lr=lr,
        dampening=dampening,
        nesterov=nesterov,
        has_sparse_grad=has_sparse_grad,
        maximize=maximize,
        grad_scale=grad_scale,
        found_inf=found_inf,
        trace=trace,
    )


@mirrors("torch.optim.sgd.SGD")
class SGD(Optimizer):
    """SGD with optional momentum, dampening, Nesterov, weight decay and maximize."""

    def __init__(
        self,
        params: ParamsT,
        lr: float | Tensor = 1e-3,
        momentum: float = 0,
        dampening: float = 0,
        weight_decay: float | Tensor = 0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        differentiable: bool = False,
        fused: bool | None = None,
    ) -> None:
        if isinstance(lr, Tensor) and lr.numel() != 1:
            raise ValueError("Tensor lr must be 1-element")
        if lr < 0.0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if momentum < 0.0:
            raise ValueError(f"Invalid momentum value: {momentum}")
        if weight_decay < 0.0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "dampening": dampening,
            "weight_decay": weight_decay,
            "nesterov": nesterov,
            "maximize": maximize,
            "foreach": foreach,
            "differentiable": differentiable,
            "fused": fused,
        }
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        super().__init__(params, defaults)
        if fused:
            self._step_supports_amp_scaling = True
            self._need_device_dtype_check_for_fused = True
            if differentiable:
                raise RuntimeError("`fused` does not support `differentiable`")
            if foreach:
                raise RuntimeError("`fused` and `foreach` cannot be `True` together.")

    @mirrors("torch.optim.sgd.SGD.__setstate__")
    def __setstate__(self, state: dict[str, Any]) -> None:
        """Fills options added after old checkpoints were written."""
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("nesterov", False)
            group.setdefault("maximize", False)
            group.setdefault("foreach", None)
            group.setdefault("differentiable", False)
            group.setdefault("fused", False)

    @mirrors("torch.optim.sgd.SGD._init_group")
    def _init_group(
        self,
        group: dict[str, Any],
        params: list[Tensor],
        grads: list[Tensor],
        momentum_buffer_list: list[Tensor | None],
    ) -> bool:
        """Collects params with a grad and their buffers (None before the first step)."""
        has_sparse_grad = False
        for p in group["params"]:
            if p.grad is not None:
                if group["fused"] and getattr(self, "_need_device_dtype_check_for_fused", True):
                    _device_dtype_check_for_fused(p)
                    self._need_device_dtype_check_for_fused = False
                params.append(p)
                grads.append(p.grad)
                if p.grad.is_sparse:
                    has_sparse_grad = True
                if group["momentum"] != 0:
                    momentum_buffer_list.append(self.state[p].get("momentum_buffer"))
        return has_sparse_grad

    @mirrors("torch.optim.sgd.SGD.step")
    @_use_grad_for_differentiable
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """Performs one SGD step over every group; ``closure`` recomputes the loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        sink = _trace.sink
        for gi, group in enumerate(self.param_groups):
            trace = None if sink is None else self._trace_group(sink, gi, group)
            params: list[Tensor] = []
            grads: list[Tensor] = []
            momentum_buffer_list: list[Tensor | None] = []
            has_sparse_grad = self._init_group(group, params, grads, momentum_buffer_list)
            if trace is not None:
                trace.bind(params)
            sgd(
                params,
                grads,
                momentum_buffer_list,
                weight_decay=group["weight_decay"],
                momentum=group["momentum"],
                lr=group["lr"],
                dampening=group["dampening"],
                nesterov=group["nesterov"],
                maximize=group["maximize"],
                has_sparse_grad=has_sparse_grad,
                foreach=group["foreach"],
                fused=group["fused"],
                grad_scale=getattr(self, "grad_scale", None),
                found_inf=getattr(self, "found_inf", None),
                trace=trace,
            )
            if group["momentum"] != 0:
                # buffers created during the step live in the lists; keep them
                for p, momentum_buffer in zip(params, momentum_buffer_list):
                    self.state[p]["momentum_buffer"] = momentum_buffer
            if trace is not None:
                trace.close(_STEP)
        return loss
