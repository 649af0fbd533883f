"""RMSprop, mirroring ``torch/optim/rmsprop.py``.

RMSprop divides each step by the root of a running mean of squared
gradients (``alpha`` is its decay); ``centered`` subtracts the squared
running mean of the gradient (an estimate of the variance), and
``momentum`` accumulates the normalised steps in a buffer. Paths: the
for-loop ``_single_tensor_rmsprop`` (torch's CPU default) and
``_multi_tensor_rmsprop`` over foreach ops; torch has no fused RMSprop.

``differentiable=True`` takes the single-tensor path with torch's one change
(``avg + eps`` out of place, so autograd keeps the root it needs); foreach
refuses it with torch's error. ``capturable`` runs torch's capturable
branches and, like torch, needs params on a graph-capturing device (CUDA,
XPU...): on a CPU it raises torch's AssertionError.

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
    _check_capturable_devices,
    _default_to_fused_or_foreach,
    _get_scalar_dtype,
    _group_tensors_by_device_and_dtype,
    _GroupTrace,
    _to_scalar,
    _use_grad_for_differentiable,
    _view_as_real,
)

__all__ = ["RMSprop", "rmsprop"]

_SINGLE = "reimpl.optim.rmsprop._single_tensor_rmsprop"
_MULTI = "reimpl.optim.rmsprop._multi_tensor_rmsprop"
_STEP = "reimpl.optim.rmsprop.RMSprop.step"


@mirrors("torch.optim.rmsprop._single_tensor_rmsprop")
def _single_tensor_rmsprop(
    params: list[Tensor],
    grads: list[Tensor],
    square_avgs: list[Tensor],
    grad_avgs: list[Tensor],
    momentum_buffer_list: list[Tensor],
    state_steps: list[Tensor],
    *,
    lr: float,
    alpha: float,
    eps: float,
    weight_decay: float,
    momentum: float,
    centered: bool,
    maximize: bool,
    has_complex: bool,
    differentiable: bool = False,
    capturable: bool = False,
    trace: _GroupTrace | None = None,
) -> None:
    """One parameter at a time, one tensor op per line of the rule."""
    lr = _to_scalar(lr)
    for i, param in enumerate(params):
        if trace is not None:
            mark = trace.begin()
        step = state_steps[i]
        if capturable:
            _check_capturable_devices([param], [step])
        grad = grads[i]
        grad = grad if not maximize else -grad
        square_avg = square_avgs[i]
        step += 1
        if weight_decay != 0:
            grad = grad.add(param, alpha=weight_decay)
        is_complex_param = torch.is_complex(param)
        if is_complex_param:
            param = torch.view_as_real(param)
            grad = torch.view_as_real(grad)
            square_avg = torch.view_as_real(square_avg)
        square_avg.mul_(alpha).addcmul_(grad, grad, value=1 - alpha)
        if centered:
            grad_avg = grad_avgs[i]
            if is_complex_param:
                grad_avg = torch.view_as_real(grad_avg)
            grad_avg.lerp_(grad, 1 - alpha)
            # E[g^2] - E[g]^2: the variance, not the raw second moment
            avg = square_avg.addcmul(grad_avg, grad_avg, value=-1).sqrt_()
        else:
            avg = square_avg.sqrt()
        # sqrt's backward needs its output: differentiable adds eps out of place
        avg = avg.add(eps) if differentiable else avg.add_(eps)
        if momentum > 0:
            buf = momentum_buffer_list[i]
            if is_complex_param:
                buf = torch.view_as_real(buf)
            buf.mul_(momentum).addcdiv_(grad, avg)
            param.add_(buf, alpha=-lr)
        else:
            param.addcdiv_(grad, avg, value=-lr)
        if trace is not None:
            trace.end(i, mark, params[i], "single", _SINGLE)


@mirrors("torch.optim.rmsprop._multi_tensor_rmsprop")
def _multi_tensor_rmsprop(
    params: list[Tensor],
    grads: list[Tensor],
    square_avgs: list[Tensor],
    grad_avgs: list[Tensor],
    momentum_buffer_list: list[Tensor],
    state_steps: list[Tensor],
    *,
    lr: float,
    alpha: float,
    eps: float,
    weight_decay: float,
    momentum: float,
    centered: bool,
    maximize: bool,
    has_complex: bool,
    differentiable: bool = False,
    capturable: bool = False,
    trace: _GroupTrace | None = None,
) -> None:
    """The same rule, each line one foreach kernel over a device/dtype bucket."""
    if len(params) == 0:
        return
    if differentiable:
        raise AssertionError("_foreach ops don't support autograd")
    if capturable:
        _check_capturable_devices(params, state_steps)
    lr = _to_scalar(lr)
    grouped = _group_tensors_by_device_and_dtype(
        [params, grads, square_avgs, grad_avgs, momentum_buffer_list, state_steps]
    )
    for (
        grouped_params,
        grouped_grads,
        grouped_square_avgs,
        grouped_grad_avgs,
        grouped_momentum_buffer_list,
        grouped_state_steps,
    ), indices in grouped.values():
        if trace is not None:
            marks = trace.begin_all(len(indices))
            traced_params = list(grouped_params)
        if has_complex:
            state_and_grads = [grouped_grads, grouped_square_avgs]
            if momentum > 0:
                state_and_grads.append(grouped_momentum_buffer_list)
            if centered:
                state_and_grads.append(grouped_grad_avgs)
            _view_as_real(grouped_params, *state_and_grads)
        if maximize:
            grouped_grads = torch._foreach_neg(grouped_grads)
        if grouped_state_steps[0].is_cpu:
            torch._foreach_add_(grouped_state_steps, torch.tensor(1.0, device="cpu"), alpha=1.0)
        else:
            torch._foreach_add_(grouped_state_steps, 1)
        if weight_decay != 0:
            if maximize:  # reuse the negated copy
                torch._foreach_add_(grouped_grads, grouped_params, alpha=weight_decay)
            else:
                grouped_grads = torch._foreach_add(
                    grouped_grads, grouped_params, alpha=weight_decay
                )
        torch._foreach_mul_(grouped_square_avgs, alpha)
        torch._foreach_addcmul_(grouped_square_avgs, grouped_grads, grouped_grads, value=1 - alpha)
        if centered:
            torch._foreach_lerp_(grouped_grad_avgs, grouped_grads, 1 - alpha)
            avg = torch._foreach_addcmul(
                grouped_square_avgs, grouped_grad_avgs, grouped_grad_avgs, value=-1
            )
            torch._foreach_sqrt_(avg)
            torch._foreach_add_(avg, eps)
        else:
            avg = torch._foreach_sqrt(grouped_square_avgs)
            torch._foreach_add_(avg, eps)
        # a capturable tensor lr stays a tensor: alpha/value take only numbers
        tensor_lr = capturable and isinstance(lr, Tensor)
        if momentum > 0:
            torch._foreach_mul_(grouped_momentum_buffer_list, momentum)
            torch._foreach_addcdiv_(grouped_momentum_buffer_list, grouped_grads, avg)
            if tensor_lr:
                momentum_lr = torch._foreach_mul(grouped_momentum_buffer_list, -lr)
                torch._foreach_add_(grouped_params, momentum_lr)
            else:
                torch._foreach_add_(grouped_params, grouped_momentum_buffer_list, alpha=-lr)
        elif tensor_lr:
            torch._foreach_div_(avg, -lr)
            torch._foreach_addcdiv_(grouped_params, grouped_grads, avg)
        else:
            torch._foreach_addcdiv_(grouped_params, grouped_grads, avg, value=-lr)
        if trace is not None:
            trace.end_all(indices, marks, traced_params, "foreach", _MULTI)


@mirrors("torch.optim.rmsprop.rmsprop")
def rmsprop(
    params: list[Tensor],
    grads: list[Tensor],
    square_avgs: list[Tensor],
    grad_avgs: list[Tensor],
    momentum_buffer_list: list[Tensor],
    state_steps: list[Tensor],
    foreach: bool | None = None,
    maximize: bool = False,
    differentiable: bool = False,
    capturable: bool = False,
    has_complex: bool = False,
    *,
    lr: float,
    alpha: float,
    eps: float,
    weight_decay: float,
    momentum: float,
    centered: bool,
    trace: _GroupTrace | None = None,
) -> None:
    """Functional RMSprop: picks the single-tensor or foreach path like torch."""
    if not all(isinstance(t, torch.Tensor) for t in state_steps):
        raise RuntimeError(
            "API has changed, `state_steps` argument must contain a list of singleton tensors"
        )
    if foreach is None:
        _, foreach = _default_to_fused_or_foreach(params, differentiable, use_fused=False)
    func = _multi_tensor_rmsprop if foreach else _single_tensor_rmsprop
    func(
        params,
        grads,
        square_avgs,
        grad_avgs,
        momentum_buffer_list,
        state_steps,
        lr=lr,
        alpha=alpha,
        eps=eps,
        weight_decay=weight_decay,
        momentum=momentum,
        centered=centered,
        maximize=maximize,
        capturable=capturable,
        differentiable=differentiable,
        has_complex=has_complex,
        trace=trace,
    )


@mirrors("torch.optim.rmsprop.RMSprop")
class RMSprop(Optimizer):
    """RMSprop with optional centering, momentum, weight decay and maximize."""

    def __init__(
        self,
        params: ParamsT,
        lr: float | Tensor = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0,
        momentum: float = 0,
        centered: bool = False,
        capturable: bool = False,
        foreach: bool | None = None,
        maximize: bool = False,
        differentiable: bool = False,
    ) -> None:
        if isinstance(lr, Tensor) and lr.numel() != 1:
            raise ValueError("Tensor lr must be 1-element")
        if not lr >= 0.0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not eps >= 0.0:
            raise ValueError(f"Invalid epsilon value: {eps}")
        if not momentum >= 0.0:
            raise ValueError(f"Invalid momentum value: {momentum}")
        if not weight_decay >= 0.0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if not alpha >= 0.0:
            raise ValueError(f"Invalid alpha value: {alpha}")
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "alpha": alpha,
            "eps": eps,
            "centered": centered,
            "weight_decay": weight_decay,
            "capturable": capturable,
            "foreach": foreach,
            "maximize": maximize,
            "differentiable": differentiable,
        }
        super().__init__(params, defaults)

    @mirrors("torch.optim.rmsprop.RMSprop.__setstate__")
    def __setstate__(self, state: dict[str, Any]) -> None:
        """Fills options missing from old checkpoints; makes old float steps tensors."""
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("momentum", 0)
            group.setdefault("centered", False)
            group.setdefault("foreach", None)
            group.setdefault("maximize", False)
            group.setdefault("differentiable", False)
            group.setdefault("capturable", False)
            for p in group["params"]:
                p_state = self.state.get(p, [])
                if len(p_state) != 0 and not torch.is_tensor(p_state["step"]):
                    step_val = float(p_state["step"])
                    p_state["step"] = (
                        torch.tensor(step_val, dtype=_get_scalar_dtype(), device=p.device)
                        if group["capturable"]
                        else torch.tensor(step_val, dtype=_get_scalar_dtype())
                    )

    @mirrors("torch.optim.rmsprop.RMSprop._init_group")
    def _init_group(
        self,
        group: dict[str, Any],
        params_with_grad: list[Tensor],
        grads: list[Tensor],
        square_avgs: list[Tensor],
        momentum_buffer_list: list[Tensor],
        grad_avgs: list[Tensor],
        state_steps: list[Tensor],
    ) -> bool:
        """Collects params with a grad; creates their state lazily on first sight."""
        has_complex = False
        for p in group["params"]:
            if p.grad is None:
                continue
            has_complex |= torch.is_complex(p)
            params_with_grad.append(p)
            if p.grad.is_sparse:
                raise RuntimeError("RMSprop does not support sparse gradients")
            grads.append(p.grad)
            state = self.state[p]
            if len(state) == 0:
                # the step lives next to the param only when capturable (no host sync)
                state["step"] = (
                    torch.zeros((), dtype=_get_scalar_dtype(), device=p.device)
                    if group["capturable"]
                    else torch.zeros((), dtype=_get_scalar_dtype())
                )
                state["square_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                if group["momentum"] > 0:
                    state["momentum_buffer"] = torch.zeros_like(
                        p, memory_format=torch.preserve_format
                    )
                if group["centered"]:
                    state["grad_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            square_avgs.append(state["square_avg"])
            state_steps.append(state["step"])
            if group["momentum"] > 0:
                momentum_buffer_list.append(state["momentum_buffer"])
            if group["centered"]:
                grad_avgs.append(state["grad_avg"])
        return has_complex

    @mirrors("torch.optim.rmsprop.RMSprop.step")
    @_use_grad_for_differentiable
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """Performs one RMSprop step over every group; ``closure`` recomputes the loss."""
        self._accelerator_graph_capture_health_check()
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        sink = _trace.sink
        for gi, group in enumerate(self.param_groups):
            trace = None if sink is None else self._trace_group(sink, gi, group)
            params_with_grad: list[Tensor] = []
            grads: list[Tensor] = []
            square_avgs: list[Tensor] = []
            grad_avgs: list[Tensor] = []
            momentum_buffer_list: list[Tensor] = []
            state_steps: list[Tensor] = []
            has_complex = self._init_group(
                group,
                params_with_grad,
                grads,
                square_avgs,
                momentum_buffer_list,
                grad_avgs,
                state_steps,
            )
            if trace is not None:
                trace.bind(params_with_grad)
            rmsprop(
                params_with_grad,
                grads,
                square_avgs,
                grad_avgs,
                momentum_buffer_list,
                state_steps,
                lr=group["lr"],
                alpha=group["alpha"],
                eps=group["eps"],
                weight_decay=group["weight_decay"],
                momentum=group["momentum"],
                centered=group["centered"],
                foreach=group["foreach"],
                maximize=group["maximize"],
                differentiable=group["differentiable"],
                capturable=group["capturable"],
                has_complex=has_complex,
                trace=trace,
            )
            if trace is not None:
                trace.close(_STEP)
        return loss
