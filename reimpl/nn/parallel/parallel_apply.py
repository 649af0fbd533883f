"""One thread per replica, as in ``torch/nn/parallel/parallel_apply.py``.

``parallel_apply`` runs replica i on ``inputs[i]`` in its own thread (inline
when there is one replica), with the caller's grad mode and autocast state,
and returns the outputs in order; an exception in a replica is caught there
and re-raised in the caller by ``ExceptionWrapper`` (``torch/_utils.py``) as
"Caught X in replica i on device D." followed by the original traceback.

torchscope: a ``dp.parallel_apply`` span, and in each thread a ``dp.replica``
span linked to it, the thread named ``replica i`` serving its device; under
:func:`reimpl.nn.parallel.lockstep` the threads take turns (``_lockstep.py``).
On simulated devices there is no device context or stream to enter.

``ExceptionWrapper`` and ``KeyErrorMessage`` (from ``torch/_utils.py``) live
here until reimpl has its own ``_utils``. Left out: the ``streams`` upstream
threads through (each replica uses its device's current stream, upstream's
default), and resolving a missing device from the accelerator: with no
``devices``, a replica's device is its first input tensor's.
"""

from __future__ import annotations

import sys
import threading
import traceback
from collections.abc import Sequence
from contextlib import ExitStack
from typing import Any, NamedTuple

import torch

from ... import _trace
from ..._trace import mirrors
from ...devices import get_device_index, is_sim, sim_device_of
from ..modules.module import Module
from ._lockstep import new_baton

__all__ = ["ExceptionWrapper", "get_a_var", "parallel_apply"]


@mirrors("torch._utils.KeyErrorMessage")
class KeyErrorMessage(str):
    r"""str subclass that returns itself in repr"""

    __slots__ = ()

    def __repr__(self) -> str:
        return self


@mirrors("torch._utils.ExceptionWrapper")
class ExceptionWrapper:
    r"""Wraps an exception plus traceback to communicate across threads"""

    def __init__(self, exc_info: Any = None, where: str = "in background") -> None:
        # It is important that we don't store exc_info: the traceback's frames
        # would keep the replica's tensors alive (a reference cycle).
        if exc_info is None:
            exc_info = sys.exc_info()
        self.exc_type = exc_info[0]
        self.exc_msg = "".join(traceback.format_exception(*exc_info))
        self.where = where

    def reraise(self) -> None:
        r"""Reraises the wrapped exception in the current thread"""
        # Format a message such as: "Caught ValueError in replica 2 on device
        # 2. Original Traceback:", followed by the traceback.
        msg = f"Caught {self.exc_type.__name__} {self.where}.\nOriginal {self.exc_msg}"
        if self.exc_type is KeyError:
            # KeyError calls repr() on its argument (usually a dict key). This
            # makes stack traces unreadable, so we work around it.
            msg = KeyErrorMessage(msg)
        elif getattr(self.exc_type, "message", None):
            # Some exceptions have first argument as non-str but explicitly
            # have message field
            raise self.exc_type(message=msg)
        try:
            exception = self.exc_type(msg)
        except Exception:
            # If the exception takes multiple arguments or otherwise can't
            # be constructed, don't try to instantiate since we don't know how to
            raise RuntimeError(msg) from None
        raise exception


@mirrors("torch.nn.parallel.parallel_apply.get_a_var")
def get_a_var(obj: Any) -> torch.Tensor | None:
    """The first tensor found in ``obj`` (tensors, lists, tuples, dicts)."""
    if isinstance(obj, torch.Tensor):
        return obj

    if isinstance(obj, (list, tuple)):
        for result in map(get_a_var, obj):
            if isinstance(result, torch.Tensor):
                return result
    if isinstance(obj, dict):
        for result in map(get_a_var, obj.items()):
            if isinstance(result, torch.Tensor):
                return result
    return None


@mirrors("torch.nn.parallel.parallel_apply.parallel_apply")
def parallel_apply(
    modules: Sequence[Module],
    inputs: Sequence[Any],
    kwargs_tup: Sequence[dict[str, Any]] | None = None,
    devices: Sequence[Any] | None = None,
) -> list[Any]:
    r"""Apply each `module` in :attr:`modules` in parallel on each of :attr:`devices`.

    Each element of :attr:`inputs` is either a single object, the only
    argument to its module, or a collection of positional arguments.
    """
    if len(modules) != len(inputs):
        raise AssertionError(
            f"The number of modules {len(modules)} is not equal to "
            f"the number of inputs {len(inputs)}"
        )
    if kwargs_tup is not None:
        if len(modules) != len(kwargs_tup):
            raise AssertionError(
                f"The number of modules {len(modules)} is not equal to "
                f"the number of kwargs_tup {len(kwargs_tup)}"
            )
    else:
        kwargs_tup = ({},) * len(modules)
    if devices is not None:
        if len(modules) != len(devices):
            raise AssertionError(
                f"The number of modules {len(modules)} is not equal to "
                f"the number of devices {len(devices)}"
            )
    else:
        devices = [None] * len(modules)
    devices = [None if x is None else get_device_index(x, True) for x in devices]
    simulated = any(is_sim(d) for d in devices)
    # torchscope: with no devices given, each replica's device is its input's
    # (simulated ones included); upstream asks the accelerator for a default.
    if (
        not simulated
        and any(d is not None for d in devices)
        and not torch.accelerator.is_available()
    ):
        raise AssertionError("No available accelerator found.")
    lock = threading.Lock()
    results: dict[int, Any] = {}
    device_type = (
        torch.accelerator.current_accelerator().type  # type: ignore[union-attr]
        if not simulated and torch.accelerator.is_available()
        else "cpu"  # simulated devices are CPU memory
    )
    grad_enabled, autocast_enabled = (
        torch.is_grad_enabled(),
        torch.is_autocast_enabled(device_type),
    )
    threaded = len(modules) > 1
    baton = new_baton(len(modules)) if threaded else None
    done = threading.Barrier(len(modules))

    with _trace.span("dp.parallel_apply", "parallel_apply", replicas=len(modules)) as span:
        state = _Shared(grad_enabled, autocast_enabled, device_type, results, lock, span.id)

        def _worker(i: int, module: Module, input: Any, kwargs: dict, device: Any) -> None:
            if baton is not None:
                baton.join(i)  # under lockstep: wait for the baton before anything else
            try:
                _replica(i, module, input, kwargs, device, state, threaded)
            finally:
                if baton is not None:
                    baton.leave(i)
                if threaded:
                    # torchscope: no thread exits before its siblings started, so
                    # no replica reuses another's thread id (the trace's key)
                    done.wait()

        if threaded:
            threads = [
                threading.Thread(  # torchscope: named, as in the trace
                    target=_worker, args=(i, module, input, kwargs, device), name=f"replica {i}"
                )
                for i, (module, input, kwargs, device) in enumerate(
                    zip(modules, inputs, kwargs_tup, devices)
                )
            ]

            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        else:
            _worker(0, modules[0], inputs[0], kwargs_tup[0], devices[0])

    outputs = []
    for i in range(len(inputs)):
        output = results[i]
        if isinstance(output, ExceptionWrapper):
            output.reraise()
        outputs.append(output)
    return outputs


class _Shared(NamedTuple):
    """What every replica thread gets from the caller."""

    grad_enabled: bool
    autocast_enabled: bool
    device_type: str
    results: dict[int, Any]
    lock: threading.Lock
    link: int  # the dp.parallel_apply span, parent of each dp.replica span


def _replica(
    i: int, module: Module, input: Any, kwargs: dict, device: Any, state: _Shared, threaded: bool
) -> None:
    """Upstream's ``_worker``: runs one replica and stores its output or exception."""
    torch.set_grad_enabled(state.grad_enabled)  # grad mode is per thread
    if device is None:
        t = get_a_var(input)
        if t is None:
            with state.lock:
                state.results[i] = ExceptionWrapper(
                    where=f"in replica {i}, no device was provided and no tensor input was found; "
                    "device cannot be resolved"
                )
            return
        device = t.get_device() if t.is_cuda else sim_device_of(t)
    if isinstance(device, torch.device):
        device = device.index
    name = device if is_sim(device) else str(torch.device(state.device_type, device))
    if threaded:
        _trace.set_thread_info(f"replica {i}", name)
    try:
        with _trace.span("dp.replica", f"replica {i}", link=state.link, index=i, device=name):
            with ExitStack() as stack:
                if not is_sim(device):  # simulated devices have no context or stream
                    stack.enter_context(torch.accelerator.device_index(device))
                    stack.enter_context(torch.accelerator.current_stream(device))
                stack.enter_context(
                    torch.amp.autocast(state.device_type, enabled=state.autocast_enabled)
                )
                # this also avoids accidental slicing of `input` if it is a Tensor
                if not isinstance(input, (list, tuple)):
                    input = (input,)
                output = module(*input, **kwargs)
        with state.lock:
            state.results[i] = output
    except Exception:
        with state.lock:
            state.results[i] = ExceptionWrapper(where=f"in replica {i} on device {device}")
