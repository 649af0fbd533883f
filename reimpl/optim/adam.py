"""Adam, mirroring ``torch/optim/adam.py`` (AdamW reuses it, as in torch).

Three update paths chosen like torch: the for-loop ``_single_tensor_adam``
(torch's default on CPU), ``_multi_tensor_adam`` over ``torch._foreach_*``
ops, and ``_fused_adam``. Where torch's fused path calls its C++ kernel
(``torch._fused_adam_``), ours runs ``_adam_fused_kernel`` (its own file,
``_adam_fused_kernel.py``): the same element loop written in plain Python
over flat numpy views of the tensors, compiled by numba
(``NUMBA_DISABLE_JIT=1`` runs the very same code as Python). Like
torch's kernel it does all of one element's update in one pass over memory
instead of one pass per tensor op, and rounds scalars to the tensor's dtype.
Tensors of 64k elements or more use the ``prange`` variant (threads, like
torch's ``parallel_for``). Each parameter costs one numba call (some 20 us of
Python and dispatch), so the path pays off on large tensors; see
``benchmarks/bench_optim.py``. A non-contiguous tensor is updated through a
contiguous copy (torch 2.13's fused CPU kernel walks raw memory instead, and
mispairs a transposed param with its contiguous grad).

``differentiable=True`` takes torch's single-tensor path (autograd records
the update, so a meta-loss can be differentiated through ``step()`` with
respect to the initial weights and to tensor ``lr``, ``betas`` and
``weight_decay``); foreach and fused refuse it with torch's errors.
``capturable`` runs torch's capturable branches (bias corrections as tensor
math on the step tensors); like torch, it needs params on a graph-capturing
device (CUDA, XPU...), so on a CPU it raises torch's AssertionError.

The numba kernel takes CPU float32/float64 params; with ``fused=True`` other
params (float16/bfloat16, or on a GPU) run torch's own fused kernel, called as
torch calls it, and so does every param when ``torch.amp.GradScaler`` hands
the step its ``grad_scale``/``found_inf`` (the kernel unscales, and skips the
step on an overflow).

Left out: TorchScript and ``torch.compile``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from reimpl import _trace
from reimpl._trace import mirrors

# the kernel's names stay reachable here, next to the _fused_adam that runs them
from ._adam_fused_kernel import (  # noqa: F401
    _adam_fused_kernel,
    _adam_fused_kernel_py,
    _compiled_kernels,
    _flat,
)
from .optimizer import (
    Optimizer,
    ParamsT,
    _check_capturable_devices,
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

__all__ = ["Adam", "adam"]

_SINGLE = "reimpl.optim.adam._single_tensor_adam"
_MULTI = "reimpl.optim.adam._multi_tensor_adam"
_FUSED = "reimpl.optim.adam._fused_adam"
_STEP = "reimpl.optim.adam.Adam.step"  # AdamW runs this step too


@mirrors("torch.optim.adam._single_tensor_adam")
def _single_tensor_adam(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    max_exp_avg_sqs: list[Tensor],
    state_steps: list[Tensor],
    *,
    amsgrad: bool,
    has_complex: bool,
    beta1: float | Tensor,
    beta2: float | Tensor,
    lr: float | Tensor,
    weight_decay: float | Tensor,
    eps: float,
    maximize: bool,
    decoupled_weight_decay: bool,
    capturable: bool = False,
    differentiable: bool = False,
    grad_scale: Tensor | None = None,
    found_inf: Tensor | None = None,
    trace: _GroupTrace | None = None,
) -> None:
    """One parameter at a time, one tensor op per line of the Adam rule.

    ``differentiable`` (and ``capturable``) keep the step count a tensor so the
    bias corrections stay in the graph, and clone what an in-place op would
    otherwise overwrite while autograd still needs it.
    """
    _check_no_amp_scaling(grad_scale, found_inf)
    lr = _to_scalar(lr)
    beta1 = _to_scalar(beta1)
    beta2 = _to_scalar(beta2)
    # a tensor beta1 is copied once per (device, dtype) it meets, not once per param
    beta1_dict = {(beta1.device, beta1.dtype): beta1} if isinstance(beta1, Tensor) else None
    for i, param in enumerate(params):
        if trace is not None:
            mark = trace.begin()
        grad = grads[i] if not maximize else -grads[i]
        exp_avg = exp_avgs[i]
        exp_avg_sq = exp_avg_sqs[i]
        step_t = state_steps[i]
        if capturable:
            _check_capturable_devices([param], [step_t])
        step_t += 1
        if weight_decay != 0:
            if decoupled_weight_decay:  # AdamW: shrink the weights, leave the grad alone
                param.mul_(1 - lr * weight_decay)
            elif differentiable and isinstance(weight_decay, Tensor) and weight_decay.requires_grad:
                # torch accumulates into the grad in place here; the clone keeps the
                # param's current value for the backward of this product
                grad = grad.addcmul_(param.clone(), weight_decay)
            else:  # Adam: L2 penalty folded into the gradient
                grad = grad.add(param, alpha=weight_decay)
        if torch.is_complex(param):
            grad = torch.view_as_real(grad)
            exp_avg = torch.view_as_real(exp_avg)
            exp_avg_sq = torch.view_as_real(exp_avg_sq)
            if amsgrad:
                max_exp_avg_sqs[i] = torch.view_as_real(max_exp_avg_sqs[i])
            param = torch.view_as_real(param)
        device_beta1: float | Tensor = beta1
        if beta1_dict is not None:
            key = (param.device, param.dtype)
            if key not in beta1_dict:
                beta1_dict[key] = beta1.to(  # type: ignore[union-attr]
                    device=param.device, dtype=param.dtype, non_blocking=True
                )
            device_beta1 = beta1_dict[key]
        # first and second moments: running means of g and g*g
        exp_avg.lerp_(grad, 1 - device_beta1)
        if differentiable and isinstance(beta2, Tensor) and beta2.requires_grad:
            # addcmul's value cannot be a tensor: the same update written as a lerp
            exp_avg_sq.lerp_(torch.square(grad), weight=1 - beta2)
        else:
            exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        if capturable or differentiable:
            _tensor_step_update(
                i, param, exp_avg, exp_avg_sq, max_exp_avg_sqs, step_t,
                amsgrad=amsgrad, beta1=beta1, beta2=beta2, lr=lr, eps=eps,
                differentiable=differentiable,
            )  # fmt: skip
        else:
            # the step count is a CPU tensor; its Python value is cheaper than tensor math
            step = _get_value(step_t)
            bias_correction1 = 1 - beta1**step
            bias_correction2 = 1 - beta2**step
            step_size = lr / bias_correction1
            bias_correction2_sqrt = bias_correction2**0.5
            if amsgrad:
                torch.maximum(max_exp_avg_sqs[i], exp_avg_sq, out=max_exp_avg_sqs[i])
                denom = (max_exp_avg_sqs[i].sqrt() / bias_correction2_sqrt).add_(eps)
            else:
                denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
            param.addcdiv_(exp_avg, denom, value=-step_size)
        if amsgrad and torch.is_complex(params[i]):
            max_exp_avg_sqs[i] = torch.view_as_complex(max_exp_avg_sqs[i])
        if trace is not None:
            trace.end(i, mark, params[i], "single", _SINGLE)


def _tensor_step_update(
    i: int,
    param: Tensor,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    max_exp_avg_sqs: list[Tensor],
    step: Tensor,
    *,
    amsgrad: bool,
    beta1: float | Tensor,
    beta2: float | Tensor,
    lr: float | Tensor,
    eps: float,
    differentiable: bool,
) -> None:
    """The end of torch's ``capturable or differentiable`` branch: the bias
    corrections as tensor math on the step tensor (no ``.item()``: no host sync
    under graph capture, and autograd sees the dependence on lr and the betas)."""
    if differentiable and isinstance(beta1, Tensor) and beta1.requires_grad:
        bias_correction1 = 1 - beta1 ** step.clone()  # the step is bumped in place later
    else:
        bias_correction1 = 1 - beta1**step
    if differentiable and isinstance(beta2, Tensor) and beta2.requires_grad:
        bias_correction2 = 1 - beta2 ** step.clone()
    else:
        bias_correction2 = 1 - beta2**step
    step_size = lr / bias_correction1
    step_size_neg = step_size.neg()
    bias_correction2_sqrt = bias_correction2.sqrt()
    if amsgrad:
        # the clone keeps the old maximum alive for autograd before copy_ overwrites it
        max_exp_avg_sq = max_exp_avg_sqs[i].clone() if differentiable else max_exp_avg_sqs[i]
        max_exp_avg_sqs[i].copy_(torch.maximum(max_exp_avg_sq, exp_avg_sq))
        # the 1-element step size folded into the denominator: addcdiv_'s value
        # must be a number, and this saves a pass over the param-sized tensors
        denom = (max_exp_avg_sqs[i].sqrt() / (bias_correction2_sqrt * step_size_neg)).add_(
            eps / step_size_neg
        )
    else:
        denom = (exp_avg_sq.sqrt() / (bias_correction2_sqrt * step_size_neg)).add_(
            eps / step_size_neg
        )
    param.addcdiv_(exp_avg.clone() if differentiable else exp_avg, denom)


def _check_foreach_arguments(
    params: list[Tensor],
    state_steps: list[Tensor],
    lr: float | Tensor,
    beta1: float | Tensor,
    beta2: float | Tensor,
    capturable: bool,
    differentiable: bool,
    grad_scale: Tensor | None,
    found_inf: Tensor | None,
) -> None:
    """What the foreach path refuses, in torch's order and words: tensor
    hyper-parameters unless capturable, AMP scaling, and autograd."""
    if isinstance(lr, Tensor):
        if not capturable:
            raise RuntimeError(
                "lr as a Tensor is not supported for capturable=False and foreach=True"
            )
        if lr.numel() != 1:
            raise ValueError("Tensor lr must be 1-element")
    for name, beta in (("beta1", beta1), ("beta2", beta2)):
        if isinstance(beta, Tensor):
            if not capturable:
                raise ValueError(
                    f"{name} as a Tensor is not supported for capturable=False and foreach=True"
                )
            if beta.numel() != 1:
                raise ValueError(f"Tensor {name} must be 1-element")
    if capturable:
        _check_capturable_devices(params, state_steps, supports_xla=False)
    _check_no_amp_scaling(grad_scale, found_inf)
    if differentiable:
        raise AssertionError("_foreach ops don't support autograd")


@mirrors("torch.optim.adam._multi_tensor_adam")
def _multi_tensor_adam(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    max_exp_avg_sqs: list[Tensor],
    state_steps: list[Tensor],
    *,
    amsgrad: bool,
    has_complex: bool,
    beta1: float | Tensor,
    beta2: float | Tensor,
    lr: float | Tensor,
    weight_decay: float,
    eps: float,
    maximize: bool,
    decoupled_weight_decay: bool,
    capturable: bool = False,
    differentiable: bool = False,
    grad_scale: Tensor | None = None,
    found_inf: Tensor | None = None,
    trace: _GroupTrace | None = None,
) -> None:
    """The same rule, each line one foreach kernel over a device/dtype bucket."""
    if len(params) == 0:
        return
    _check_foreach_arguments(
        params, state_steps, lr, beta1, beta2, capturable, differentiable, grad_scale, found_inf
    )
    lr = _to_scalar(lr)
    beta1 = _to_scalar(beta1)
    beta2 = _to_scalar(beta2)
    grouped = _group_tensors_by_device_and_dtype(
        [params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, state_steps]
    )
    # a tensor beta1 off the CPU is copied once to each device it meets
    beta1_dict = (
        {beta1.device: beta1} if isinstance(beta1, Tensor) and str(beta1.device) != "cpu" else None
    )
    for (
        device_params,
        device_grads,
        device_exp_avgs,
        device_exp_avg_sqs,
        device_max_exp_avg_sqs,
        device_state_steps,
    ), indices in grouped.values():
        if trace is not None:
            marks = trace.begin_all(len(indices))
            traced_params = list(device_params)  # before complex views replace them
        device = device_params[0].device
        if beta1_dict is not None and device not in beta1_dict:
            beta1_dict[device] = beta1.to(device=device, non_blocking=True)  # type: ignore[union-attr]
        device_beta1 = beta1_dict[device] if beta1_dict else beta1
        if has_complex:
            if amsgrad:
                _view_as_real(
                    device_params,
                    device_grads,
                    device_exp_avgs,
                    device_exp_avg_sqs,
                    device_max_exp_avg_sqs,
                )
            else:
                _view_as_real(device_params, device_grads, device_exp_avgs, device_exp_avg_sqs)
        if maximize:
            device_grads = torch._foreach_neg(device_grads)
        # a CPU scalar tensor as the addend avoids a slow Python-scalar path for CPU steps
        if device_state_steps[0].is_cpu:
            torch._foreach_add_(device_state_steps, torch.tensor(1.0, device="cpu"), alpha=1.0)
        else:
            torch._foreach_add_(device_state_steps, 1)
        if weight_decay != 0:
            if decoupled_weight_decay:
                torch._foreach_mul_(device_params, 1 - lr * weight_decay)
            elif maximize:  # reuse the negated copy
                torch._foreach_add_(device_grads, device_params, alpha=weight_decay)
            else:
                device_grads = torch._foreach_add(device_grads, device_params, alpha=weight_decay)
        torch._foreach_lerp_(device_exp_avgs, device_grads, 1 - device_beta1)
        torch._foreach_mul_(device_exp_avg_sqs, beta2)
        # _foreach_addcmul_ takes only a Python number as value: scale a tensor beta2 first
        if isinstance(beta2, Tensor):
            scaled_device_grads = torch._foreach_mul(device_grads, 1 - beta2)
            value = 1.0
        else:
            scaled_device_grads = device_grads
            value = 1 - beta2
        torch._foreach_addcmul_(device_exp_avg_sqs, scaled_device_grads, device_grads, value)
        del device_grads, scaled_device_grads  # free them before allocating the sqrt below
        if capturable:
            _foreach_capturable_update(
                device_params, device_exp_avgs, device_exp_avg_sqs, device_max_exp_avg_sqs,
                device_state_steps, amsgrad=amsgrad, beta1=beta1, beta2=beta2, lr=lr, eps=eps,
            )  # fmt: skip
        else:
            bias_correction1 = [1 - beta1 ** _get_value(step) for step in device_state_steps]
            bias_correction2 = [1 - beta2 ** _get_value(step) for step in device_state_steps]
            step_size = [(lr / bc) * -1 for bc in bias_correction1]
            bias_correction2_sqrt = [bc**0.5 for bc in bias_correction2]
            exp_avg_sq_sqrt = _foreach_denominator(
                device_exp_avg_sqs, device_max_exp_avg_sqs, bias_correction2_sqrt, eps, amsgrad
            )
            torch._foreach_addcdiv_(device_params, device_exp_avgs, exp_avg_sq_sqrt, step_size)
        if trace is not None:
            trace.end_all(indices, marks, traced_params, "foreach", _MULTI)


def _foreach_denominator(
    device_exp_avg_sqs: list[Tensor],
    device_max_exp_avg_sqs: list[Tensor],
    bias_correction2_sqrt: Any,
    eps: float,
    amsgrad: bool,
) -> list[Tensor]:
    """``sqrt(v) / sqrt(1 - beta2**t) + eps`` per tensor; under amsgrad ``v`` is
    the running maximum of the second moment (updated here)."""
    if amsgrad:
        torch._foreach_maximum_(device_max_exp_avg_sqs, device_exp_avg_sqs)
        exp_avg_sq_sqrt = torch._foreach_sqrt(device_max_exp_avg_sqs)
    else:
        exp_avg_sq_sqrt = torch._foreach_sqrt(device_exp_avg_sqs)
    torch._foreach_div_(exp_avg_sq_sqrt, bias_correction2_sqrt)
    torch._foreach_add_(exp_avg_sq_sqrt, eps)
    return exp_avg_sq_sqrt


def _foreach_capturable_update(
    device_params: list[Tensor],
    device_exp_avgs: list[Tensor],
    device_exp_avg_sqs: list[Tensor],
    device_max_exp_avg_sqs: list[Tensor],
    device_state_steps: list[Tensor],
    *,
    amsgrad: bool,
    beta1: float | Tensor,
    beta2: float | Tensor,
    lr: float | Tensor,
    eps: float,
) -> None:
    """torch's capturable tail of the foreach path: the bias corrections as
    foreach ops on the step tensors, so nothing waits for the host."""
    bias_correction1 = torch._foreach_pow(beta1, device_state_steps)  # type: ignore[arg-type]
    bias_correction2 = torch._foreach_pow(beta2, device_state_steps)  # type: ignore[arg-type]
    # foreach_sub takes no scalar first argument: compute beta**t - 1, negate later
    torch._foreach_sub_(bias_correction1, 1)
    torch._foreach_sub_(bias_correction2, 1)
    torch._foreach_neg_(bias_correction2)
    torch._foreach_div_(bias_correction1, lr)
    torch._foreach_reciprocal_(bias_correction1)
    torch._foreach_sqrt_(bias_correction2)
    step_size = bias_correction1  # -lr / (1 - beta1**t)
    bias_correction2_sqrt = bias_correction2  # sqrt(1 - beta2**t)
    exp_avg_sq_sqrt = _foreach_denominator(
        device_exp_avg_sqs, device_max_exp_avg_sqs, bias_correction2_sqrt, eps, amsgrad
    )
    torch._foreach_div_(exp_avg_sq_sqrt, step_size)
    # exp_avg_sq_sqrt is now -(1 - beta1**t) * (sqrt(v / (1 - beta2**t)) + eps) / lr
    torch._foreach_addcdiv_(device_params, device_exp_avgs, exp_avg_sq_sqrt)


# Below this many elements, waking numba's thread pool costs more than it saves.
_PARALLEL_MIN_NUMEL = 1 << 16


_NUMBA_DTYPES = (torch.float32, torch.float64)


def _torch_fused_adam(
    which: list[int],
    tensor_lists: list[list[Tensor]],
    *,
    amsgrad: bool,
    beta1: float | Tensor,
    beta2: float | Tensor,
    lr: float | Tensor,
    weight_decay: float,
    eps: float,
    maximize: bool,
    decoupled_weight_decay: bool,
    grad_scale: Tensor | None,
    found_inf: Tensor | None,
    trace: _GroupTrace | None,
) -> None:
    """torch's fused kernel for the params at ``which`` (the numba kernel has no
    half types, no GPU and no AMP), one call per device/dtype bucket, as torch."""
    subset = [[lst[i] for i in which] if lst else [] for lst in tensor_lists]
    grad_scale_dict: dict = {}
    found_inf_dict: dict = {}
    # a tensor lr off the CPU is copied once to each device it meets
    lr_dict = {lr.device: lr} if isinstance(lr, Tensor) and str(lr.device) != "cpu" else None
    func = torch._fused_adamw_ if decoupled_weight_decay else torch._fused_adam_
    for (device, _), (bucket, indices) in _group_tensors_by_device_and_dtype(subset).items():
        if trace is not None:
            marks = trace.begin_all(len(indices))
        if lr_dict is not None and device not in lr_dict:
            lr_dict[device] = lr.to(device=device, non_blocking=True)  # type: ignore[union-attr]
            lr = lr_dict[device]
        device_params, device_grads, device_exp_avgs, device_exp_avg_sqs, device_max, steps = bucket
        device_found_inf = _on_device(found_inf_dict, found_inf, device)
        torch._foreach_add_(steps, 1)
        func(
            device_params, device_grads, device_exp_avgs, device_exp_avg_sqs, device_max, steps,
            amsgrad=amsgrad, lr=lr, beta1=beta1, beta2=beta2, weight_decay=weight_decay,
            eps=eps, maximize=maximize, grad_scale=_on_device(grad_scale_dict, grad_scale, device),
            found_inf=device_found_inf,
        )  # fmt: skip
        if device_found_inf is not None:  # a skipped step does not count
            torch._foreach_sub_(steps, [device_found_inf] * len(steps))
        if trace is not None:
            trace.end_all([which[j] for j in indices], marks, device_params, "fused", _FUSED)


@mirrors("torch.optim.adam._fused_adam")
def _fused_adam(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    max_exp_avg_sqs: list[Tensor],
    state_steps: list[Tensor],
    *,
    amsgrad: bool,
    has_complex: bool,
    beta1: float | Tensor,
    beta2: float | Tensor,
    lr: float | Tensor,
    weight_decay: float,
    eps: float,
    maximize: bool,
    decoupled_weight_decay: bool,
    capturable: bool = False,
    differentiable: bool = False,
    grad_scale: Tensor | None = None,
    found_inf: Tensor | None = None,
    trace: _GroupTrace | None = None,
) -> None:
    """One numba pass per CPU float32/float64 parameter (torch: one
    ``torch._fused_adam_`` per bucket); other devices and dtypes (half
    precision, CUDA), and AMP-scaled steps, go to torch's own kernel."""
    if not params:
        return
    if differentiable:
        raise RuntimeError("Adam with fused=True does not support differentiable=True")
    beta1 = _to_scalar(beta1)
    beta2 = _to_scalar(beta2)
    amp = grad_scale is not None or found_inf is not None
    numba_ready = [not amp and p.device.type == "cpu" and p.dtype in _NUMBA_DTYPES for p in params]
    if not all(numba_ready):
        _torch_fused_adam(
            [i for i, ready in enumerate(numba_ready) if not ready],
            [params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, state_steps],
            amsgrad=amsgrad, beta1=beta1, beta2=beta2, lr=lr, weight_decay=weight_decay,
            eps=eps, maximize=maximize, decoupled_weight_decay=decoupled_weight_decay,
            grad_scale=grad_scale, found_inf=found_inf, trace=trace,
        )  # fmt: skip
    lr = float(_to_scalar(lr))
    for i, param in enumerate(params):
        if not numba_ready[i]:
            continue
        state_steps[i] += 1
        if trace is not None:
            mark = trace.begin()
        # like torch's kernel: bias corrections in double, then rounded to the dtype
        step = state_steps[i].item()
        bias_correction1 = 1 - math.pow(beta1, step)
        bias_correction2 = 1 - math.pow(beta2, step)
        cast = np.float32 if param.dtype == torch.float32 else np.float64
        grad = grads[i].contiguous()
        outputs = [param, exp_avgs[i], exp_avg_sqs[i]] + ([max_exp_avg_sqs[i]] if amsgrad else [])
        work = [t if t.is_contiguous() else t.contiguous() for t in outputs]
        arrays = [_flat(t) for t in work]
        kernel = _adam_fused_kernel(parallel=param.numel() >= _PARALLEL_MIN_NUMEL)
        kernel(
            arrays[0],
            _flat(grad),
            arrays[1],
            arrays[2],
            arrays[3] if amsgrad else arrays[2][:0],
            cast(lr / bias_correction1),
            cast(math.sqrt(bias_correction2)),
            cast(1 - beta1),
            cast(1) - cast(1 - beta1),
            cast(beta2),
            cast(1 - beta2),
            cast(eps),
            cast(weight_decay),
            cast(1 - lr * weight_decay),
            maximize,
            amsgrad,
            decoupled_weight_decay,
        )
        for out, w in zip(outputs, work):
            if out is not w:  # a strided tensor was updated through a copy
                out.detach().copy_(w)
        if trace is not None:
            trace.end(i, mark, param, "fused", _FUSED)


@mirrors("torch.optim.adam.adam")
def adam(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    max_exp_avg_sqs: list[Tensor],
    state_steps: list[Tensor],
    foreach: bool | None = None,
    capturable: bool = False,
    differentiable: bool = False,
    fused: bool | None = None,
    grad_scale: Tensor | None = None,
    found_inf: Tensor | None = None,
    has_complex: bool = False,
    decoupled_weight_decay: bool = False,
    *,
    amsgrad: bool,
    beta1: float | Tensor,
    beta2: float | Tensor,
    lr: float | Tensor,
    weight_decay: float | Tensor,
    eps: float,
    maximize: bool,
    trace: _GroupTrace | None = None,
) -> None:
    """Functional Adam: picks the single-tensor, foreach or fused path like torch."""
    if fused is None and foreach is None:
        _, foreach = _default_to_fused_or_foreach(params, differentiable, use_fused=False)
        # foreach takes a tensor lr only when capturable: keep the for-loop then
        if foreach and isinstance(lr, Tensor) and not capturable:
            foreach = False
    if not all(isinstance(t, torch.Tensor) for t in state_steps):
        raise RuntimeError(
            "API has changed, `state_steps` argument must contain a list of singleton tensors"
        )
    func: Callable[..., None]
    if fused:
        func = _fused_adam
    elif foreach:
        func = _multi_tensor_adam
    else:
        func = _single_tensor_adam
    func(
        params,
        grads,
        exp_avgs,
        exp_avg_sqs,
        max_exp_avg_sqs,
        state_steps,
        amsgrad=amsgrad,
        has_complex=has_complex,
        beta1=beta1,
        beta2=beta2,
        lr=lr,
        weight_decay=weight_decay,
        eps=eps,
        maximize=maximize,
        decoupled_weight_decay=decoupled_weight_decay,
        capturable=capturable,
        differentiable=differentiable,
        grad_scale=grad_scale,
        found_inf=found_inf,
        trace=trace,
    )


@mirrors("torch.optim.adam.Adam")
class Adam(Optimizer):
    """Adam: per-parameter steps scaled by running moments of the gradient.

    ``fused=True`` runs reimpl's numba kernel on CPU float32/float64 params and
    torch's fused kernel on the others.
    """

    def __init__(
        self,
        params: ParamsT,
        lr: float | Tensor = 1e-3,
        betas: tuple[float | Tensor, float | Tensor] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float | Tensor = 0,
        amsgrad: bool = False,
        *,
        foreach: bool | None = None,
        maximize: bool = False,
        capturable: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
        decoupled_weight_decay: bool = False,
    ) -> None:
        if isinstance(lr, Tensor):
            if foreach and not capturable:
                raise ValueError(
                    "lr as a Tensor is not supported for capturable=False and foreach=True"
                )
            if lr.numel() != 1:
                raise ValueError("Tensor lr must be 1-element")
        if not lr >= 0.0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not eps >= 0.0:
            raise ValueError(f"Invalid epsilon value: {eps}")
        if not 0.0 <= betas[0] < 1.0:
            raise ValueError(f"Invalid beta parameter at index 0: {betas[0]}")
        if not 0.0 <= betas[1] < 1.0:
            raise ValueError(f"Invalid beta parameter at index 1: {betas[1]}")
        if not weight_decay >= 0.0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if not (
            (isinstance(betas[0], float) and isinstance(betas[1], float))
            or (isinstance(betas[0], Tensor) and isinstance(betas[1], Tensor))
        ):
            raise ValueError("betas must be either both floats or both Tensors")
        for i, beta in enumerate(betas):
            if isinstance(beta, Tensor):
                if not capturable and foreach:
                    raise ValueError(
                        f"betas[{i}] as a Tensor is not supported for capturable=False "
                        "and foreach=True"
                    )
                if beta.numel() != 1:
                    raise ValueError(f"Tensor betas[{i}] must be 1-element")
        betas = tuple(map(_to_scalar, betas))  # type: ignore[assignment]
        defaults = {
            "lr": lr,
            "betas": betas,
            "eps": eps,
            "weight_decay": weight_decay,
            "amsgrad": amsgrad,
            "maximize": maximize,
            "foreach": foreach,
            "capturable": capturable,
            "differentiable": differentiable,
            "fused": fused,
            "decoupled_weight_decay": decoupled_weight_decay,
        }
        super().__init__(params, defaults)
        if fused:
            if differentiable:
                raise RuntimeError("`fused` does not support `differentiable`")
            self._step_supports_amp_scaling = True
            if foreach:
                raise RuntimeError("`fused` and `foreach` cannot be `True` together.")

    @mirrors("torch.optim.adam.Adam.__setstate__")
    def __setstate__(self, state: dict[str, Any]) -> None:
        """Fills options missing from old checkpoints; makes old float steps tensors."""
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("amsgrad", False)
            group.setdefault("maximize", False)
            group.setdefault("foreach", None)
            group.setdefault("capturable", False)
            group.setdefault("differentiable", False)
            group.setdefault("decoupled_weight_decay", False)
            fused = group.setdefault("fused", None)
            for p in group["params"]:
                p_state = self.state.get(p, [])
                if len(p_state) != 0 and not torch.is_tensor(p_state["step"]):
                    step_val = float(p_state["step"])
                    p_state["step"] = (
                        torch.tensor(
                            step_val, dtype=_get_scalar_dtype(is_fused=fused), device=p.device
                        )
                        if group["capturable"] or group["fused"]
                        else torch.tensor(step_val, dtype=_get_scalar_dtype())
                    )

    @mirrors("torch.optim.adam.Adam._init_group")
    def _init_group(
        self,
        group: dict[str, Any],
        params_with_grad: list[Tensor],
        grads: list[Tensor],
        exp_avgs: list[Tensor],
        exp_avg_sqs: list[Tensor],
        max_exp_avg_sqs: list[Tensor],
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
                raise RuntimeError(
                    "Adam does not support sparse gradients, please consider SparseAdam instead"
                )
            grads.append(p.grad)
            state = self.state[p]
            if len(state) == 0:
                if group["fused"]:
                    _device_dtype_check_for_fused(p)
                # step on the CPU (a host sync per .item() would cost more) unless fused
                state["step"] = (
                    torch.zeros(
                        (), dtype=_get_scalar_dtype(is_fused=group["fused"]), device=p.device
                    )
                    if group["capturable"] or group["fused"]
                    else torch.tensor(0.0, dtype=_get_scalar_dtype(), device="cpu")
                )
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                if group["amsgrad"]:
                    state["max_exp_avg_sq"] = torch.zeros_like(
                        p, memory_format=torch.preserve_format
                    )
            exp_avgs.append(state["exp_avg"])
            exp_avg_sqs.append(state["exp_avg_sq"])
            if group["amsgrad"]:
                max_exp_avg_sqs.append(state["max_exp_avg_sq"])
            if group["differentiable"] and state["step"].requires_grad:
                raise RuntimeError(
                    "`requires_grad` is not supported for `step` in differentiable mode"
                )
            # foreach without capturable takes no tensor lr
            if group["foreach"] and torch.is_tensor(group["lr"]) and not group["capturable"]:
                raise RuntimeError(
                    "lr as a Tensor is not supported for capturable=False and foreach=True"
                )
            state_steps.append(state["step"])
        return has_complex

    @mirrors("torch.optim.adam.Adam.step")
    @_use_grad_for_differentiable
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """Performs one Adam step over every group; ``closure`` recomputes the loss."""
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
            exp_avgs: list[Tensor] = []
            exp_avg_sqs: list[Tensor] = []
            max_exp_avg_sqs: list[Tensor] = []
            state_steps: list[Tensor] = []
            beta1, beta2 = group["betas"]
            has_complex = self._init_group(
                group, params_with_grad, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, state_steps
            )
            if trace is not None:
                trace.bind(params_with_grad)
            adam(
                params_with_grad,
                grads,
                exp_avgs,
                exp_avg_sqs,
                max_exp_avg_sqs,
                state_steps,
                amsgrad=group["amsgrad"],
                has_complex=has_complex,
                beta1=beta1,
                beta2=beta2,
                lr=group["lr"],
                weight_decay=group["weight_decay"],
                eps=group["eps"],
                maximize=group["maximize"],
                foreach=group["foreach"],
                capturable=group["capturable"],
                differentiable=group["differentiable"],
                fused=group["fused"],
                grad_scale=getattr(self, "grad_scale", None),
                found_inf=getattr(self, "found_inf", None),
                decoupled_weight_decay=group["decoupled_weight_decay"],
                trace=trace,
            )
            if trace is not None:
                trace.close(_STEP)
        return loss
