"""``sched.step`` spans of torch.optim.lr_scheduler schedulers, with the lrs.

Seam: ``step`` wrapped, for the run, on ``LRScheduler`` and on every scheduler
class of ``torch.optim.lr_scheduler`` and ``torch.optim.swa_utils`` that
defines its own (``ReduceLROnPlateau``, ``SequentialLR``, ...), with reimpl's
own wrapper (``reimpl/optim/lr_scheduler.py: _traced_step``), so the spans and
their attributes are reimpl's: ``scheduler``, ``old_lr``, ``new_lr``,
``last_epoch``, ``initial`` (the step torch's constructor makes), and ``func``
names torch's ``step``.
"""

from __future__ import annotations

import torch.optim.lr_scheduler as torch_sched
import torch.optim.swa_utils as torch_swa

from reimpl.optim.lr_scheduler import _traced_step
from tracer.targets.torch.attach import Options, Patches


def scheduler_classes() -> list[type]:
    """The scheduler classes whose own ``step`` gets wrapped."""
    found = []
    for namespace in (torch_sched, torch_swa):
        for value in vars(namespace).values():
            if (
                isinstance(value, type)
                and issubclass(value, torch_sched.LRScheduler)
                and "step" in vars(value)
                and value not in found
            ):
                found.append(value)
    return found


def install(patches: Patches, options: Options) -> None:
    """Wraps ``step`` on each scheduler class that defines one."""
    for cls in scheduler_classes():
        patches.wrap(cls, "step", _traced_step)
