"""Rules about BatchNorm: running statistics moved during evaluation, batches too small.

Evidence: a ``bn.forward`` instant inside a BatchNorm's ``module.forward`` span,
recorded when it normalised with batch statistics in a state that differs from
its last record (reimpl/nn/modules/batchnorm.py; a steady training loop
records each layer once): ``training``, ``updates`` (the running stats moved),
``grad`` (``torch.is_grad_enabled()``), ``inference``
(``torch.is_inference_mode_enabled()``), ``per_channel`` (values per channel on
this rank), ``batch`` and ``world`` (the ranks SyncBatchNorm pooled, 1 when it
did not synchronise).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

import numpy as np

from tracer.analyze import aggregate
from tracer.analyze.check import Finding, rows_of_kinds, rule
from tracer.file.trace import Trace

TINY = 8
"""Fewer values per channel than this make batch statistics mostly noise: the
variance of n values has a relative standard error of sqrt(2/(n-1)), over 50%
below 8 values; at 2 values every normalised output is -1 or +1 whatever the
input; at 1 torch raises."""

RAISES = "Expected more than 1 value per channel when training"


def _inside(trace: Trace, kinds: tuple[str, ...]) -> np.ndarray:
    """Whether each span ran inside a span of one of ``kinds`` (itself included)."""
    seed = np.full(trace.n, -1, dtype=np.int64)
    rows = rows_of_kinds(trace, kinds)
    seed[rows] = rows
    return aggregate.inherit(trace.parent, trace.start_order, seed) >= 0


def _module(trace: Trace, row: int) -> tuple[str, str]:
    """The path and class of the BatchNorm whose span holds the evidence ``row``."""
    parent = int(trace.parent[row])
    if parent < 0 or trace.kind_of(parent) != "module.forward":
        return "?", "BatchNorm"
    return trace.name_of(parent), str(trace.attrs(parent).get("cls", "BatchNorm"))


def _flags(trace: Trace, rows: np.ndarray, *keys: str) -> list[np.ndarray]:
    return [np.array([bool(v) for v in trace.attr_values(rows, k)], dtype=bool) for k in keys]


@rule(
    "bn-train-in-eval",
    "warning",
    "BatchNorm in train mode updated its running statistics under no_grad / inference_mode",
)
def bn_train_in_eval(trace: Trace) -> Iterator[Finding]:
    """``torch.no_grad()`` and ``torch.inference_mode()`` say "evaluation", but
    only ``model.eval()`` switches BatchNorm to its running statistics: left in
    train mode it normalises each evaluation batch with the batch's own
    statistics and moves the running ones towards the evaluation data. No
    training step runs without grad, so an update there is either that mistake
    or a deliberate recalibration; ``swa_utils.update_bn`` (the one the trace
    names) is left out. One finding per process, naming every layer."""
    rows = rows_of_kinds(trace, ("bn.forward",))
    if not len(rows):
        return
    updates, grad, inference = _flags(trace, rows, "updates", "grad", "inference")
    recalibrating = _inside(trace, ("swa.update_bn",))[rows]
    bad = rows[updates & (~grad | inference) & ~recalibrating]
    by_part: dict[int, list[int]] = defaultdict(list)
    for row in bad[np.argsort(trace.start_ns[bad], kind="stable")].tolist():
        by_part[int(trace.part[row])].append(row)
    for rows_of_part in by_part.values():
        first: dict[str, int] = {}
        for row in rows_of_part:
            first.setdefault(_module(trace, row)[0], row)
        modes = {
            "torch.inference_mode()" if trace.attrs(r).get("inference") else "torch.no_grad()"
            for r in rows_of_part
        }
        modules = list(first)
        yield Finding(
            rule="bn-train-in-eval",
            severity="warning",
            message=(
                f"BatchNorm layer{'s' if len(modules) > 1 else ''} {', '.join(modules)} updated "
                f"running statistics under {' and '.join(sorted(modes))} with the model in "
                "train mode: evaluation normalised with each batch's own statistics and moved "
                "the running ones, which the model uses after model.eval()"
            ),
            evidence=list(first.values()),
            fix=(
                "Call model.eval() before evaluating and model.train() after; to recompute "
                "the running statistics on purpose, use torch.optim.swa_utils.update_bn."
            ),
            details={"modules": modules, "modes": sorted(modes)},
        )


@rule(
    "bn-tiny-batch",
    "warning",
    f"BatchNorm normalised with batch statistics over fewer than {TINY} values per channel",
)
def bn_tiny_batch(trace: Trace) -> Iterator[Finding]:
    """Batch statistics over one value per channel: torch raises (error). Over
    fewer than ``TINY`` they are mostly noise (warning; see ``TINY``).
    SyncBatchNorm counts the values of every rank it pooled; one that did not
    synchronise (no process group) has only its own rank's."""
    rows = rows_of_kinds(trace, ("bn.forward",))
    if not len(rows):
        return
    per_channel = trace.attr_values(rows, "per_channel", 0).astype(np.int64)
    world = trace.attr_values(rows, "world", 1).astype(np.int64)
    values = per_channel * np.maximum(world, 1)
    tiny = rows[(values > 0) & (values < TINY)]
    by_module: dict[str, list[int]] = defaultdict(list)
    for row in tiny[np.argsort(trace.start_ns[tiny], kind="stable")].tolist():
        by_module[_module(trace, row)[0]].append(row)
    for module, mine in by_module.items():
        yield _tiny_finding(trace, module, mine)


def _tiny_finding(trace: Trace, module: str, rows: list[int]) -> Finding:
    attrs = [trace.attrs(r) for r in rows]
    raising = [r for r, a in zip(rows, attrs) if a.get("per_channel") == 1 and a.get("world") == 1]
    worst = raising[0] if raising else min(rows, key=lambda r: trace.attrs(r)["per_channel"])
    a = trace.attrs(worst)
    cls = _module(trace, worst)[1]
    n, world = int(a.get("per_channel", 0)), int(a.get("world", 1))
    where = f"{module} ({cls})"
    if raising:
        parent = int(trace.parent[worst])
        raised = parent >= 0 and RAISES in str(trace.attrs(parent).get("error", ""))
        message = (
            f"{where} normalised one value per channel with batch statistics (batch of "
            f'{a.get("batch")}): torch raises "{RAISES}"'
            + (" (this run raised it)" if raised else "")
        )
        evidence = [worst, parent] if parent >= 0 else [worst]
    else:
        pooled = f" pooled over {world} ranks" if world > 1 else ""
        message = (
            f"{where} normalised with batch statistics over {n * world} value(s) per channel"
            f"{pooled} (batch of {a.get('batch')} on this rank): below {TINY} they are mostly "
            "noise (the variance's relative error is sqrt(2/(n-1)); at 2 values every output "
            "is -1 or +1), and the running statistics drift with it"
        )
        if cls == "SyncBatchNorm" and world == 1:
            message += "; this SyncBatchNorm did not synchronise (no process group of 2+ ranks)"
        evidence = [worst]
    return Finding(
        rule="bn-tiny-batch",
        severity="error" if raising else "warning",
        message=message,
        evidence=evidence,
        fix=(
            "Use larger batches (or more values per channel), SyncBatchNorm across ranks "
            "when the per-device batch is small, or a batch-independent norm (GroupNorm, "
            "LayerNorm); in evaluation, call model.eval() to use the running statistics."
        ),
        details={
            "module": module,
            "cls": cls,
            "values_per_channel": n * world,
            "per_rank": n,
            "world": world,
            "raises": bool(raising),
        },
    )
