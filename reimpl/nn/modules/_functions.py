"""The autograd function behind SyncBatchNorm, as in ``torch/nn/modules/_functions.py``.

Same structure as upstream: the forward all-gathers one combined
``[mean, invstd, count]`` vector per rank (counts may differ, a rank may hold
an empty batch), merges them with ``batch_norm_gather_stats_with_counts``
(which also updates the running statistics) and normalises with
``batch_norm_elemt``; the backward reduces locally, all-reduces the combined
``[sum_dy, sum_dy_xmu]`` once, and finishes with ``batch_norm_backward_elemt``.

Differences, all deliberate:

* The five native operators come from :mod:`._batch_norm_kernels` (numba) for
  CPU tensors, so this runs on gloo without a GPU; CUDA tensors use torch's own
  operators, exactly as upstream.
* On NCCL the gather uses ``dist.all_gather_into_tensor`` (upstream 2.13 spells
  it ``all_gather_single``; it is the same single-tensor collective).
* Each kernel and collective is a trace span (``bn.*``, ``collective.*``); a
  collective that times out is re-raised naming the rank, the group and the
  likely cause.

Left out: ``CrossMapLRN2d`` and ``BackwardHookFunction`` (not part of
BatchNorm; the latter belongs with ``Module``'s backward hooks).
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import torch
import torch.distributed as dist
from torch.autograd.function import Function

from ... import _trace
from ..._collectives import collective
from ..._trace import mirrors

__all__ = ["SyncBatchNorm"]


def _ops(t: torch.Tensor) -> ModuleType:
    """Where the native batch-norm operators live for ``t``'s device."""
    if t.is_cuda:
        return torch
    # Imported here so that numba loads on the first CPU sync, not with reimpl.nn.
    from . import _batch_norm_kernels

    return _batch_norm_kernels


# The reimpl functions that emit spans (span() would otherwise name the helper).
_FORWARD = f"{__name__}.SyncBatchNorm.forward"
_BACKWARD = f"{__name__}.SyncBatchNorm.backward"


def _bn_span(kind: str, t: torch.Tensor, func: str) -> Any:
    """A ``bn.*`` span with the tensor's shape, or the shared no-op when untraced."""
    if _trace.sink is None:
        return _trace._NO_SPAN
    return _trace.span(
        kind,
        kind.removeprefix("bn."),
        func=func,
        shape=list(t.shape),
        dtype=str(t.dtype).removeprefix("torch."),
        device=str(t.device),
    )


def _group_name(process_group: Any) -> str:
    """A readable name for a process group (its registered name, else its id)."""
    name = getattr(process_group, "group_name", None)
    return str(name) if name else f"pg@{id(process_group):x}"


def _timeout_error(err: Exception, op: str, process_group: Any, world_size: int) -> Exception:
    """Turns gloo's terse timeout into a message that says what went wrong."""
    text = str(err)
    if "timed out" not in text.lower() and "timeout" not in text.lower():
        return err
    rank = dist.get_rank(process_group) if dist.is_initialized() else "?"
    return RuntimeError(
        f"SyncBatchNorm {op} timed out on rank {rank} of {world_size} "
        f"(process group {_group_name(process_group)!r}): a peer rank never joined "
        f"this collective -- it crashed, hung, skipped this layer, or ran a different "
        f"number of steps. Original error: {text}"
    )


def _collective(
    op: str, run: Any, tensor: torch.Tensor, process_group: Any, world_size: int, func: str
) -> Any:
    """Runs one blocking collective inside a ``collective.*`` span (group, sequence
    number, sizes: see ``reimpl/_collectives.py``), naming a timeout's likely cause."""
    try:
        return collective(op, run, [tensor], process_group, func=func, world_size=world_size)
    except RuntimeError as err:
        raise _timeout_error(err, op, process_group, world_size) from err


@mirrors("torch.nn.modules._functions.SyncBatchNorm")
class SyncBatchNorm(Function):
    """Batch norm whose statistics and gradient sums span every rank of a group."""

    @staticmethod
    @mirrors("torch.nn.modules._functions.SyncBatchNorm.forward")
    def forward(
        self,  # upstream names the autograd context ``self``; kept for a side-by-side diff
        input: torch.Tensor,
        weight: torch.Tensor | None,
        bias: torch.Tensor | None,
        running_mean: torch.Tensor | None,
        running_var: torch.Tensor | None,
        eps: float,
        momentum: float,
        process_group: Any,
        world_size: int,
    ) -> torch.Tensor:
        if not (
            input.is_contiguous(memory_format=torch.channels_last)
            or input.is_contiguous(memory_format=torch.channels_last_3d)
        ):
            input = input.contiguous()
        if weight is not None:
            weight = weight.contiguous()

        size = int(input.numel() // input.size(1))
        if size == 1 and world_size < 2:
            raise ValueError(
                f"Expected more than 1 value per channel when training, got input size {size}"
            )

        ops = _ops(input)
        num_channels = input.shape[1]
        if input.numel() > 0:
            # calculate mean/invstd for input.
            with _bn_span("bn.stats", input, _FORWARD):
                mean, invstd = ops.batch_norm_stats(input, eps)

            count = torch.full(
                (1,), input.numel() // input.size(1), dtype=mean.dtype, device=mean.device
            )

            # C, C, 1 -> (2C + 1)
            combined = torch.cat([mean, invstd, count], dim=0)
        else:
            # An empty batch still joins the all_gather (its peers would block
            # otherwise); its zero count filters it out of the global stats.
            combined = torch.zeros(2 * num_channels + 1, dtype=input.dtype, device=input.device)

        # all_gather rather than all_reduce: counts may differ across ranks, so
        # the merge needs every rank's (mean, invstd, count) separately.
        if process_group._get_backend_name() != "gloo":
            # NCCL: one flat world_size * (2C + 1) tensor.
            combined_size = combined.numel()
            combined_flat = torch.empty(
                1, combined_size * world_size, dtype=combined.dtype, device=combined.device
            )
            _collective(
                "all_gather",
                lambda: dist.all_gather_into_tensor(
                    combined_flat, combined, process_group, async_op=False
                ),
                combined,
                process_group,
                world_size,
                _FORWARD,
            )
            combined = torch.reshape(combined_flat, (world_size, combined_size))
            mean_all, invstd_all, count_all = torch.split(combined, num_channels, dim=1)
        else:
            # gloo has no all_gather_into_tensor: gather a list, then stack.
            combined_list = [torch.empty_like(combined) for _ in range(world_size)]
            _collective(
                "all_gather",
                lambda: dist.all_gather(combined_list, combined, process_group, async_op=False),
                combined,
                process_group,
                world_size,
                _FORWARD,
            )
            combined = torch.stack(combined_list, dim=0)
            # world_size * (2C + 1) -> world_size * C, world_size * C, world_size * 1
            mean_all, invstd_all, count_all = torch.split(combined, num_channels, dim=1)

        if not (torch.cuda.is_available() and torch.cuda.is_current_stream_capturing()):
            # Boolean masking syncs CUDA with the host, which CUDA graphs forbid.
            # remove stats from empty inputs
            mask = count_all.squeeze(-1) >= 1
            count_all = count_all[mask]
            mean_all = mean_all[mask]
            invstd_all = invstd_all[mask]

        # calculate global mean & invstd (and update the running stats in place)
        counts = count_all.view(-1)
        if running_mean is not None and counts.dtype != running_mean.dtype:
            counts = counts.to(running_mean.dtype)
        with _bn_span("bn.gather_stats", mean_all, _FORWARD):
            mean, invstd = ops.batch_norm_gather_stats_with_counts(
                input, mean_all, invstd_all, running_mean, running_var, momentum, eps, counts
            )

        self.save_for_backward(input, weight, mean, invstd, count_all.to(torch.int32))
        self.process_group = process_group

        # apply element-wise normalization
        if input.numel() > 0:
            with _bn_span("bn.elemt", input, _FORWARD):
                return ops.batch_norm_elemt(input, weight, bias, mean, invstd, eps)
        else:
            return torch.empty_like(input)

    @staticmethod
    @mirrors("torch.nn.modules._functions.SyncBatchNorm.backward")
    def backward(self, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        if not (
            grad_output.is_contiguous(memory_format=torch.channels_last)
            or grad_output.is_contiguous(memory_format=torch.channels_last_3d)
        ):
            grad_output = grad_output.contiguous()
        saved_input, weight, mean, invstd, count_tensor = self.saved_tensors
        grad_input = grad_weight = grad_bias = None
        process_group = self.process_group
        world_size = dist.get_world_size(process_group)
        ops = _ops(saved_input)

        if saved_input.numel() > 0:
            # calculate local stats as well as grad_weight / grad_bias
            with _bn_span("bn.backward_reduce", saved_input, _BACKWARD):
                sum_dy, sum_dy_xmu, grad_weight, grad_bias = ops.batch_norm_backward_reduce(
                    grad_output,
                    saved_input,
                    mean,
                    invstd,
                    weight,
                    self.needs_input_grad[0],
                    self.needs_input_grad[1],
                    self.needs_input_grad[2],
                )

            if self.needs_input_grad[0]:
                # One all_reduce of [sum_dy, sum_dy_xmu]: both are plain sums.
                num_channels = sum_dy.shape[0]
                combined = torch.cat([sum_dy, sum_dy_xmu], dim=0)
                _collective(
                    "all_reduce",
                    lambda: dist.all_reduce(
                        combined, dist.ReduceOp.SUM, process_group, async_op=False
                    ),
                    combined,
                    process_group,
                    world_size,
                    _BACKWARD,
                )
                sum_dy, sum_dy_xmu = torch.split(combined, num_channels)

                # backward pass for gradient calculation
                if weight is not None and weight.dtype != mean.dtype:
                    weight = weight.to(mean.dtype)
                with _bn_span("bn.backward_elemt", saved_input, _BACKWARD):
                    grad_input = ops.batch_norm_backward_elemt(
                        grad_output,
                        saved_input,
                        mean,
                        invstd,
                        weight,
                        sum_dy,
                        sum_dy_xmu,
                        count_tensor,
                    )
            # grad_weight / grad_bias stay local: DDP all-reduces parameter grads.
            if weight is None or not self.needs_input_grad[1]:
                grad_weight = None

            if weight is None or not self.needs_input_grad[2]:
                grad_bias = None
        else:
            # An empty input still joins the all_reduce to unblock its peers;
            # None grads mean zeros to the autograd engine.
            num_channels = saved_input.shape[1]
            if self.needs_input_grad[0]:
                combined = torch.zeros(
                    2 * num_channels, dtype=saved_input.dtype, device=saved_input.device
                )
                _collective(
                    "all_reduce",
                    lambda: dist.all_reduce(
                        combined, dist.ReduceOp.SUM, process_group, async_op=False
                    ),
                    combined,
                    process_group,
                    world_size,
                    _BACKWARD,
                )

        return grad_input, grad_weight, grad_bias, None, None, None, None, None, None
