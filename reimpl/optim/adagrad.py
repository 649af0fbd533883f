"""Adagrad, mirroring ``torch/optim/adagrad.py``.

Adagrad divides each step by the root of the sum of all past squared
gradients, so often-updated coordinates slow down. Its state is created in
``__init__`` (not lazily like Adam's), with the sum filled with
``initial_accumulator_value``. Paths: ``_single_tensor_adagrad`` (torch's CPU
default, including sparse gradients), ``_multi_tensor_adagrad`` over foreach
ops, and torch's own fused kernel (``_fused_adagrad``, called as torch does).

``differentiable=True`` takes the single-tensor path with torch's one change
(``sqrt() + eps`` out of place, so autograd keeps the root it needs); foreach
and fused refuse it with torch's errors.

With ``fused=True``, ``torch.amp.GradScaler``'s ``grad_scale``/``found_inf``
go to torch's fused kernel (it unscales, and skips the step on an overflow,
whose step count is then taken back), as in torch.

Left out: TorchScript and ``torch.compile``.
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
    _get_scalar_dtype,
    _get_value,
    _group_tensors_by_device_and_dtype,
    _GroupTrace,
    _on_device,
    _to_scalar,
    _use_grad_for_differentiable,
    _view_as_real,
)

__all__ = ["Adagrad", "adagrad"]

_SINGLE = "reimpl.optim.adagrad._single_tensor_adagrad"
_MULTI = "reimpl.optim.adagrad._multi_tensor_adagrad"
_FUSED = "reimpl.optim.adagrad._fused_adagrad"
_STEP = "reimpl.optim.adagrad.Adagrad.step"


@mirrors("torch.optim.adagrad._make_sparse")
def _make_sparse(grad: Tensor, grad_indices: Tensor, values: Tensor) -> Tensor:
    """A sparse tensor with ``grad``'s indices and shape and the given values."""
    return torch.sparse_coo_tensor(grad_indices, values, grad.size())


@mirrors("torch.optim.adagrad._single_tensor_adagrad")
def _single_tensor_adagrad(
    params: list[Tensor],
    grads: list[Tensor],
    state_sums: list[Tensor],
    state_steps: list[Tensor],
    *,
    lr: float,
    weight_decay: float,
    lr_decay: float,
    eps: float,
    has_sparse_grad: bool,
    maximize: bool,
    has_complex: bool,
    differentiable: bool = False,
    grad_scale: Tensor | None = None,
    found_inf: Tensor | None = None,
    trace: _GroupTrace | None = None,
) -> None:
    """One parameter at a time: sum += g*g; p -= clr * g / (sqrt(sum) + eps)."""
    _check_no_amp_scaling(grad_scale, found_inf)
    lr = _to_scalar(lr)
    for i, (param, grad, state_sum, step_t) in enumerate(
        zip(params, grads, state_sums, state_steps)
    ):
        if trace is not None:
            mark = trace.begin()
        step_t += 1
        step = _get_value(step_t)
        grad = grad if not maximize else -grad
        if weight_decay != 0:
            if grad.is_sparse:
                raise RuntimeError("weight_decay option is not compatible with sparse gradients")
            grad = grad.add(param, alpha=weight_decay)
        clr = lr / (1 + (step - 1) * lr_decay)
        if grad.is_sparse:
            grad = grad.coalesce()  # the update is non-linear so indices must be unique
            grad_indices = grad._indices()
            grad_values = grad._values()
            state_sum.add_(_make_sparse(grad, grad_indices, grad_values.pow(2)))
            std = state_sum.sparse_mask(grad)
            std_values = std._values().sqrt_().add_(eps)
            param.add_(_make_sparse(grad, grad_indices, grad_values / std_values), alpha=-clr)
        else:
            is_complex = torch.is_complex(param)
            if is_complex:
                grad = torch.view_as_real(grad)
                state_sum = torch.view_as_real(state_sum)
                param = torch.view_as_real(param)
            state_sum.addcmul_(grad, grad, value=1)
            # sqrt's backward needs its output: differentiable adds eps out of place
            std = state_sum.sqrt() + eps if differentiable else state_sum.sqrt().add_(eps)
            param.addcdiv_(grad, std, value=-clr)
        if trace is not None:
            trace.end(i, mark, params[i], "single", _SINGLE)


@mirrors("torch.optim.adagrad._multi_tensor_adagrad")
def _multi_tensor_adagrad(
    params: list[Tensor],
    grads: list[Tensor],
    state_sums: list[Tensor],
    state_steps: list[Tensor],
    *,
    lr: float,
    weight_decay: float,
    lr_decay: float,
    eps: float,
    has_sparse_grad: bool,
    maximize: bool,
    has_complex: bool,
    differentiable: bool = False,
    grad_scale: Tensor | None = None,
    found_inf: Tensor | None = None,
    trace: _GroupTrace | None = None,
) -> None:
    """The same rule with foreach kernels; sparse buckets fall back to the loop."""
    if differentiable:
        raise AssertionError("_foreach ops don't support autograd")
    _check_no_amp_scaling(grad_scale, found_inf)
    if len(params) == 0:
        return
    lr = _to_scalar(lr)
    grouped = _group_tensors_by_device_and_dtype([params, grads, state_sums, state_steps])
    for (
        device_params,
        device_grads,
        device_state_sums,
        device_state_steps,
    ), idx in grouped.values():
        if has_sparse_grad and any(g.is_sparse for g in device_grads):
            _single_tensor_adagrad(
                device_params,
                device_grads,
                device_state_sums,
                device_state_steps,
                lr=lr,
                weight_decay=weight_decay,
                lr_decay=lr_decay,
                eps=eps,
                has_sparse_grad=True,
                maximize=maximize,
                has_complex=has_complex,
                differentiable=differentiable,
                grad_scale=grad_scale,
                found_inf=found_inf,
            )
            continue
        if trace is not None:
            marks = trace.begin_all(len(idx))
            traced_params = list(device_params)
        if has_complex:
            _view_as_real(device_params, device_grads, device_state_sums)
        if maximize:
            device_grads = torch._foreach_neg(device_grads)
        if device_state_steps[0].is_cpu:
            torch._foreach_add_(device_state_steps, torch.tensor(1.0, device="cpu"), alpha=1.0)
        else:
            torch._foreach_add_(device_state_steps, 1)
        if weight_decay != 0:
            if maximize:  # reuse the negated copy
                torch._foreach_add_(device_grads, device_params, alpha=weight_decay)
            else:
                device_grads = torch._foreach_add(device_grads, device_params, alpha=weight_decay)
        minus_clr = [-lr / (1 + (_get_value(step) - 1) * lr_decay) for step in device_state_steps]
        torch._foreach_addcmul_(device_state_sums, device_grads, device_grads, value=1)
        std = torch._foreach_sqrt(device_state_sums)
        torch._foreach_add_(std, eps)
        if weight_decay != 0 or maximize:
            # device_grads is already our own copy, so scale it in place
            torch._foreach_mul_(device_grads, minus_clr)
            numerator = device_grads
        else:
            numerator = torch._foreach_mul(device_grads, minus_clr)
        torch._foreach_addcdiv_(device_params, numerator, std)
        if trace is not None:
            trace.end_all(idx, marks, traced_params, "foreach", _MULTI)


@mirrors("torch.optim.adagrad._fused_adagrad")
def _fused_adagrad(
    params: list[Tensor],
    grads: list[Tensor],
    state_sums: list[Tensor],
    state_steps: list[Tensor],
    *,
    lr: float,
    weight_decay: float,
    lr_decay: float,
    eps: float,
    has_sparse_grad: bool,
    maximize: bool,
    has_complex: bool,
    differentiable: bool = False,
    grad_scale: Tensor | None = None,
    found_inf: Tensor | None = None,
    trace: _GroupTrace | None = None,
) -> None:
    """torch's fused kernel, one call per device/dtype bucket."""
    if not params:
        return
    if has_sparse_grad or has_complex:
        raise RuntimeError("`fused` does not support sparse grad or complex param")
    if differentiable:
        raise RuntimeError("adagrad with fused=True does not support differentiable=True")
    grad_scale_dict: dict = {}
    found_inf_dict: dict = {}
    # a tensor lr off the CPU is copied once to each device it meets
    lr_dict = {lr.device: lr} if isinstance(lr, Tensor) and str(lr.device) != "cpu" else None
    grouped = _group_tensors_by_device_and_dtype([params, grads, state_sums, state_steps])
    for (device, _), (
        (device_params, device_grads, device_state_sums, device_state_steps),
        idx,
    ) in grouped.items():
        if trace is not None:
            marks = trace.begin_all(len(idx))
        device_found_inf = _on_device(found_inf_dict, found_inf, device)
        if lr_dict is not None and device not in lr_dict:
            lr_dict[device] = lr.to(device=device, non_blocking=True)  # type: ignore[union-attr]
            lr = lr_dict[device]
        torch._foreach_add_(device_state_steps, 1)
        torch._fused_adagrad_(
            device_params,
            device_grads,
            device_state_sums,
            device_state_steps,
            lr=lr,
            lr_decay=lr_decay,
            weight_decay=weight_decay,
            eps=eps,
            maximize=maximize,
            grad_scale=_on_device(grad_scale_dict, grad_scale, device),
            found_inf=device_found_inf,
        )
        if device_found_inf is not None:  # a skipped step does not count
            torch._foreach_sub_(device_state_steps, [device_found_inf] * len(device_state_steps))
        if trace is not None:
            trace.end_all(idx, marks, device_params, "fused", _FUSED)


@mirrors("torch.optim.adagrad.adagrad")
def adagrad(
    params: list[Tensor],
    grads: list[Tensor],
    state_sums: list[Tensor],
    state_steps: list[Tensor],
    fused: bool | None = None,
    grad_scale: Tensor | None = None,
    found_inf: Tensor | None = None,
    has_sparse_grad: bool = False,
    foreach: bool | None = None,
    differentiable: bool = False,
    has_complex: bool = False,
    *,
    lr: float,
    weight_decay: float,
    lr_decay: float,
    eps: float,
    maximize: bool,
    trace: _GroupTrace | None = None,
) -> None:
    """Functional Adagrad: picks the single-tensor, foreach or fused path like torch."""
    if not all(isinstance(t, torch.Tensor) for t in state_steps):
        raise RuntimeError(
            "API has changed, `state_steps` argument must contain a list of singleton tensors"
        )
    if fused is None and foreach is None:
        _, foreach = _default_to_fused_or_foreach(params, differentiable, use_fused=False)
    func: Callable[..., None]
    if fused:
        func = _fused_adagrad
    elif foreach:
        func = _multi_tensor_adagrad
    else:
        func = _single_tensor_adagrad
    func(
        params,
        grads,
        state_sums,
        state_steps,
        lr=lr,
        weight_decay=weight_decay,
        lr_decay=lr_decay,
        eps=eps,
        has_sparse_grad=has_sparse_grad,
        maximize=maximize,
        differentiable=differentiable,
        has_complex=has_complex,
        grad_scale=grad_scale,
        found_inf=found_inf,
        trace=trace,
    )


@mirrors("torch.optim.adagrad.Adagrad")
class Adagrad(Optimizer):
    """Adagrad with learning-rate decay and an initial accumulator value."""

    def __init__(
        self,
        params: ParamsT,
        lr: float | Tensor = 1e-2,
        lr_decay: float = 0,
        weight_decay: float = 0,
        initial_accumulator_value: float = 0,
        eps: float = 1e-10,
        foreach: bool | None = None,
        *,
        maximize: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
    ) -> None:
        if isinstance(lr, Tensor) and lr.numel() != 1:
            raise ValueError("Tensor lr must be 1-element")
        if not lr >= 0.0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not lr_decay >= 0.0:
            raise ValueError(f"Invalid lr_decay value: {lr_decay}")
        if not weight_decay >= 0.0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if not initial_accumulator_value >= 0.0:
            raise ValueError(
                f"Invalid initial_accumulator_value value: {initial_accumulator_value}"
            )
        if not eps >= 0.0:
            raise ValueError(f"Invalid epsilon value: {eps}")
        defaults = {
            "lr": lr,
            "lr_decay": lr_decay,
            "eps": eps,
            "weight_decay": weight_decay,
            "initial_accumulator_value": initial_accumulator_value,
            "foreach": foreach,
            "maximize": maximize,
            "differentiable": differentiable,
            "fused": fused,
        }
        super().__init__(params, defaults)
        if fused:
            if differentiable:
                raise RuntimeError("`fused` does not support `differentiable`")
            if foreach:
                raise RuntimeError("`fused` and `foreach` cannot be `True` together.")
            self._need_device_dtype_check_for_fused = True
            self._step_supports_amp_scaling = True
        # unlike Adam, state exists from the start: the accumulator's initial value matters
        for group in self.param_groups:
            for p in group["params"]:
                self._init_state(p, group["fused"], initial_accumulator_value)

    def _init_state(self, p: Tensor, fused: bool | None, initial_accumulator_value: float) -> None:
        """``step`` and the running ``sum`` of squared gradients for one param."""
        state = self.state[p]
        state["step"] = (
            torch.zeros((), dtype=_get_scalar_dtype(is_fused=fused), device=p.device)
            if fused
            else torch.tensor(0.0, dtype=_get_scalar_dtype())
        )
        init_value = (
            complex(initial_accumulator_value, initial_accumulator_value)
            if torch.is_complex(p)
            else initial_accumulator_value
        )
        state["sum"] = torch.full_like(p, init_value, memory_format=torch.preserve_format)

    @mirrors("torch.optim.adagrad.Adagrad.__setstate__")
    def __setstate__(self, state: dict[str, Any]) -> None:
        """Fills options missing from old checkpoints; makes old float steps tensors."""
        super().__setstate__(state)
        fused = None
        for group in self.param_groups:
            group.setdefault("foreach", None)
            group.setdefault("maximize", False)
            group.setdefault("differentiable", False)
            fused = group.setdefault("fused", None)
        for s in self.state.values():
            if len(s) != 0 and not torch.is_tensor(s["step"]):
                s["step"] = torch.tensor(float(s["step"]), dtype=_get_scalar_dtype(is_fused=fused))

    @mirrors("torch.optim.adagrad.Adagrad.share_memory")
    def share_memory(self) -> None:
        """Moves the accumulators to shared memory (Hogwild-style multiprocess training)."""
        for group in self.param_groups:
            for p in group["params"]:
                self.state[p]["sum"].share_memory_()

    @mirrors("torch.optim.adagrad.Adagrad._init_group")
    def _init_group(
        self,
        group: dict[str, Any],
        params_with_grad: list[Tensor],
        grads: list[Tensor],
        state_sums: list[Tensor],
        state_steps: list[Tensor],
    ) -> tuple[bool, bool]:
        """Collects params with a grad (state for params added since ``__init__``)."""
        has_sparse_grad, has_complex = False, False
        for p in group["params"]:
            if p.grad is None:
                continue
            if group["fused"] and getattr(self, "_need_device_dtype_check_for_fused", True):
                _device_dtype_check_for_fused(p)
                self._need_device_dtype_check_for_fused = False
            has_sparse_grad |= p.grad.is_sparse
            has_complex |= torch.is_complex(p)
            params_with_grad.append(p)
            grads.append(p.grad)
            state = self.state[p]
            if len(state) == 0:
                self._init_state(p, group["fused"], self.defaults["initial_accumulator_value"])
            state_sums.append(state["sum"])
            state_steps.append(state["step"])
        return has_sparse_grad, has_complex

    @mirrors("torch.optim.adagrad.Adagrad.step")
    @_use_grad_for_differentiable
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """Performs one Adagrad step over every group; ``closure`` recomputes the loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        sink = _trace.sink
        for gi, group in enumerate(self.param_groups):
            trace = None if sink is None else self._trace_group(sink, gi, group)
            params_with_grad: list[Tensor] = []
            grads: list[Tensor] = []
            state_sums: list[Tensor] = []
            state_steps: list[Tensor] = []
            has_sparse_grad, has_complex = self._init_group(
                group, params_with_grad, grads, state_sums, state_steps
            )
            if trace is not None:
                trace.bind(params_with_grad)
            adagrad(
                params_with_grad,
                grads,
                state_sums,
                state_steps,
                lr=group["lr"],
                weight_decay=group["weight_decay"],
                lr_decay=group["lr_decay"],
                eps=group["eps"],
                has_sparse_grad=has_sparse_grad,
                foreach=group["foreach"],
                maximize=group["maximize"],
                differentiable=group["differentiable"],
                has_complex=has_complex,
                fused=group["fused"],
                grad_scale=getattr(self, "grad_scale", None),
                found_inf=getattr(self, "found_inf", None),
                trace=trace,
            )
            if trace is not None:
                trace.close(_STEP)
        return loss
