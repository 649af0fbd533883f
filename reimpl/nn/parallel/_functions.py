"""The autograd Functions of DataParallel, as in ``torch/nn/parallel/_functions.py``.

``Broadcast`` (parameters to every replica; backward: ``ReduceAddCoalesced``
sums the replicas' gradients back), ``Scatter`` (inputs split over devices;
backward: ``Gather``) and ``Gather`` (outputs concatenated; backward:
``Scatter``). Each forward is upstream's, calling ``reimpl.nn.parallel.comm``.

On simulated devices (``reimpl/devices.py``) two things differ, both marked:
CPU tensors are allowed (the CPU is sim:0), and a backward first puts each
incoming gradient back on the device of the output it belongs to, because
autograd computes gradients below ``__torch_function__`` and so untagged.

Left out: the CUDA copy streams of ``Scatter`` (upstream copies CPU inputs on
a background stream; here they are copied on the current one).
"""

from __future__ import annotations

import warnings
from itertools import chain
from typing import Any

import torch
from torch import Tensor
from torch.autograd import Function

from ..._trace import mirrors
from ...devices import SimTensor, get_device_index, is_sim, retag, sim_device_of
from . import comm


def _get_device(t: Tensor, simulated: bool) -> int | str:
    """``Tensor.get_device()``, or the simulated device's name when simulating."""
    return sim_device_of(t) if simulated else t.get_device()


def _retag_all(tensors: tuple, devices: list) -> tuple:
    """Gradients back on the devices of the outputs they belong to (simulated only)."""
    return tuple(retag(t, d) if isinstance(t, Tensor) else t for t, d in zip(tensors, devices))


@mirrors("torch.nn.parallel._functions.Broadcast")
class Broadcast(Function):
    """Copies ``inputs`` to every target device; backward sums their gradients."""

    @staticmethod
    def forward(ctx: Any, target_gpus: list, *inputs: Tensor) -> tuple[Tensor, ...]:
        target_gpus = [get_device_index(x, True) for x in target_gpus]
        simulated = bool(target_gpus) and is_sim(target_gpus[0])
        if not simulated and not all(i.device.type != "cpu" for i in inputs):
            raise AssertionError("Broadcast function not implemented for CPU tensors")
        ctx.target_gpus = target_gpus
        if len(inputs) == 0:
            return ()
        ctx.num_inputs = len(inputs)
        ctx.input_device = _get_device(inputs[0], simulated)

        ctx.complex_mask = [inp.is_complex() for inp in inputs]

        outputs = comm.broadcast_coalesced(inputs, ctx.target_gpus)

        for device_outputs in outputs:
            for i, is_complex in enumerate(ctx.complex_mask):
                if is_complex:
                    device_outputs[i] = torch.view_as_complex(device_outputs[i])

        non_differentiables = []
        for idx, input_requires_grad in enumerate(ctx.needs_input_grad[1:]):
            if not input_requires_grad:
                non_differentiables.extend(output[idx] for output in outputs)
        ctx.mark_non_differentiable(*non_differentiables)
        return tuple(chain.from_iterable(outputs))

    @staticmethod
    def backward(ctx: Any, *grad_outputs: Tensor) -> tuple:
        if is_sim(ctx.input_device):  # torchscope: one gradient per output, per device
            devices = [d for d in ctx.target_gpus for _ in range(ctx.num_inputs)]
            grad_outputs = _retag_all(grad_outputs, devices)
        grads = ReduceAddCoalesced.apply(ctx.input_device, ctx.num_inputs, *grad_outputs)

        return (None, *grads)


@mirrors("torch.nn.parallel._functions.ReduceAddCoalesced")
class ReduceAddCoalesced(Function):
    """Sums the gradients of each broadcast tensor onto its source device."""

    @staticmethod
    def forward(ctx: Any, destination: Any, num_inputs: int, *grads: Tensor) -> tuple:
        simulated = is_sim(destination)
        ctx.target_gpus = [
            _get_device(grads[i], simulated) for i in range(0, len(grads), num_inputs)
        ]

        complex_mask = [grads[i].is_complex() for i in range(num_inputs)]
        ctx.complex_mask = complex_mask

        grads_converted = tuple(torch.view_as_real(g) if g.is_complex() else g for g in grads)

        grads_ = [
            grads_converted[i : i + num_inputs] for i in range(0, len(grads_converted), num_inputs)
        ]
        results = comm.reduce_add_coalesced(grads_, destination)

        results = tuple(
            torch.view_as_complex(r) if is_complex else r
            for r, is_complex in zip(results, complex_mask)
        )

        return results

    @staticmethod
    def backward(ctx: Any, *grad_outputs: Tensor) -> tuple:
        return (None, None, *Broadcast.apply(ctx.target_gpus, *grad_outputs))


@mirrors("torch.nn.parallel._functions.Gather")
class Gather(Function):
    """Concatenates tensors from several devices on ``target_device``."""

    @staticmethod
    def forward(ctx: Any, target_device: Any, dim: int, *inputs: Tensor) -> Tensor:
        simulated = is_sim(target_device) or any(isinstance(i, SimTensor) for i in inputs)
        if not simulated and not all(i.device.type != "cpu" for i in inputs):
            raise AssertionError("Gather function not implemented for CPU tensors")
        if simulated and target_device in ("cpu", -1):
            target_device = "sim:0"  # torchscope: the CPU is sim:0
        if target_device == "cpu":
            ctx.target_device = "cpu"
        else:
            target_device = get_device_index(target_device, True)
            ctx.target_device = target_device
        ctx.dim = dim
        ctx.input_gpus = tuple(_get_device(i, simulated) for i in inputs)
        if all(t.dim() == 0 for t in inputs) and dim == 0:
            inputs = tuple(t.view(1) for t in inputs)
            warnings.warn(
                "Was asked to gather along dimension 0, but all "
                "input tensors were scalars; will instead unsqueeze "
                "and return a vector.",
                stacklevel=2,
            )
            ctx.unsqueezed_scalar = True
        else:
            ctx.unsqueezed_scalar = False
        ctx.input_sizes = tuple(i.size(ctx.dim) for i in inputs)

        is_complex = len(inputs) > 0 and inputs[0].is_complex()

        output = comm.gather(inputs, ctx.dim, ctx.target_device)

        if is_complex:
            output = torch.view_as_complex(output)

        return output

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> tuple:
        if is_sim(ctx.target_device):  # torchscope: the gradient of a gathered output
            grad_output = retag(grad_output, ctx.target_device)
        scattered_grads = Scatter.apply(ctx.input_gpus, ctx.input_sizes, ctx.dim, grad_output)
        if ctx.unsqueezed_scalar:
            scattered_grads = tuple(g[0] for g in scattered_grads)
        return (None, None, *scattered_grads)


@mirrors("torch.nn.parallel._functions.Scatter")
class Scatter(Function):
    """Splits ``input`` along ``dim`` over ``target_gpus``; backward gathers."""

    @staticmethod
    def forward(
        ctx: Any, target_gpus: list, chunk_sizes: Any, dim: int, input: Tensor
    ) -> tuple[Tensor, ...]:
        target_gpus = [get_device_index(x, True) for x in target_gpus]
        ctx.dim = dim
        if target_gpus and is_sim(target_gpus[0]):  # torchscope: the CPU is sim:0
            ctx.input_device = sim_device_of(input)
        else:
            ctx.input_device = input.get_device() if input.device.type != "cpu" else -1
        ctx.target_gpus = target_gpus
        streams = None  # left out: upstream's background copy streams

        is_complex = input.is_complex()

        outputs = comm.scatter(input, target_gpus, chunk_sizes, ctx.dim, streams)

        if is_complex:
            outputs = tuple(torch.view_as_complex(o) for o in outputs)
        return outputs

    @staticmethod
    def backward(ctx: Any, *grad_output: Tensor) -> tuple:
        if is_sim(ctx.input_device):  # torchscope: each chunk's gradient on its device
            grad_output = _retag_all(grad_output, ctx.target_gpus)
        return None, None, None, Gather.apply(ctx.input_device, ctx.dim, *grad_output)
