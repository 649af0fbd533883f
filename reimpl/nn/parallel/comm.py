"""Moving tensors between devices, as in ``torch/nn/parallel/comm.py``.

Same functions and messages as upstream: ``broadcast``, ``broadcast_coalesced``,
``reduce_add``, ``reduce_add_coalesced``, ``scatter`` and ``gather``. On real
devices (integer ids) each one calls the same ``torch._C`` kernel upstream
calls. On simulated devices (``"sim:k"``, see ``reimpl/devices.py``) each one
is written out in Python: a move is a copy into the target's memory, tagged.

Left out: the ``out=`` variants on simulated devices, NCCL (upstream uses it
in ``reduce_add`` when available; here it is the plain sum), and coalescing on
simulated devices (upstream flattens small tensors into 10 MiB buffers to save
CUDA launches; a simulated move has nothing to save, so it goes tensor by
tensor). ``broadcast_coalesced`` records a ``dp.broadcast`` span and
``reduce_add_coalesced`` (DataParallel's backward) a ``dp.reduce_add`` span.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torch._utils import (
    _flatten_dense_tensors,
    _handle_complex,
    _reorder_tensors_as,
    _take_tensors,
    _unflatten_dense_tensors,
)

from ... import _trace
from ..._trace import mirrors
from ...devices import as_plain, get_device_index, is_sim, retag, sim_device_of, to_device

__all__ = [
    "broadcast",
    "broadcast_coalesced",
    "gather",
    "reduce_add",
    "reduce_add_coalesced",
    "scatter",
]


def _simulated(devices: Sequence[Any]) -> bool:
    """Whether ``devices`` names simulated devices (all of them, or raise)."""
    sim = [is_sim(d) for d in devices]
    if any(sim) and not all(sim):
        raise ValueError(f"cannot mix simulated and real devices: {list(devices)}")
    return bool(sim) and sim[0]


@mirrors("torch.nn.parallel.comm.broadcast")
def broadcast(tensor: Tensor, devices: Sequence[Any] | None = None, *, out: Any = None) -> Any:
    """Copies ``tensor`` to each of ``devices`` (or into ``out``)."""
    tensor = _handle_complex(tensor)
    if not ((devices is None) ^ (out is None)):
        raise RuntimeError(
            f"Exactly one of 'devices' and 'out' must be specified, but got devices={devices} "
            f"and out={out}"
        )
    if devices is not None:
        devices = [get_device_index(d) for d in devices]
        if _simulated(devices):
            return tuple(to_device(tensor, d) for d in devices)
        return torch._C._broadcast(tensor, devices)
    else:
        return torch._C._broadcast_out(tensor, out)


@mirrors("torch.nn.parallel.comm.broadcast_coalesced")
def broadcast_coalesced(
    tensors: Sequence[Tensor], devices: Sequence[Any], buffer_size: int = 10485760
) -> list[list[Tensor]]:
    """Copies every tensor to every device: one list per device.

    As upstream, the list for the tensors' own device holds the tensors
    themselves, so replica 0 shares parameters and buffers with the module.
    """
    devices = [get_device_index(d) for d in devices]
    tensors = [_handle_complex(t) for t in tensors]
    with _trace.span("dp.broadcast", "broadcast_coalesced") as span:
        if _trace.sink is not None:  # recording: what moved where
            span.set(
                devices=[str(d) for d in devices],
                tensors=len(tensors),
                bytes=sum(t.numel() * t.element_size() for t in tensors),
            )
        if _simulated(devices):
            return [[to_device(t, d) for t in tensors] for d in devices]
        return torch._C._broadcast_coalesced(tensors, devices, buffer_size)


@mirrors("torch.nn.parallel.comm.reduce_add")
def reduce_add(inputs: Sequence[Tensor], destination: Any = None) -> Tensor:
    """Sums tensors from several devices onto ``destination``."""
    destination = get_device_index(destination, optional=True)
    input_size = inputs[0].size()
    root_index = None  # index of input tensor that already is on the correct device
    simulated = is_sim(destination)
    for i, inp in enumerate(inputs):
        if simulated:
            if sim_device_of(inp) == destination:
                root_index = i
        else:
            if inp.device.type == "cpu":
                raise AssertionError(
                    f"reduce_add expects all inputs to be on GPUs, but input {i} is on CPU"
                )
            if inp.get_device() == destination:
                root_index = i
        if inp.size() != input_size:
            got = "x".join(str(x) for x in inp.size())
            expected = "x".join(str(x) for x in input_size)
            raise ValueError(f"input {i} has invalid size: got {got}, but expected {expected}")
    if root_index is None:
        raise RuntimeError(
            "reduce_add expects destination to be on the same GPU with one of the tensors"
        )

    if len(inputs) == 1:
        return inputs[0]

    if simulated:
        # The sum of the plain memories, put on the destination's device.
        result = as_plain(inputs[root_index]).clone()
        for i, other in enumerate(inputs):
            if i != root_index:
                result.add_(as_plain(other))
        return retag(result, destination)
    if torch.cuda.nccl.is_available(inputs):
        result = torch.empty_like(inputs[root_index])
        torch.cuda.nccl.reduce(inputs, output=result, root=root_index)
    else:
        destination_device = torch.device(inputs[root_index].device.type, destination)
        nonroot = [t for i, t in enumerate(inputs) if i != root_index]
        # make a new tensor w/o clone
        result = inputs[root_index] + nonroot[0].to(device=destination_device, non_blocking=True)
        for other in nonroot[1:]:
            result.add_(other.to(device=destination_device, non_blocking=True))
    return result


@mirrors("torch.nn.parallel.comm.reduce_add_coalesced")
def reduce_add_coalesced(
    inputs: Sequence[Sequence[Tensor]], destination: Any = None, buffer_size: int = 10485760
) -> tuple[Tensor, ...]:
    """Sums each group of tensors (one list per device) onto ``destination``.

    DataParallel's backward comes here (``Broadcast.backward`` ->
    ``ReduceAddCoalesced``): the replicas' gradients of one broadcast group
    summed onto the module's device, recorded as one ``dp.reduce_add`` span.
    """
    with _trace.span("dp.reduce_add", "reduce_add_coalesced") as span:
        if _trace.sink is not None:  # recording: what came from where
            span.set(**_reduction(inputs, destination))
        if is_sim(destination):
            return tuple(reduce_add(group, destination) for group in zip(*inputs))
        dense_tensors: list[list] = [[] for _ in inputs]  # shape (num_gpus, num_tensors)
        output = []
        ref_order = []
        # process sparse ones first since they may have different sizes on different gpus
        for tensor_at_gpus in zip(*inputs):
            if all(t.is_sparse for t in tensor_at_gpus):
                result = reduce_add(tensor_at_gpus, destination)  # this will be sparse too
                output.append(result)
                ref_order.append(tensor_at_gpus[0])
            else:
                for coll, t in zip(dense_tensors, tensor_at_gpus):
                    coll.append(t.to_dense() if t.is_sparse else t)
                ref_order.append(dense_tensors[0][-1])
        itrs = [_take_tensors(tensors, buffer_size) for tensors in dense_tensors]
        # now the dense ones, which have consistent sizes
        for chunks in zip(*itrs):
            flat_tensors = [_flatten_dense_tensors(chunk) for chunk in chunks]  # (num_gpus,)
            flat_result = reduce_add(flat_tensors, destination)
            for t in _unflatten_dense_tensors(flat_result, chunks[0]):
                # The unflattened tensors do not share storage, and we don't expose
                # base flat tensor anyways, so give them different version counters.
                output.append(t.data)
        return tuple(_reorder_tensors_as(output, ref_order))


def _reduction(inputs: Sequence[Sequence[Tensor]], destination: Any) -> dict:
    """The attributes of a ``dp.reduce_add`` span: source devices and bytes from each."""
    simulated = is_sim(destination)
    sizes = {}
    for group in inputs:
        if group:
            device = sim_device_of(group[0]) if simulated else str(group[0].device)
            sizes[device] = sum(t.numel() * t.element_size() for t in group)
    return {
        "devices": list(sizes),
        "destination": str(destination),
        "tensors": len(inputs[0]) if inputs else 0,
        "sizes": sizes,
        "bytes": sum(sizes.values()),
    }


@mirrors("torch.nn.parallel.comm.scatter")
def scatter(
    tensor: Tensor,
    devices: Sequence[Any] | None = None,
    chunk_sizes: Sequence[int] | None = None,
    dim: int = 0,
    streams: Any = None,
    *,
    out: Any = None,
) -> tuple[Tensor, ...]:
    """Splits ``tensor`` along ``dim`` into one chunk per device (fewer if it is short)."""
    tensor = _handle_complex(tensor)
    if out is None:
        devices = [get_device_index(d) for d in devices]  # type: ignore[union-attr]
        if _simulated(devices):
            # torch._C._scatter: equal chunks unless sizes are given; a chunk on
            # the tensor's own device is a view, the others are copies.
            if chunk_sizes is None:
                chunks = tensor.chunk(len(devices), dim)
            else:
                chunks = tensor.split(list(chunk_sizes), dim)
            return tuple(to_device(c, d) for c, d in zip(chunks, devices))
        return tuple(torch._C._scatter(tensor, devices, chunk_sizes, dim, streams))
    else:
        if devices is not None:
            raise RuntimeError(
                f"'devices' must not be specified when 'out' is specified, but got "
                f"devices={devices}"
            )
        if chunk_sizes is not None:
            raise RuntimeError(
                f"'chunk_sizes' must not be specified when 'out' is specified, but got "
                f"chunk_sizes={chunk_sizes}"
            )
        return tuple(torch._C._scatter_out(tensor, out, dim, streams))


@mirrors("torch.nn.parallel.comm.gather")
def gather(
    tensors: Sequence[Tensor], dim: int = 0, destination: Any = None, *, out: Any = None
) -> Tensor:
    """Concatenates tensors from several devices along ``dim`` onto ``destination``."""
    tensors = [_handle_complex(t) for t in tensors]
    if out is None:
        if destination == -1:
            warnings.warn(
                "Using -1 to represent CPU tensor is deprecated. Please use a "
                'device object or string instead, e.g., "cpu".',
                FutureWarning,
                stacklevel=2,
            )
        destination = get_device_index(destination, allow_cpu=True, optional=True)
        if is_sim(destination):
            return retag(torch.cat([as_plain(t) for t in tensors], dim), destination)
        return torch._C._gather(tensors, dim, destination)
    else:
        if destination is not None:
            raise RuntimeError(
                f"'destination' must not be specified when 'out' is specified, but got "
                f"destination={destination}"
            )
        return torch._C._gather_out(tensors, out, dim)
