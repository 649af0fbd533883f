"""Pinning batches, mirroring ``torch/utils/data/_utils/pin_memory.py``.

With ``pin_memory=True`` on a machine with an accelerator, a thread of the
main process takes each batch off the workers' result queue, copies its
tensors into page-locked memory (so the host-to-device copy can be
asynchronous) and hands it on. Each copy is a ``data.pin`` span on that
thread's lane. Without an accelerator the DataLoader warns and never starts
the thread, exactly like torch.

Left out: nothing of behaviour.
"""

from __future__ import annotations

import collections
import copy
import queue
from typing import Any

import torch
from torch._utils import ExceptionWrapper

from reimpl import _trace
from reimpl._trace import mirrors

from . import MP_STATUS_CHECK_INTERVAL


@mirrors("torch.utils.data._utils.pin_memory._pin_memory_loop")
def _pin_memory_loop(
    in_queue: Any, out_queue: Any, device_id: int, done_event: Any, device: str | None
) -> None:
    """Moves batches from the result queue to the data queue, pinning on the way."""
    torch.set_num_threads(1)  # thread-local: the copies must not take every core
    torch.multiprocessing._set_thread_name("pt_data_pin")
    torch.accelerator.set_device_index(device_id)
    _trace.set_thread_info("pin memory", f"{device}:{device_id}")

    def do_one_step() -> None:
        try:
            r = in_queue.get(timeout=MP_STATUS_CHECK_INTERVAL)
        except queue.Empty:
            return
        idx, data = r
        if not done_event.is_set() and not isinstance(data, ExceptionWrapper):
            try:
                task = idx if isinstance(idx, int) else None
                with _trace.span("data.pin", "pin_memory", func=_LOOP_FUNC, task=task):
                    data = pin_memory(data, device)
            except Exception:
                data = ExceptionWrapper(where=f"in pin memory thread for device {device_id}")
            r = (idx, data)
        while not done_event.is_set():
            try:
                out_queue.put(r, timeout=MP_STATUS_CHECK_INTERVAL)
                break
            except queue.Full:
                continue

    while not done_event.is_set():
        do_one_step()  # a function, so nothing of one batch outlives its step


_LOOP_FUNC = f"{__name__}._pin_memory_loop"


@mirrors("torch.utils.data._utils.pin_memory.pin_memory")
def pin_memory(data: Any, device: str | None = None) -> Any:
    """Pins every tensor inside ``data``, keeping the container types."""
    if isinstance(data, torch.Tensor):
        return data.pin_memory()
    if hasattr(data, "pin_memory"):  # a custom batch type that knows how
        return data.pin_memory()
    if isinstance(data, (str, bytes)):
        return data
    if isinstance(data, collections.abc.Mapping):
        try:
            if isinstance(data, collections.abc.MutableMapping):
                clone = copy.copy(data)
                clone.update({k: pin_memory(sample, device) for k, sample in data.items()})
                return clone
            return type(data)({k: pin_memory(sample, device) for k, sample in data.items()})  # type: ignore[call-arg]
        except TypeError:
            return {k: pin_memory(sample, device) for k, sample in data.items()}
    if isinstance(data, tuple):
        if hasattr(data, "_fields"):  # namedtuple
            return type(data)(*(pin_memory(sample, device) for sample in data))
        return type(data)(pin_memory(sample, device) for sample in data)
    if isinstance(data, collections.abc.Sequence):
        try:
            if isinstance(data, collections.abc.MutableSequence):
                clone = copy.copy(data)
                for i, item in enumerate(data):
                    clone[i] = pin_memory(item, device)
                return clone
            return type(data)([pin_memory(sample, device) for sample in data])  # type: ignore[call-arg]
        except TypeError:
            return [pin_memory(sample, device) for sample in data]
    return data
