"""DataParallel and data_parallel, as in ``torch/nn/parallel/data_parallel.py``.

``DataParallel.forward`` reads as upstream's: check the module's parameters
are on ``device_ids[0]``, scatter the inputs, replicate the module, run the
replicas in parallel, gather the outputs. Device ids are torch's (integers
and ``torch.device`` for CUDA, with torch's fallback to a plain call when
there is no accelerator) or simulated ``"sim:k"`` names, which work on any
machine (``reimpl/devices.py``; ``sim:0`` is the CPU, so a model as built
already lives on it).

Left out: ``_check_balance`` (the GPU memory/core imbalance warning) on
simulated devices, the ``record_function`` profiler label, and moving the
module to a simulated ``device_ids[0]`` other than sim:0 (see devices.py).
"""

from __future__ import annotations

import operator
import warnings
from collections.abc import Sequence
from itertools import chain
from typing import Any, Generic, TypeVar

import torch
from torch._utils import (
    _get_all_device_indices,
    _get_available_device_type,
    _get_devices_properties,
)

from ..._trace import mirrors
from ...devices import get_device_index, is_sim, sim_device_of
from ..modules.module import Module
from .parallel_apply import parallel_apply
from .replicate import replicate
from .scatter_gather import gather, scatter_kwargs

__all__ = ["DataParallel", "data_parallel"]


@mirrors("torch.nn.parallel.data_parallel._check_balance")
def _check_balance(device_ids: Sequence[int | torch.device]) -> None:
    imbalance_warn = """
    There is an imbalance between your GPUs. You may want to exclude GPU {} which
    has less than 75% of the memory or cores of GPU {}. You can do so by setting
    the device_ids argument to DataParallel, or by setting the CUDA_VISIBLE_DEVICES
    environment variable."""
    device_ids = [torch._utils._get_device_index(x, True) for x in device_ids]
    dev_props = _get_devices_properties(device_ids)

    def warn_imbalance(get_prop: Any) -> bool:
        values = [get_prop(props) for props in dev_props]
        min_pos, min_val = min(enumerate(values), key=operator.itemgetter(1))
        max_pos, max_val = max(enumerate(values), key=operator.itemgetter(1))
        if min_val / max_val < 0.75:
            warnings.warn(
                imbalance_warn.format(device_ids[min_pos], device_ids[max_pos]), stacklevel=2
            )
            return True
        return False

    if warn_imbalance(lambda props: props.total_memory):
        return
    if warn_imbalance(lambda props: props.multi_processor_count):
        return


def _device_type(device_ids: Sequence[Any] | None) -> str | None:
    """``"sim"`` for simulated ids (all or none), else the machine's accelerator type."""
    if device_ids is not None and any(is_sim(d) for d in device_ids):
        if not all(is_sim(d) for d in device_ids):
            raise ValueError(f"cannot mix simulated and real devices: {list(device_ids)}")
        return "sim"
    return _get_available_device_type()


def _src_device(device_type: str, device_id: Any) -> Any:
    """Upstream's ``src_device_obj``; a simulated device is its name."""
    return device_id if device_type == "sim" else torch.device(device_type, device_id)


def _device(t: torch.Tensor, device_type: str) -> Any:
    """Where ``t`` is, in the terms ``_src_device`` uses."""
    return sim_device_of(t) if device_type == "sim" and t.device.type == "cpu" else t.device


def _check_module_device(module: Module, src_device_obj: Any, device_type: str) -> None:
    for t in chain(module.parameters(), module.buffers()):
        if _device(t, device_type) != src_device_obj:
            raise RuntimeError(
                "module must have its parameters and buffers "
                f"on device {src_device_obj} (device_ids[0]) but found one of "
                f"them on device: {_device(t, device_type)}"
            )


T = TypeVar("T", bound=Module)


@mirrors("torch.nn.parallel.data_parallel.DataParallel")
class DataParallel(Module, Generic[T]):
    r"""Implements data parallelism at the module level.

    Splits the input across ``device_ids`` in the batch dimension ``dim``,
    replicates the module on each device in every forward, runs the replicas
    in parallel threads and gathers their outputs on ``output_device``; in
    backward, the replicas' gradients are summed into the original module.
    Replicas are shallow: hooks and other plain attributes are shared by all
    of them (DESIGN.md, the DeOldify case). The replica on ``device_ids[0]``
    shares parameters and buffers with the module, so in-place updates there
    (BatchNorm's running stats) are kept.

    Example::

        >>> net = DataParallel(model, device_ids=["sim:0", "sim:1"])
        >>> output = net(input_var)  # a plain CPU tensor, gathered on sim:0
    """

    @mirrors("torch.nn.parallel.data_parallel.DataParallel.__init__")
    def __init__(
        self,
        module: T,
        device_ids: Sequence[int | str | torch.device] | None = None,
        output_device: int | str | torch.device | None = None,
        dim: int = 0,
    ) -> None:
        super().__init__()
        torch._C._log_api_usage_once("torch.nn.parallel.DataParallel")
        device_type = _device_type(device_ids)
        if device_type is None or device_type == "mps":
            self.module = module
            self.device_ids = []
            return

        if device_ids is None:
            device_ids = _get_all_device_indices()

        if device_ids is None:
            raise RuntimeError("no available devices were found")

        if output_device is None:
            output_device = device_ids[0]

        self.dim = dim
        self.module = module
        self.device_ids = [get_device_index(x, True) for x in device_ids]
        self.output_device = get_device_index(output_device, True)
        self.src_device_obj = _src_device(device_type, self.device_ids[0])
        self._device_type = device_type

        if device_type == "cuda":
            _check_balance(self.device_ids)

        if len(self.device_ids) == 1 and device_type != "sim":
            self.module.to(self.src_device_obj)

    @mirrors("torch.nn.parallel.data_parallel.DataParallel.forward")
    def forward(self, *inputs: Any, **kwargs: Any) -> Any:
        """scatter -> replicate -> parallel_apply -> gather, one line each."""
        if not self.device_ids:
            return self.module(*inputs, **kwargs)

        _check_module_device(self.module, self.src_device_obj, self._device_type)

        inputs, module_kwargs = self.scatter(inputs, kwargs, self.device_ids)
        # for forward function without any inputs, empty list and dict will be created
        # so the module can be executed on one device which is the first one in device_ids
        if not inputs and not module_kwargs:
            inputs = ((),)
            module_kwargs = ({},)

        if len(self.device_ids) == 1:
            return self.module(*inputs[0], **module_kwargs[0])
        replicas = self.replicate(self.module, self.device_ids[: len(inputs)])
        outputs = self.parallel_apply(replicas, inputs, module_kwargs)
        return self.gather(outputs, self.output_device)

    @mirrors("torch.nn.parallel.data_parallel.DataParallel.replicate")
    def replicate(self, module: T, device_ids: Sequence[Any]) -> list[T]:
        """Replicas share the graph with ``module`` unless grad is off (then detached)."""
        return replicate(module, device_ids, not torch.is_grad_enabled())

    @mirrors("torch.nn.parallel.data_parallel.DataParallel.scatter")
    def scatter(
        self, inputs: tuple[Any, ...], kwargs: dict[str, Any] | None, device_ids: Sequence[Any]
    ) -> Any:
        """Splits positional and keyword inputs along ``self.dim``."""
        return scatter_kwargs(inputs, kwargs, device_ids, dim=self.dim)

    @mirrors("torch.nn.parallel.data_parallel.DataParallel.parallel_apply")
    def parallel_apply(self, replicas: Sequence[T], inputs: Sequence[Any], kwargs: Any) -> list:
        """One thread per replica, each on its own device."""
        return parallel_apply(replicas, inputs, kwargs, self.device_ids[: len(replicas)])

    @mirrors("torch.nn.parallel.data_parallel.DataParallel.gather")
    def gather(self, outputs: Any, output_device: Any) -> Any:
        """Joins the replicas' outputs on ``output_device``."""
        return gather(outputs, output_device, dim=self.dim)


@mirrors("torch.nn.parallel.data_parallel.data_parallel")
def data_parallel(
    module: Module,
    inputs: Any,
    device_ids: Sequence[int | str | torch.device] | None = None,
    output_device: int | str | torch.device | None = None,
    dim: int = 0,
    module_kwargs: Any | None = None,
) -> Any:
    r"""Evaluate module(input) in parallel across the devices given in device_ids.

    This is the functional version of the DataParallel module.
    """
    if not isinstance(inputs, tuple):
        inputs = (inputs,) if inputs is not None else ()

    device_type = _device_type(device_ids)

    if device_type is None:
        raise RuntimeError("device type could not be determined")

    if device_ids is None:
        device_ids = _get_all_device_indices()

    if device_ids is None:
        raise RuntimeError("no available devices were found")

    if output_device is None:
        output_device = device_ids[0]

    device_ids = [get_device_index(x, True) for x in device_ids]
    output_device = get_device_index(output_device, True)
    src_device_obj = _src_device(device_type, device_ids[0])

    _check_module_device(module, src_device_obj, device_type)

    inputs, module_kwargs = scatter_kwargs(inputs, module_kwargs, device_ids, dim)
    # for module without any inputs, empty list and dict will be created
    # so the module can be executed on one device which is the first one in device_ids
    if not inputs and not module_kwargs:
        inputs = ((),)
        module_kwargs = ({},)

    if module_kwargs is None:
        raise AssertionError("module_kwargs should not be None after scatter_kwargs")

    if len(device_ids) == 1:
        return module(*inputs[0], **module_kwargs[0])
    used_device_ids = device_ids[: len(inputs)]
    replicas = replicate(module, used_device_ids)
    outputs = parallel_apply(replicas, inputs, module_kwargs, used_device_ids)
    return gather(outputs, output_device, dim)
