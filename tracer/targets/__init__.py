"""What a recording attaches to: reimpl's seam, or the installed torch.

``reimpl``: the recorder becomes ``reimpl._trace``'s sink (always, whatever
the target: a program may mix both). ``torch``: besides, the adapter in
``tracer/targets/torch/`` attaches to the installed torch through its public
seams (global module and optimizer hooks, wrappers put on a few classes and
functions) for the duration of the run, and restores everything at detach.
"""

from __future__ import annotations

from collections.abc import Callable

TARGETS = ("reimpl", "torch")
"""The ``--target`` choices of ``torchscope record`` and ``tracer.record``."""


def check_target(target: str) -> str:
    """``target`` itself, or a ValueError naming the choices."""
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}")
    return target


def attach_target(target: str, *, backward_spans: bool = True) -> Callable[[], None]:
    """Attaches what ``target`` needs beyond the recorder; returns the detach callable.

    Call it after the recorder started (its spans go to ``reimpl._trace.sink``).
    """
    if check_target(target) == "reimpl":
        return _nothing
    from tracer.targets.torch.attach import attach

    return attach(backward_spans=backward_spans)


def _nothing() -> None:
    """Detaching the reimpl target: the recorder itself detaches from the seam."""
