"""Records reimpl's events into trace files, loads and analyses them.

The pipeline: ``Recorder`` (sink of ``reimpl._trace``) -> trace file
(``tracer.file.store``) -> ``Trace`` (columns, ``tracer.file.trace``) -> analyses
(``tracer.analyze.aggregate``, ``tracer.analyze.summary``) -> exports and views. ``tracer``
never imports the UI.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tracer.file.errors import TraceError
from tracer.recording.recorder import Recorder
from tracer.targets import TARGETS, attach_target, check_target

__all__ = ["TARGETS", "Recorder", "Trace", "TraceError", "load", "record"]


def __getattr__(name: str) -> Any:
    """``Trace`` and ``load`` import numba (the loader's kernels): only when asked,
    so a recorder in a spawned rank or DataLoader worker starts without it."""
    if name in ("Trace", "load"):
        from tracer.file import trace

        return getattr(trace, name)
    raise AttributeError(f"module 'tracer' has no attribute {name!r}")


@contextmanager
def record(
    path: str | os.PathLike[str],
    target: str = "reimpl",
    *,
    flush_interval: float = 1.0,
    append: bool = False,
    sim_devices: int = 0,
) -> Iterator[Recorder]:
    """Records everything reimpl emits inside the block into ``path``.

    The trace is complete when the block exits, even through an exception;
    a process killed inside it keeps everything up to the last flush. A trace
    already at ``path`` is replaced (``append=True`` adds this run to it); any
    other file there is refused with a TraceError. ``target="torch"`` records an
    unmodified PyTorch program (torch's own modules, optimizers, schedulers,
    DataLoaders) and leaves torch as it was when the block exits; with
    ``sim_devices=N`` its ``torch.nn.DataParallel`` runs on N simulated devices
    (docs/sim-devices.md).
    """
    sim = _sim_devices(sim_devices, check_target(target))
    rec = Recorder(
        path,
        flush_interval=flush_interval,
        meta={"target": target, **(sim.meta() if sim is not None else {})},
        mode="append" if append else "new",
    )
    with rec:
        detach = attach_target(target)
        try:
            if sim is None:
                yield rec
            else:
                with sim:
                    yield rec
        finally:
            detach()


def _sim_devices(n: int, target: str) -> Any:
    """``record(sim_devices=N)``: the simulation to install (None without)."""
    if not n:
        return None
    if target != "torch":
        raise ValueError("sim_devices simulates torch.nn.DataParallel: use target='torch'")
    from tracer.targets.torch.sim_devices import SimDevices

    return SimDevices(n)
