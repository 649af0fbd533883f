"""Rules about the training loop: the order of optimizer, scheduler and zero_grad calls."""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterator

import numpy as np

from tracer.analyze.check import Finding, rows_of_kinds, rule
from tracer.file.trace import Trace


def _by_part(trace: Trace, rows: np.ndarray) -> dict[int, list[int]]:
    """Rows grouped by process, each group in start order."""
    out: dict[int, list[int]] = defaultdict(list)
    for row in rows[np.argsort(trace.start_ns[rows], kind="stable")].tolist():
        out[int(trace.part[row])].append(row)
    return out


@rule(
    "scheduler-before-optimizer",
    "warning",
    "lr_scheduler.step() called before the first optimizer.step()",
)
def scheduler_before_optimizer(trace: Trace) -> Iterator[Finding]:
    """Since PyTorch 1.1 the scheduler steps after the optimizer; stepping it
    first skips the first value of the schedule (torch warns once, easily
    missed). The scheduler's own first step, in its constructor, is not a call."""
    scheds = _by_part(trace, rows_of_kinds(trace, ("sched.step",)))
    steps = _by_part(trace, rows_of_kinds(trace, ("optim.step",)))
    for part, rows in scheds.items():
        calls = [r for r in rows if not trace.attrs(r).get("initial")]
        first_step = steps.get(part, [None])[0]
        early = [
            r for r in calls if first_step is None or trace.start_ns[r] < trace.start_ns[first_step]
        ]
        if not early:
            continue
        sched = trace.attrs(early[0]).get("scheduler") or trace.name_of(early[0])
        yield Finding(
            rule="scheduler-before-optimizer",
            severity="warning",
            message=(
                f"{sched}.step() ran {len(early)} time(s) before the first optimizer.step()"
                + ("" if first_step is not None else " (the optimizer never stepped)")
                + ": the first learning rate of the schedule is skipped"
            ),
            evidence=[early[0]] + ([first_step] if first_step is not None else []),
            fix="Call optimizer.step() first, then scheduler.step(), in every iteration.",
            details={"scheduler": sched, "early_calls": len(early)},
        )


@rule(
    "missing-zero-grad",
    "warning",
    "two optimizer steps with no zero_grad between them: gradients accumulate across steps",
)
def missing_zero_grad(trace: Trace) -> Iterator[Finding]:
    """Deliberate gradient accumulation runs several backward passes *between*
    two steps and clears after each step; two steps of one optimizer with no
    ``zero_grad`` (of the optimizer or of any module) between them make the
    second step apply the first step's gradients again. Gradients cleared by
    hand (``p.grad = None``) are invisible to the trace: the message says so."""
    steps = _by_part(trace, rows_of_kinds(trace, ("optim.step",)))
    clears = _by_part(trace, rows_of_kinds(trace, ("optim.zero_grad", "module.zero_grad")))
    for part, rows in steps.items():
        clear_starts = np.sort(trace.start_ns[clears.get(part, [])]) if part in clears else None
        by_optimizer: dict[str, list[int]] = defaultdict(list)
        for row in rows:
            by_optimizer[trace.name_of(row)].append(row)
        for name, mine in by_optimizer.items():
            bad = []
            for a, b in itertools.pairwise(mine):
                lo, hi = trace.end_ns[a], trace.start_ns[b]
                if clear_starts is None or not (
                    np.searchsorted(clear_starts, lo) < np.searchsorted(clear_starts, hi)
                ):
                    bad.append((a, b))
            if not bad:
                continue
            yield Finding(
                rule="missing-zero-grad",
                severity="warning",
                message=(
                    f"{name}() ran {len(bad)} time(s) right after another {name}() with no "
                    "zero_grad between them: each step also applies the gradients of the "
                    "steps before it (unless the program clears them by hand, p.grad = None)"
                ),
                evidence=list(bad[0]),
                fix=(
                    "Call optimizer.zero_grad() once per step (before the backward); to "
                    "accumulate gradients, run several backward passes between two steps."
                ),
                details={"optimizer": name, "steps_without_zero_grad": len(bad)},
            )
