"""Copies of a module for every device, as in ``torch/nn/parallel/replicate.py``.

``replicate`` broadcasts the parameters (through the ``Broadcast`` autograd
Function, so gradients flow back to the originals) and the buffers, then makes
*shallow* replicas of every submodule with ``Module._replicate_for_data_parallel``:
a replica's ``__dict__`` is a copy of the original's, so plain attributes,
hook dicts and the hook objects in them are *shared* by all replicas. That
sharing is the DeOldify bug (DESIGN.md). Replica j's parameters are set as
plain attributes, not Parameters, because they are no longer leaves.

torchscope records a ``dp.replicate`` span around it (``dp.broadcast`` spans
nest inside). Left out: TorchScript modules (``_replicatable_module`` returns
True unless a ScriptModule is among the children, which reimpl never has).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, TypeVar, cast

import torch

from ... import _trace
from ..._trace import mirrors
from ...devices import get_device_index
from ..modules.module import Module
from . import comm

__all__ = ["replicate"]

T = TypeVar("T", bound=Module)


@mirrors("torch.nn.parallel.replicate._replicatable_module")
def _replicatable_module(module: Module, memo: set[Module] | None = None) -> bool:
    """Upstream refuses python modules under a ScriptModule; reimpl has none."""
    return not any(isinstance(m, torch.jit.ScriptModule) for m in module.modules())


@mirrors("torch.nn.parallel.replicate._broadcast_coalesced_reshape")
def _broadcast_coalesced_reshape(
    tensors: Sequence[torch.Tensor],
    devices: Sequence[Any],
    detach: bool = False,
) -> list[list[torch.Tensor]]:
    from ._functions import Broadcast

    if len(tensors) == 0:
        return []

    if detach:
        complex_mask = [t.is_complex() for t in tensors]

        outputs = comm.broadcast_coalesced(tensors, devices)

        for device_outputs in outputs:
            for i, is_complex in enumerate(complex_mask):
                if is_complex:
                    device_outputs[i] = torch.view_as_complex(device_outputs[i])

        return outputs
    else:
        tensor_copies = Broadcast.apply(devices, *tensors)
        return [
            list(tensor_copies[i : i + len(tensors)])
            for i in range(0, len(tensor_copies), len(tensors))
        ]


@mirrors("torch.nn.parallel.replicate.replicate")
def replicate(network: T, devices: Sequence[Any], detach: bool = False) -> list[T]:
    """One shallow copy of ``network`` per device, with parameters broadcast to it."""
    if not _replicatable_module(network):
        raise RuntimeError(
            "Cannot replicate network where python modules are children of ScriptModule"
        )

    if not devices:
        return []

    devices = [get_device_index(x, True) for x in devices]
    with _trace.span("dp.replicate", type(network).__name__, devices=[str(d) for d in devices]):
        return _replicate(network, devices, detach)


def _replicate(network: T, devices: list, detach: bool) -> list[T]:
    """The body of upstream's ``replicate`` after its checks."""
    num_replicas = len(devices)

    params = list(network.parameters())
    param_indices = {param: idx for idx, param in enumerate(params)}
    param_copies = _broadcast_coalesced_reshape(params, devices, detach)

    buffers = list(network.buffers())
    buffers_rg: list[torch.Tensor] = []
    buffers_not_rg: list[torch.Tensor] = []
    for buf in buffers:
        if buf.requires_grad and not detach:
            buffers_rg.append(buf)
        else:
            buffers_not_rg.append(buf)

    buffer_indices_rg = {buf: idx for idx, buf in enumerate(buffers_rg)}
    buffer_indices_not_rg = {buf: idx for idx, buf in enumerate(buffers_not_rg)}

    buffer_copies_rg = _broadcast_coalesced_reshape(buffers_rg, devices, detach=detach)
    buffer_copies_not_rg = _broadcast_coalesced_reshape(buffers_not_rg, devices, detach=True)

    modules = list(network.modules())
    module_copies: list[list[Module]] = [[] for _ in devices]
    module_indices: dict[Module, int] = {}

    for i, module in enumerate(modules):
        module_indices[module] = i
        for j in range(num_replicas):
            replica = module._replicate_for_data_parallel()
            # This is a temporary fix for DDP. DDP needs to access the
            # replicated model parameters. It used to do so through
            # `module.parameters()`. The fix added in #33907 for DP stops the
            # `parameters()` API from exposing the replicated parameters.
            # Hence, we add a `_former_parameters` dict here to support DDP.
            replica._former_parameters = OrderedDict()

            module_copies[j].append(replica)

    for i, module in enumerate(modules):
        for key, child in module._modules.items():
            if child is None:
                for j in range(num_replicas):
                    replica = module_copies[j][i]
                    replica._modules[key] = None
            else:
                module_idx = module_indices[child]
                for j in range(num_replicas):
                    replica = module_copies[j][i]
                    setattr(replica, key, module_copies[j][module_idx])
        for key, param in module._parameters.items():
            if param is None:
                for j in range(num_replicas):
                    replica = module_copies[j][i]
                    replica._parameters[key] = None
            else:
                param_idx = param_indices[param]
                for j in range(num_replicas):
                    replica = module_copies[j][i]
                    param_copy = param_copies[j][param_idx]
                    # parameters in replicas are no longer leaves,
                    # so setattr them as non-parameter attributes
                    setattr(replica, key, param_copy)
                    # expose the parameter for DDP
                    replica._former_parameters[key] = param_copy
        for key, buf in module._buffers.items():
            if buf is None:
                for j in range(num_replicas):
                    replica = module_copies[j][i]
                    replica._buffers[key] = None
            else:
                if buf.requires_grad and not detach:
                    buffer_copies = buffer_copies_rg
                    buffer_idx = buffer_indices_rg[buf]
                else:
                    buffer_copies = buffer_copies_not_rg
                    buffer_idx = buffer_indices_not_rg[buf]
                for j in range(num_replicas):
                    replica = module_copies[j][i]
                    setattr(replica, key, buffer_copies[j][buffer_idx])

    return [cast(T, module_copies[j][0]) for j in range(num_replicas)]
