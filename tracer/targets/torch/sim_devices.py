"""Simulated devices for unmodified torch programs (``record --target torch --sim-devices N``).

On a CPU-only machine ``torch.nn.DataParallel`` finds no accelerator and runs
its module as a plain call, so a multi-GPU DataParallel bug (DeOldify's hook
state shared by the replicas) cannot happen there. For the duration of a run,
:class:`SimDevices` puts a :class:`DataParallel` subclass in place of torch's
(``torch.nn.DataParallel``, ``torch.nn.parallel.DataParallel``, the class in
``torch.nn.parallel.data_parallel``) and of ``data_parallel``, and puts every
name back afterwards. The subclass keeps torch's interface, attributes and
``state_dict`` keys (``module.`` prefix) but maps the program's device ids
(unset: all of them; ``0..N-1``, ``cuda:k``) to reimpl's simulated devices
``sim:0..sim:N-1`` (``reimpl/devices.py``; ``sim:0`` is the CPU, where the
model already lives), and runs reimpl's ``scatter_kwargs``, ``replicate``,
``parallel_apply`` and ``gather`` on the torch modules: they use only what
torch modules have (``_replicate_for_data_parallel``, ``_parameters``, ...)
and torch autograd Functions, so gradients reach the model's parameters as on
GPUs. Under lockstep (the default) the replica threads take turns at every
torch module's forward entry and exit (torch's global module forward hooks,
a public seam) and at every ``print``, as reimpl's ``lockstep()`` does for
reimpl modules, so a race between replicas reproduces on every run.

What the program sees, and why: ``torch.cuda`` is left alone by default
(``is_available()`` is False, ``device_count()`` is 0), because torch itself
consults ``device_count()`` (``fork_rng`` then initialises every CUDA device,
``get_current_device_index`` asks for the current one) and would fail on a
CPU machine; a program that wraps its model only when ``device_count() > 1``
keeps its plain model, and the end-of-run line says no DataParallel was made.
``device_count=True`` (``--sim-device-count``) makes ``device_count()`` answer
N for the run anyway (``is_available()`` stays False, so such a program still
picks the CPU): PyTorch's own DataParallel tutorial then runs unchanged. A
sim:k tensor's ``.device`` is ``cpu:k`` (torch has no device type to name
``sim:k``, and takes a CPU device's index as the CPU), so state keyed by
``output.device`` is kept per device as on GPUs, and inside a replica
:class:`ReplicaDevice` makes ``device=x.device`` mean sim:k; ``.cuda()`` and
``.to("cuda")`` fail as on any CPU machine.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch.nn.modules import module as torch_module
from torch.overrides import TorchFunctionMode

from reimpl.devices import is_sim, retag, sim_device, sim_index
from reimpl.nn.parallel import _lockstep, parallel_apply, replicate
from reimpl.nn.parallel import lockstep as reimpl_lockstep
from reimpl.nn.parallel.data_parallel import DataParallel as ReimplDataParallel
from reimpl.nn.parallel.scatter_gather import gather, scatter_kwargs
from tracer.targets.torch.attach import Patches

__all__ = ["DataParallel", "ReplicaDevice", "SimDevices", "data_parallel", "sim_device_ids"]

_DP_MODULE = sys.modules["torch.nn.parallel.data_parallel"]
TorchDataParallel = _DP_MODULE.DataParallel

_active: SimDevices | None = None  # the installation of this run, if any


def sim_device_ids(device_ids: Sequence[Any] | None, n: int) -> list[str]:
    """The simulated devices standing for a program's ``device_ids`` (None: all ``n``).

    An integer k, ``"cuda:k"`` or ``torch.device("cuda", k)`` is ``sim:k``;
    ``"sim:k"`` stays itself. A k outside ``0..n-1`` is refused, naming the fix.
    """
    if device_ids is None:
        return [sim_device(k) for k in range(n)]
    return [_sim_id(d, n) for d in device_ids]


def _sim_id(device: Any, n: int, allow_cpu: bool = False) -> str:
    """One device id as a simulated device name."""
    if is_sim(device):
        index = int(device.split(":", 1)[1])
    elif allow_cpu and (device == -1 or str(device) == "cpu"):
        return sim_device(0)  # gather on the CPU: the CPU is sim:0
    else:
        index = torch._utils._get_device_index(device, True)
    if not 0 <= index < n:
        raise ValueError(
            f"DataParallel device id {device!r} is not simulated: --sim-devices {n} simulates "
            f"ids 0..{n - 1} ({', '.join(sim_device(k) for k in range(n))}); "
            f"run with --sim-devices {index + 1} or more"
        )
    return sim_device(index)


class DataParallel(TorchDataParallel):
    """``torch.nn.DataParallel`` on simulated devices: same interface and ``state_dict``.

    Made in place of torch's class while :class:`SimDevices` is installed;
    ``device_ids`` are the program's (integers, ``cuda:k``), held as ``sim:k``.
    """

    def __init__(
        self,
        module: torch.nn.Module,
        device_ids: Sequence[int | torch.device] | None = None,
        output_device: int | torch.device | None = None,
        dim: int = 0,
    ) -> None:
        torch.nn.Module.__init__(self)
        torch._C._log_api_usage_once("torch.nn.parallel.DataParallel")
        sim = _active
        if sim is None:
            raise RuntimeError(
                "simulated DataParallel made outside a --sim-devices run "
                "(use torch.nn.DataParallel)"
            )
        self.dim = dim
        self.module = module
        self.device_ids = sim_device_ids(device_ids, sim.n)  # type: ignore[assignment]
        if output_device is None:
            output_device = self.device_ids[0]  # type: ignore[assignment]
        self.output_device = _sim_id(output_device, sim.n, allow_cpu=True)  # type: ignore[assignment]
        self.src_device_obj = self.device_ids[0]  # type: ignore[assignment]
        self._device_type = "sim"  # what reimpl's forward checks devices by
        self._sim_lockstep = sim.lockstep
        sim.made += 1

    # torch's forward (scatter -> replicate -> parallel_apply -> gather, after the
    # check that the module lives on device_ids[0]) as reimpl mirrors it for sim:k
    # devices; it calls the four methods below.
    forward = ReimplDataParallel.forward

    def replicate(self, module: Any, device_ids: Sequence[Any]) -> list[Any]:
        """reimpl's ``replicate``: shallow replicas, parameters broadcast to ``sim:k``."""
        return replicate(module, device_ids, not torch.is_grad_enabled())

    def scatter(
        self, inputs: tuple[Any, ...], kwargs: dict[str, Any] | None, device_ids: Sequence[Any]
    ) -> Any:
        """reimpl's ``scatter_kwargs`` onto the simulated devices."""
        return scatter_kwargs(inputs, kwargs, device_ids, dim=self.dim)

    def parallel_apply(self, replicas: Sequence[Any], inputs: Sequence[Any], kwargs: Any) -> list:
        """reimpl's ``parallel_apply``: one named thread per replica, in lockstep by default.

        Replica k >= 1 runs under :class:`ReplicaDevice` (``x.device`` there is ``cpu:k``).
        """
        devices = self.device_ids[: len(replicas)]
        replicas = [_OnDevice(m) if sim_index(d) else m for m, d in zip(replicas, devices)]
        if not self._sim_lockstep:
            return parallel_apply(replicas, inputs, kwargs, devices)
        with torch_lockstep():
            return parallel_apply(replicas, inputs, kwargs, devices)

    def gather(self, outputs: Any, output_device: Any) -> Any:
        """reimpl's ``gather`` onto ``output_device`` (sim:0: a plain CPU tensor)."""
        return gather(outputs, output_device, dim=self.dim)


def data_parallel(
    module: torch.nn.Module,
    inputs: Any,
    device_ids: Sequence[int | torch.device] | None = None,
    output_device: int | torch.device | None = None,
    dim: int = 0,
    module_kwargs: Any | None = None,
) -> Any:
    """``torch.nn.parallel.data_parallel`` on the simulated devices: the same steps as
    the module's forward (called directly: no module span, as torch's function has none)."""
    if _active is None:
        raise RuntimeError("simulated data_parallel called outside a --sim-devices run")
    if not isinstance(inputs, tuple):
        inputs = (inputs,) if inputs is not None else ()
    net = DataParallel(module, device_ids, output_device, dim)
    return net.forward(*inputs, **(module_kwargs or {}))


def _sim_index_of(device: Any) -> int:
    """k for ``cpu:k`` (the ``.device`` of a sim:k tensor), 0 for anything else."""
    if isinstance(device, str) and device.startswith("cpu:"):
        device = torch.device(device)
    if isinstance(device, torch.device) and device.type == "cpu":
        return device.index or 0
    return 0


class ReplicaDevice(TorchFunctionMode):
    """Inside a replica: what the program makes "on ``x.device``" lands on x's device.

    A sim:k tensor's ``.device`` is ``cpu:k`` (``reimpl/devices.py``), which torch
    takes as the CPU: ``torch.arange(n, device=x.device)`` or ``mask.to(x.device)``
    would otherwise make a sim:0 tensor that fails to mix with the replica's own,
    an error GPUs do not have (there ``x.device`` is ``cuda:k``). On the replica's
    thread (torch function modes are per thread), a plain result made or moved
    with ``cpu:k`` becomes a sim:k tensor. Made with no device, or ``"cpu"``,
    it stays on the CPU (sim:0) and fails to mix, as on GPUs.
    """

    def __torch_function__(
        self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None
    ) -> Any:
        kwargs = kwargs or {}
        ret = func(*args, **kwargs)
        if type(ret) is torch.Tensor:
            k = _sim_index_of(kwargs.get("device"))
            if not k and func is torch.Tensor.to:
                k = max(map(_sim_index_of, args[1:]), default=0)
            if k:
                return retag(ret, sim_device(k))
        return ret


class _OnDevice:
    """A replica as ``parallel_apply`` calls it: runs under :class:`ReplicaDevice`."""

    __slots__ = ("module",)

    def __init__(self, module: Any) -> None:
        self.module = module

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with ReplicaDevice():
            return self.module(*args, **kwargs)


_lockstep_depth = 0


@contextmanager
def torch_lockstep() -> Iterator[None]:
    """reimpl's ``lockstep()`` with switch points at every torch module's forward
    entry and exit: torch runs global forward (pre-)hooks before a module's own,
    so each user hook call sits between two switch points."""
    global _lockstep_depth
    with reimpl_lockstep():
        handles = []
        if _lockstep_depth == 0:
            handles = [
                # reimpl's own switch points (marked internal), on torch's registry
                torch_module.register_module_forward_pre_hook(_lockstep._on_forward_pre),
                torch_module.register_module_forward_hook(_lockstep._on_forward),
            ]
        _lockstep_depth += 1
        try:
            yield
        finally:
            _lockstep_depth -= 1
            for handle in handles:
                handle.remove()


_PATCHED = (
    (torch.nn, "DataParallel", DataParallel),
    (torch.nn.parallel, "DataParallel", DataParallel),
    (torch.nn.parallel, "data_parallel", data_parallel),
    (_DP_MODULE, "DataParallel", DataParallel),
    (_DP_MODULE, "data_parallel", data_parallel),
)
"""(owner, name, replacement): every name through which a program reaches DataParallel."""


class SimDevices:
    """``n`` simulated devices for ``torch.nn.DataParallel``, installed for one run.

    ``install()`` puts the simulated class in place of torch's, ``restore()``
    puts torch's own objects back (the same objects: identity is checked by
    the tests). ``made`` counts the DataParallel objects (and ``data_parallel``
    calls) the program made while installed. With ``device_count``,
    ``torch.cuda.device_count()`` answers ``n`` for the run (opt-in: see the
    module's docstring).
    """

    def __init__(self, n: int, lockstep: bool = True, device_count: bool = False) -> None:
        if n < 1:
            raise ValueError(f"--sim-devices needs at least 1 device, got {n}")
        self.n = n
        self.lockstep = lockstep
        self.device_count = device_count
        self.made = 0
        self._patches: Patches | None = None

    @property
    def devices(self) -> list[str]:
        """``["sim:0", ..., "sim:n-1"]``."""
        return [sim_device(k) for k in range(self.n)]

    def describe(self) -> str:
        """The line a run prints on stderr: what is simulated, how ids map."""
        ids = ", ".join(f"{k} -> {d}" for k, d in enumerate(self.devices))
        mode = "lockstep" if self.lockstep else "free-running threads"
        count = f"; torch.cuda.device_count() answers {self.n}" if self.device_count else ""
        return (
            f"simulating {self.n} device(s) on the CPU for torch.nn.DataParallel "
            f"({ids}; {mode}{count}): {', '.join(self.devices)} are simulated, not GPUs"
        )

    def summary(self) -> str:
        """The line a run prints at its end: how many DataParallel calls were simulated."""
        if self.made:
            return (
                f"{self.made} torch.nn.DataParallel object(s)/data_parallel call(s) ran on "
                f"simulated devices {', '.join(self.devices)}"
            )
        if self.device_count:
            return f"--sim-devices {self.n}: the program made no torch.nn.DataParallel"
        return (
            f"--sim-devices {self.n}: the program made no torch.nn.DataParallel (torch.cuda "
            "still reports no GPU: a `torch.cuda.device_count() > 1` guard keeps the plain "
            "model; --sim-device-count makes it answer the simulated count, docs/sim-devices.md)"
        )

    def meta(self) -> dict[str, str]:
        """What the trace's metadata says about the simulation."""
        return {
            "sim_devices": ",".join(self.devices),
            "sim_lockstep": "yes" if self.lockstep else "no",
            "sim_device_count": str(self.n) if self.device_count else "no",
        }

    def install(self) -> SimDevices:
        """Puts the simulated DataParallel in place of torch's (one installation at a time)."""
        global _active
        if _active is not None:
            raise RuntimeError("simulated devices are installed already (one run at a time)")
        self._patches = Patches()  # the torch adapter's undo list (tracer/targets/torch/attach.py)
        for owner, name, replacement in _PATCHED:
            self._patches.setattr(owner, name, replacement)
        if self.device_count:
            self._patches.setattr(torch.cuda, "device_count", self._device_count)
        _active = self
        return self

    def restore(self) -> None:
        """Puts torch's own DataParallel and data_parallel back."""
        global _active
        if self._patches is not None:
            self._patches.restore()
            self._patches = None
        if _active is self:
            _active = None

    def _device_count(self) -> int:
        """``torch.cuda.device_count()`` under ``--sim-device-count``."""
        return self.n

    def __enter__(self) -> SimDevices:
        return self.install()

    def __exit__(self, *exc: object) -> None:
        self.restore()
