"""Attaching to the installed torch for one recording, and leaving it as it was.

The API (``tracer/targets/torch/sim_devices.py`` and the runner use it)::

    from tracer.targets.torch.attach import attach
    detach = attach(backward_spans=True)   # after a Recorder started
    try:
        ...  # run the unmodified torch program
    finally:
        detach()                           # torch is exactly as before

Every seam (one file each: ``modules.py``, ``optim.py``, ``schedulers.py``,
``parallel.py``, ``data.py``, ``batchnorm.py``, ``collectives.py``) has an
``install(patches, options)`` that registers torch's global hooks and puts
wrappers on a few attributes, all through ``Patches``, which remembers how to
undo each one; ``detach`` undoes them in reverse order, even when the program
raised. The seams emit into ``reimpl._trace.sink`` read at each call (the
recorder, or a forked child's own part), with the same kinds, names and
attributes as reimpl's spans. ``SEAMS`` names them; ``attach(seams=...)``
attaches a subset (the benchmark measures them apart).
"""

from __future__ import annotations

import functools
import importlib
import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

SEAMS = (
    "modules",
    "optim",
    "schedulers",
    "swa",
    "parallel",
    "data",
    "batchnorm",
    "collectives",
)
"""The seams ``attach`` installs by default, in order (files of this package)."""

TARGET_ENV = "TORCHSCOPE_TARGET"
"""Set to ``torch`` while attached: spawned children attach the same target."""
_MISSING = object()


@dataclass(frozen=True)
class Options:
    """What the seams read from the recording's options."""

    backward_spans: bool = True
    """``module.backward`` spans from the native boundary stamp (or its Python
    fallback), as reimpl records them; never through global backward hooks."""
    forward: str = "call"
    """How ``module.forward`` spans are taken: ``"call"``, a wrapper on
    ``Module._call_impl`` (the default: torch keeps its no-hook fast path, and
    the span encloses the module's own hooks as in reimpl), or ``"hooks"``,
    torch's global forward pre/post hooks (every module call then takes
    ``_call_impl``'s slow path; benchmarks/bench_torch_target.py measures both)."""


class Patches:
    """Every change made to torch for a recording, and how to undo it."""

    def __init__(self) -> None:
        self._undo: list[Callable[[], None]] = []
        self.patched: list[tuple[Any, str, Any]] = []
        """(object, attribute, original value or absent) for each ``setattr``."""

    def setattr(self, obj: Any, name: str, value: Any) -> None:
        """Sets ``obj.name``; detach puts the original back (or deletes an attribute
        the object did not have in its own ``__dict__``, so a class inherits again)."""
        own = vars(obj).get(name, _MISSING) if hasattr(obj, "__dict__") else getattr(obj, name)
        self.patched.append((obj, name, own))
        setattr(obj, name, value)

        def undo() -> None:
            if own is _MISSING:
                delattr(obj, name)
            else:
                setattr(obj, name, own)

        self._undo.append(undo)

    def wrap(self, obj: Any, name: str, make: Callable[[Any], Any]) -> None:
        """Replaces ``obj.name`` (as looked up, inherited or not) by ``make(original)``."""
        self.setattr(obj, name, make(getattr(obj, name)))

    def on_detach(self, undo: Callable[[], Any]) -> None:
        """Runs ``undo`` at detach (a hook handle's ``remove``)."""
        self._undo.append(undo)

    def restore(self) -> None:
        """Undoes everything, newest first; one failure does not stop the rest."""
        errors = []
        while self._undo:
            try:
                self._undo.pop()()
            except Exception as exc:  # report, keep restoring
                errors.append(exc)
        self.patched.clear()
        if errors:
            print(f"torchscope: restoring torch: {errors[0]!r}", file=sys.stderr)


_current: list[Patches] = []  # the attached adapter's patches (at most one)


def attached() -> bool:
    """Whether the torch adapter is attached in this process."""
    return bool(_current)


def attach(
    *, backward_spans: bool = True, seams: Iterable[str] = SEAMS, forward: str = "call"
) -> Callable[[], None]:
    """Attaches the seams to the installed torch; returns ``detach`` (idempotent).

    Spans go to ``reimpl._trace.sink``: start a Recorder first. One adapter at a
    time per process.
    """
    if _current:
        raise RuntimeError("the torch target is already attached in this process; detach it first")
    if forward not in ("call", "hooks"):
        raise ValueError(f"forward must be 'call' or 'hooks', not {forward!r}")
    options = Options(backward_spans=backward_spans, forward=forward)
    patches = Patches()
    _current.append(patches)
    # a spawned child (tracer/recording/subprocesses.py) attaches the same target
    previous = os.environ.get(TARGET_ENV)
    os.environ[TARGET_ENV] = "torch"
    patches.on_detach(functools.partial(_restore_env, previous))
    try:
        for seam in seams:
            importlib.import_module(f"{__package__}.{seam}").install(patches, options)
    except BaseException:
        _detach(patches)
        raise
    return lambda: _detach(patches)


def _restore_env(previous: str | None) -> None:
    if previous is None:
        os.environ.pop(TARGET_ENV, None)
    else:
        os.environ[TARGET_ENV] = previous


def _detach(patches: Patches) -> None:
    if patches in _current:
        _current.remove(patches)
        patches.restore()
