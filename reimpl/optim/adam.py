"""Adam, mirroring ``torch/optim/adam.py`` (AdamW reuses it, as in torch).

Three update paths chosen like torch: the for-loop ``_single_tensor_adam``
(torch's default on CPU), ``_multi_tensor_adam`` over ``torch._foreach_*``
ops, and ``_fused_adam``. Where torch's fused path calls its C++ kernel
(``torch._fused_adam_``), ours runs ``_adam_fused_kernel``: the same element
loop written in plain Python over flat numpy views of the tensors, compiled
by numba (``NUMBA_DISABLE_JIT=1`` runs the very same code as Python). Like
torch's kernel it does all of one element's update in one pass over memory
instead of one pass per tensor op, and rounds scalars to the tensor's dtype.
Tensors of 64k elements or more use the ``prange`` variant (threads, like
torch's ``parallel_for``). Each parameter costs one numba call (some 20 us of
Python and dispatch), so the path pays off on large tensors; see
``benchmarks/bench_optim.py``. A non-contiguous tensor is updated through a
contiguous copy (torch 2.13's fused CPU kernel walks raw memory instead, and
mispairs a transposed param with its contiguous grad).

Left out: ``capturable`` (CUDA-graph) and ``differentiable`` paths (they
raise), tensor ``lr``/``betas`` for foreach, complex parameters in the fused
path, AMP ``grad_scale``/``found_inf``, TorchScript and ``torch.compile``.
"""

from __future__ import annotations

import math
import types
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from reimpl import _trace
from reimpl._trace import mirrors

from .optimizer import (
    Optimizer,
    ParamsT,
    _default_to_fused_or_foreach,
    _device_dtype_check_for_fused,
    _get_scalar_dtype,
    _get_value,
    _group_tensors_by_device_and_dtype,
    _GroupTrace,
    _to_scalar,
    _use_grad_for_differentiable,
    _view_as_real,
)

__all__ = ["Adam", "adam"]

_SINGLE = "reimpl.optim.adam._single_tensor_adam"
_MULTI = "reimpl.optim.adam._multi_tensor_adam"
_FUSED = "reimpl.optim.adam._fused_adam"
_STEP = "reimpl.optim.adam.Adam.step"  # AdamW runs this step too


@mirrors("torch.optim.optimizer._get_capturable_supported_devices")
def _get_capturable_supported_devices() -> list[str]:
    """Devices whose streams CUDA-graph-style capture works on (never the CPU)."""
    return ["cuda", "xpu", "hpu", torch._C._get_privateuse1_backend_name(), "xla"]


def _check_left_out(params: list[Tensor], capturable: bool, differentiable: bool) -> None:
    """Refuses the paths reimpl leaves out, with torch's error where torch has one."""
    if capturable:
        devices = _get_capturable_supported_devices()
        if not all(p.device.type in devices for p in params):
            raise AssertionError(
                "If capturable=True, params and state_steps must be on supported "
                f"devices: {devices}."
            )
        raise NotImplementedError("reimpl leaves out Adam's capturable (graph capture) path")
    if differentiable:
        raise NotImplementedError("reimpl leaves out Adam's differentiable path")


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
    beta1: float,
    beta2: float,
    lr: float,
    weight_decay: float,
    eps: float,
    maximize: bool,
    decoupled_weight_decay: bool,
    trace: _GroupTrace | None = None,
) -> None:
    """One parameter at a time, one tensor op per line of the Adam rule."""
    lr = _to_scalar(lr)
    for i, param in enumerate(params):
        if trace is not None:
            mark = trace.begin()
        grad = grads[i] if not maximize else -grads[i]
        exp_avg = exp_avgs[i]
        exp_avg_sq = exp_avg_sqs[i]
        step_t = state_steps[i]
        step_t += 1
        if weight_decay != 0:
            if decoupled_weight_decay:  # AdamW: shrink the weights, leave the grad alone
                param.mul_(1 - lr * weight_decay)
            else:  # Adam: L2 penalty folded into the gradient
                grad = grad.add(param, alpha=weight_decay)
        if torch.is_complex(param):
            grad = torch.view_as_real(grad)
            exp_avg = torch.view_as_real(exp_avg)
            exp_avg_sq = torch.view_as_real(exp_avg_sq)
            if amsgrad:
                max_exp_avg_sqs[i] = torch.view_as_real(max_exp_avg_sqs[i])
            param = torch.view_as_real(param)
        # first and second moments: running means of g and g*g
        exp_avg.lerp_(grad, 1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
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
    beta1: float,
    beta2: float,
    lr: float,
    weight_decay: float,
    eps: float,
    maximize: bool,
    decoupled_weight_decay: bool,
    trace: _GroupTrace | None = None,
) -> None:
    """The same rule, each line one foreach kernel over a device/dtype bucket."""
    if len(params) == 0:
        return
    if isinstance(lr, Tensor):
        raise RuntimeError("lr as a Tensor is not supported for capturable=False and foreach=True")
    lr = _to_scalar(lr)
    grouped = _group_tensors_by_device_and_dtype(
        [params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, state_steps]
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
        torch._foreach_lerp_(device_exp_avgs, device_grads, 1 - beta1)
        torch._foreach_mul_(device_exp_avg_sqs, beta2)
        torch._foreach_addcmul_(device_exp_avg_sqs, device_grads, device_grads, 1 - beta2)
        del device_grads  # free the intermediate before allocating the sqrt below
        bias_correction1 = [1 - beta1 ** _get_value(step) for step in device_state_steps]
        bias_correction2 = [1 - beta2 ** _get_value(step) for step in device_state_steps]
        step_size = [(lr / bc) * -1 for bc in bias_correction1]
        bias_correction2_sqrt = [bc**0.5 for bc in bias_correction2]
        if amsgrad:
            torch._foreach_maximum_(device_max_exp_avg_sqs, device_exp_avg_sqs)
            exp_avg_sq_sqrt = torch._foreach_sqrt(device_max_exp_avg_sqs)
        else:
            exp_avg_sq_sqrt = torch._foreach_sqrt(device_exp_avg_sqs)
        torch._foreach_div_(exp_avg_sq_sqrt, bias_correction2_sqrt)
        torch._foreach_add_(exp_avg_sq_sqrt, eps)
        torch._foreach_addcdiv_(device_params, device_exp_avgs, exp_avg_sq_sqrt, step_size)
        if trace is not None:
            trace.end_all(indices, marks, traced_params, "foreach", _MULTI)


# The reference loop below walks the elements with ``prange``: plain ``range`` when
# it runs as Python, numba's parallel range (elements split over threads, as
# torch's fused kernel splits them with ``parallel_for``) once compiled.
prange = range


def _adam_fused_kernel_py(
    param: np.ndarray,
    grad: np.ndarray,
    exp_avg: np.ndarray,
    exp_avg_sq: np.ndarray,
    max_exp_avg_sq: np.ndarray,
    step_size: Any,
    bias_correction2_sqrt: Any,
    lerp_weight: Any,
    one_minus_weight: Any,
    beta2: Any,
    beta2_coef: Any,
    eps: Any,
    weight_decay: Any,
    decay_factor: Any,
    maximize: bool,
    amsgrad: bool,
    decoupled: bool,
) -> None:
    """The reference Adam element loop: the whole rule per element, in one pass.

    Scalars arrive already rounded to the arrays' dtype (float32 math for
    float32 params, as torch's fused CPU kernel does). The lerp takes the
    branch torch's ``lerp`` takes for a weight below 0.5 (``1 - beta1``) or not.
    """
    small = abs(lerp_weight) < 0.5
    for d in prange(param.shape[0]):
        g = grad[d]
        if maximize:
            g = -g
        p = param[d]
        if weight_decay != 0:
            if decoupled:
                p = p * decay_factor
            else:
                g = g + p * weight_decay
        m = exp_avg[d]
        m = m + lerp_weight * (g - m) if small else g - (g - m) * one_minus_weight
        exp_avg[d] = m
        v = exp_avg_sq[d] * beta2
        v = v + beta2_coef * g * g
        exp_avg_sq[d] = v
        if amsgrad:
            v = max(max_exp_avg_sq[d], v)
            max_exp_avg_sq[d] = v
        denom = np.sqrt(v) / bias_correction2_sqrt + eps
        param[d] = p - step_size * m / denom


_compiled_kernels: dict[bool, Callable[..., None]] = {}

# Below this many elements, waking numba's thread pool costs more than it saves.
_PARALLEL_MIN_NUMEL = 1 << 16


def _adam_fused_kernel(parallel: bool = False) -> Callable[..., None]:
    """The numba-compiled kernel, built on first use so importing reimpl stays cheap.

    ``parallel=True`` compiles the same code with ``prange`` split over threads.
    """
    kernel = _compiled_kernels.get(parallel)
    if kernel is None:
        import numba

        ref = _adam_fused_kernel_py
        if parallel:  # the same code object, seeing numba's prange where Python sees range
            scope = {**globals(), "prange": numba.prange}
            ref = types.FunctionType(ref.__code__, scope, "_adam_fused_kernel_parallel")
            # numba names its on-disk cache after __qualname__: keep the variants apart
            ref.__qualname__ = ref.__name__
        # cache=True keeps the machine code on disk: later processes skip the compile
        kernel = numba.njit(parallel=parallel, cache=True, nogil=True)(ref)
        _compiled_kernels[parallel] = kernel
    return kernel


def _flat(t: Tensor) -> np.ndarray:
    """A writable 1-D numpy view of a contiguous CPU tensor's memory."""
    return t.detach().view(-1).numpy()


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
    beta1: float,
    beta2: float,
    lr: float,
    weight_decay: float,
    eps: float,
    maximize: bool,
    decoupled_weight_decay: bool,
    trace: _GroupTrace | None = None,
) -> None:
    """One numba pass per parameter (torch: one ``torch._fused_adam_`` per bucket)."""
    if not params:
        return
    lr = float(_to_scalar(lr))
    torch._foreach_add_(state_steps, 1)
    for i, param in enumerate(params):
        if trace is not None:
            mark = trace.begin()
        if param.device.type != "cpu" or param.dtype not in (torch.float32, torch.float64):
            raise RuntimeError(
                "reimpl's fused Adam runs on CPU float32/float64 tensors, "
                f"got {param.dtype} on {param.device.type}"
            )
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
    has_complex: bool = False,
    decoupled_weight_decay: bool = False,
    *,
    amsgrad: bool,
    beta1: float,
    beta2: float,
    lr: float,
    weight_decay: float,
    eps: float,
    maximize: bool,
    trace: _GroupTrace | None = None,
) -> None:
    """Functional Adam: picks the single-tensor, foreach or fused path like torch."""
    _check_left_out(params, capturable, differentiable)
    if fused is None and foreach is None:
        _, foreach = _default_to_fused_or_foreach(params, differentiable, use_fused=False)
        if foreach and isinstance(lr, Tensor):
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
        trace=trace,
    )


@mirrors("torch.optim.adam.Adam")
class Adam(Optimizer):
    """Adam: per-parameter steps scaled by running moments of the gradient.

    ``fused=True`` runs reimpl's numba kernel (CPU float32/float64 only).
    """

    def __init__(
        self,
        params: ParamsT,
        lr: float | Tensor = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
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
                decoupled_weight_decay=group["decoupled_weight_decay"],
                trace=trace,
            )
            if trace is not None:
                trace.close(_STEP)
        return loss
