"""Simulated devices: ``"sim:0"``, ``"sim:1"``, ... on any machine.

No torch counterpart: this is what lets DataParallel and its bugs run without
GPUs (DESIGN.md, "Simulated devices"). ``sim:0`` is the CPU itself, so plain
CPU tensors and a model built on the CPU live there. ``sim:k`` (k >= 1) is CPU
memory whose tensors carry a tag: they are instances of a per-device subclass
of :class:`SimTensor`, whose ``__torch_function__`` checks that every tensor
argument of an op lives on one simulated device (raising torch's own message
otherwise) and tags the results.

Choices, and why:

* The tag is the tensor's *class* (one small subclass per device), set by
  ``__class__`` assignment on the op's fresh result: one dict lookup reads a
  tensor's device, and no extra autograd node is made (``as_subclass`` would
  add an alias node per op).
* Autograd works through the tag: forward ops are recorded as usual, and
  backward formulas run below ``__torch_function__``, so gradients arriving at
  the original (plain) parameters on sim:0 are plain tensors. Gradients carry
  no device tag; DataParallel's backward (reduce-add, gather) puts them on the
  right device itself.
* Like a CPU scalar next to CUDA tensors, a plain 0-dim tensor may join an op
  on any simulated device.
* ``copy_`` may cross devices (it does on real devices); ``cpu()`` and
  ``to("cpu")`` return sim:0 tensors; :func:`to_device` moves between
  simulated devices.
* A sim:k tensor's ``.device`` is ``cpu:k``: CPU memory to torch (which takes
  a CPU device's index as the CPU), yet distinct per simulated device, as
  ``cuda:k`` is, so state keyed by ``tensor.device`` is kept per device, and
  ``t.to(x.device)`` moves ``t`` to x's simulated device.

Left out: factory functions (``torch.zeros(..., device=x.device)``) make
sim:0 tensors (``cpu:k`` is the CPU to them), which then fail to mix with
sim:k ones (``torchscope record --sim-devices`` maps them inside torch
replicas); and a module cannot be moved to sim:k>=1 (``Module._apply``
sets ``param.data``, which drops the tag), so a simulated DataParallel keeps
its module on sim:0 = ``device_ids[0]``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch._C import DisableTorchFunctionSubclass

from reimpl import _trace

__all__ = [
    "SimTensor",
    "as_plain",
    "device_of",
    "get_device_index",
    "is_sim",
    "retag",
    "sim_device",
    "sim_device_of",
    "sim_index",
    "to_device",
]

SIM_PREFIX = "sim:"


def is_sim(device: Any) -> bool:
    """True for a simulated device name such as ``"sim:1"``."""
    return isinstance(device, str) and device.startswith(SIM_PREFIX)


def sim_index(device: str) -> int:
    """The k of ``"sim:k"``; raises ValueError for anything else."""
    if not is_sim(device) or not device[len(SIM_PREFIX) :].isdigit():
        raise ValueError(f"not a simulated device: {device!r} (expected 'sim:<index>')")
    return int(device[len(SIM_PREFIX) :])


def sim_device(index: int) -> str:
    """The name of simulated device ``index``."""
    return f"{SIM_PREFIX}{index}"


class SimTensor(Tensor):
    """A CPU tensor that lives on simulated device ``sim:k`` (k >= 1).

    Never built directly: :func:`to_device` makes them, and every op on them
    makes more. ``sim_index`` is a class attribute of the per-device subclass.
    """

    sim_index: int = -1

    @classmethod
    def __torch_function__(
        cls, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None
    ) -> Any:
        # The hot path: every op on a simulated tensor comes through here, so
        # the common case (tagged tensors in, one fresh tensor out) is inline.
        if kwargs is None:
            kwargs = {}
        if func in _SPECIAL:
            return _special(func, args, kwargs)
        index = -1
        for arg in args:
            found = _INDEX.get(type(arg))
            if found is None:
                if isinstance(arg, (Tensor, list, tuple)):
                    index = _common_index((arg,), index, func)
                continue
            if found != index:
                if index != -1:
                    raise _mixed(index, found, func, args)
                index = found
        if kwargs:
            index = _common_index(kwargs.values(), index, func)
        with DisableTorchFunctionSubclass():
            ret = func(*args, **kwargs)
        if type(ret) is Tensor and index > 0:
            for arg in args:
                if ret is arg:  # an input returned as is: leave it untouched
                    break
            else:
                ret.__class__ = _CLASSES[index]  # a fresh result: retag in place
                return ret
        return _tag(ret, index, args)

    @property
    def device(self) -> torch.device:  # type: ignore[override]
        """``cpu:k``: CPU memory whose index tells simulated devices apart, as
        ``cuda:k`` does on GPUs (``stored[output.device]`` keys one value per
        device). torch takes a CPU device's index as the CPU itself, so
        ``torch.zeros(n, device=x.device)`` still runs; ``Tensor.to`` moves to
        sim:k when given ``cpu:k``."""
        return torch.device("cpu", type(self).sim_index)

    def __repr__(self, *, tensor_contents: Any = None) -> str:
        with DisableTorchFunctionSubclass():
            text = Tensor.__repr__(self)
        name = type(self).__name__ + "("
        if text.startswith(name):  # print like torch prints a CUDA tensor
            text = "tensor(" + text[len(name) :].replace("\n" + " " * len(name), "\n" + " " * 7)
        return f"{text[:-1]}, device='{sim_device(type(self).sim_index)}')"

    def __format__(self, format_spec: str) -> str:
        # torch formats only exact Tensors as numbers; a scalar here is one too.
        if self.dim() == 0:
            return self.item().__format__(format_spec)
        return object.__format__(self, format_spec)


_CLASSES: dict[int, type[SimTensor]] = {}
_INDEX: dict[type, int] = {}
"""Per-device subclass -> its index; the lookup every op does per argument."""


def _sim_class(index: int) -> type[SimTensor]:
    """The subclass standing for ``sim:index`` (made on first use)."""
    cls = _CLASSES.get(index)
    if cls is None:
        cls = type("SimTensor", (SimTensor,), {"sim_index": index, "__module__": __name__})
        cls.__qualname__ = f"SimTensor[sim:{index}]"
        _CLASSES[index] = cls
        _INDEX[cls] = index
    return cls


def _common_index(args: Any, index: int, func: Any = None) -> int:
    """The one simulated device of the tensors in ``args`` (-1 if none yet)."""
    for arg in args:
        found = _INDEX.get(type(arg))
        if found is None:
            if isinstance(arg, Tensor):
                if arg.dim() == 0 and arg.device.type == "cpu":
                    continue  # a CPU scalar joins any device, as with CUDA
                found = _plain_index(arg)
            elif isinstance(arg, (list, tuple)) and arg and isinstance(arg[0], Tensor):
                index = _common_index(arg, index, func)  # torch.cat([a, b])
                continue
            else:
                continue
        if index == -1:
            index = found
        elif found != index:
            raise _mixed(index, found, func, args)
    return index


def _plain_index(t: Tensor) -> int:
    """A plain tensor's simulated device: the CPU is sim:0."""
    if t.device.type != "cpu":
        raise RuntimeError(
            "Expected all tensors to be on the same device, but found at least two "
            f"devices, {t.device} and a simulated device!"
        )
    return 0


def _mixed(a: int, b: int, func: Any = None, args: Any = ()) -> RuntimeError:
    """torch's message for an op that mixes two devices.

    While recording, a ``device.mismatch`` instant names the op and each
    tensor it was given (identity and device), so ``check`` can tell which
    span produced the tensor that came from the other device.
    """
    if _trace.sink is not None:
        tensors = [
            {"tensor": id(t), "device": sim_device(_INDEX.get(type(t), 0))}
            for t in _tensors_in(args)
        ]
        op = getattr(func, "__name__", None) or str(func)
        _trace.instant(
            "device.mismatch", op, devices=[sim_device(a), sim_device(b)], tensors=tensors
        )
    return RuntimeError(
        "Expected all tensors to be on the same device, but found at least two devices, "
        f"{sim_device(a)} and {sim_device(b)}!"
    )


def _tensors_in(args: Any) -> list[Tensor]:
    """The tensors among an op's arguments, one list level deep (torch.cat([a, b]))."""
    found = []
    for arg in args:
        if isinstance(arg, Tensor):
            found.append(arg)
        elif isinstance(arg, (list, tuple)):
            found.extend(a for a in arg if isinstance(a, Tensor))
    return found


def _tag(ret: Any, index: int, args: tuple) -> Any:
    """Puts the op's results on ``sim:index`` (sim:0 results stay plain)."""
    if isinstance(ret, Tensor):
        if index <= 0:
            if type(ret) in _INDEX:  # moved to sim:0 (``cpu()``): drop the tag
                with DisableTorchFunctionSubclass():
                    return ret.as_subclass(Tensor)
            return ret
        cls = _sim_class(index)
        if type(ret) is cls:
            return ret
        if type(ret) is Tensor and not any(ret is a for a in args):
            ret.__class__ = cls  # a fresh result: retag in place, no autograd node
            return ret
        with DisableTorchFunctionSubclass():
            return ret.as_subclass(cls)  # an input returned as is: leave it alone
    if isinstance(ret, (tuple, list)) and ret and any(isinstance(r, Tensor) for r in ret):
        items = [_tag(r, index, args) for r in ret]
        if isinstance(ret, list):
            return items
        return type(ret)(*items) if hasattr(ret, "_fields") else type(ret)(items)
    return ret


def _to_index(args: tuple, kwargs: dict, index: int) -> int:
    """Where ``Tensor.to`` lands: sim:0 for the CPU, sim:k for ``cpu:k``, else unchanged."""
    for arg in (*args[1:], *kwargs.values()):
        if isinstance(arg, (str, torch.device)) and str(arg).startswith("cpu"):
            return torch.device(arg).index or 0  # cpu:k: a simulated tensor's .device
        if isinstance(arg, Tensor):
            return _INDEX.get(type(arg), 0)
    return index


def _special(func: Any, args: tuple, kwargs: dict) -> Any:
    """The ops that move tensors or return non-tensors: the slow path."""
    if func in _CROSS_DEVICE:
        index = _INDEX.get(type(args[0]), 0)
    else:
        index = _common_index(kwargs.values(), _common_index(args, -1))
    with DisableTorchFunctionSubclass():
        ret = func(*args, **kwargs)
    if func in _NOWRAP:
        return ret
    if func in _MOVES:
        index = _MOVES[func](args, kwargs, index)
    return _tag(ret, index, args)


_NOWRAP = frozenset({*torch.overrides.get_default_nowrap_functions(), Tensor.__repr__})
_CROSS_DEVICE = frozenset({Tensor.copy_})
_MOVES: dict[Any, Any] = {
    Tensor.cpu: lambda args, kwargs, index: 0,
    Tensor.to: _to_index,
}
_SPECIAL = frozenset({*_NOWRAP, *_CROSS_DEVICE, *_MOVES})


def device_of(tensor: Tensor) -> str:
    """``"sim:k"`` for a tensor on simulated device k >= 1, else its real device.

    A plain CPU tensor answers ``"cpu"`` (which is sim:0 when simulating):
    the function never guesses whether the caller is simulating.
    """
    index = _INDEX.get(type(tensor))
    if index is not None:
        return sim_device(index)
    return str(tensor.device)


def sim_device_of(tensor: Tensor) -> str:
    """The simulated device of ``tensor``: plain CPU tensors are on sim:0."""
    index = _INDEX.get(type(tensor))
    if index is not None:
        return sim_device(index)
    if tensor.device.type != "cpu":
        raise RuntimeError(f"a {tensor.device} tensor is on no simulated device")
    return sim_device(0)


def to_device(tensor: Tensor, device: str) -> Tensor:
    """A copy of ``tensor`` on simulated ``device``; the tensor itself if already there.

    Moving to sim:0 gives a plain CPU tensor. Not recorded by autograd: the
    DataParallel functions that move tensors are autograd Functions themselves.
    """
    index = sim_index(device)
    if _INDEX.get(type(tensor), 0 if tensor.device.type == "cpu" else -1) == index:
        return tensor
    with DisableTorchFunctionSubclass():
        moved = tensor.detach().to("cpu", copy=True)
    if index == 0:
        return moved
    moved.__class__ = _sim_class(index)
    return moved


def as_plain(tensor: Tensor) -> Tensor:
    """The same memory seen as a plain tensor (no copy, no autograd node)."""
    if type(tensor) not in _INDEX:
        return tensor
    with DisableTorchFunctionSubclass():
        return tensor.detach().as_subclass(Tensor)


def get_device_index(device: Any, optional: bool = False, allow_cpu: bool = False) -> int | str:
    """torch's ``_get_device_index``, keeping a simulated device as its name ``"sim:k"``.

    Every device argument of ``reimpl.nn.parallel`` goes through here: integers
    and ``torch.device`` objects mean real devices exactly as in torch.
    """
    if is_sim(device):
        return sim_device(sim_index(device))
    return torch._utils._get_device_index(device, optional, allow_cpu)


def retag(tensor: Tensor, device: str) -> Tensor:
    """``tensor``'s memory seen on simulated ``device``, autograd kept (no copy).

    For gradients: autograd computes them below ``__torch_function__``, so they
    arrive untagged; DataParallel's backward knows where each one belongs.
    """
    index = sim_index(device)
    if _INDEX.get(type(tensor), 0) == index:
        return tensor
    with DisableTorchFunctionSubclass():
        return tensor.as_subclass(_sim_class(index) if index else Tensor)
