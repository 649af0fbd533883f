"""Rules about tensors crossing devices and containers mutated across threads."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from tracer.analyze.check import Finding, rows_of_kinds, rule
from tracer.analyze.check.hooks import HOOK_KINDS, replica_of, thread_device
from tracer.file.trace import Trace

ITERATION_ERRORS = ("changed size during iteration", "mutated during iteration")


def _producers(trace: Trace) -> dict[int, list[int]]:
    """Tensor identity -> the forward-hook calls that saw it as a module's output."""
    hooks = rows_of_kinds(trace, ("hook.forward",))
    out: dict[int, list[int]] = {}
    for row, tensor in zip(hooks.tolist(), trace.attr_values(hooks, "output_id").tolist()):
        if tensor is not None:
            out.setdefault(tensor, []).append(row)
    return out


@rule(
    "cross-device",
    "error",
    "an operation got a tensor from another device than the rest (a replica read another's)",
)
def cross_device(trace: Trace) -> Iterator[Finding]:
    """A replica runs on its own device; a tensor of another device reaching one
    of its operations raises "Expected all tensors to be on the same device".
    The recorder notes the operation's tensors (identity, device) when that
    happens; the producer is the forward hook that saw the foreign tensor as a
    module's output (the DeOldify hook that stored it)."""
    mismatches = rows_of_kinds(trace, ("device.mismatch",))
    producers = _producers(trace) if len(mismatches) else {}
    for row in mismatches.tolist():
        attrs = trace.attrs(row)
        consumer = int(trace.parent[row])
        mine = thread_device(trace, row)
        foreign = [t for t in attrs.get("tensors", []) if t.get("device") != mine]
        produced = [
            max((r for r in producers.get(t.get("tensor"), []) if r != row),
                key=lambda r: trace.start_ns[r], default=None)
            for t in foreign
        ]  # fmt: skip
        produced = [
            p for p in produced if p is not None and trace.start_ns[p] <= trace.start_ns[row]
        ]
        where = trace.name_of(consumer) if consumer >= 0 else "the program"
        message = (
            f"{trace.name_of(row)} in {where} on {mine or 'a thread with no device'} got a "
            f"tensor of {', '.join(sorted({t.get('device', '?') for t in foreign})) or '?'}"
        )
        if produced:
            p = trace.attrs(produced[0])
            message += (
                f", the output of {p.get('module')} that hook {p.get('hook')} kept on "
                f"{thread_device(trace, produced[0]) or 'another thread'}"
            )
        yield Finding(
            rule="cross-device",
            severity="error",
            message=message,
            evidence=[*([consumer] if consumer >= 0 else []), row, *produced],
            fix=(
                "Read state that belongs to this replica's device (keep hook state per device "
                "or per thread), or move the tensor with .to(device) where mixing is intended."
            ),
            details={
                "op": trace.name_of(row),
                "devices": attrs.get("devices"),
                "producer": trace.attrs(produced[0]).get("hook") if produced else None,
            },
        )


@rule(
    "mutation-during-iteration",
    "error",
    "a container shared by threads changed while one of them iterated it",
)
def mutation_during_iteration(trace: Trace) -> Iterator[Finding]:
    """The ``--variant print`` failure: a hook object iterates a dict that the
    same object, called from another replica thread, grows at the same time.
    Fires on the error (``dictionary changed size during iteration``) with the
    concurrent calls that resized the container, and, as a warning, on calls
    from two replica threads that overlapped in time and resized the same
    object's containers even when the iteration happened not to collide."""
    hooks = rows_of_kinds(trace, HOOK_KINDS)
    if not len(hooks):
        return
    errors = trace.attr_values(hooks, "error")
    resized = trace.attr_values(hooks, "resized")
    hook_ids = trace.attr_values(hooks, "hook_id", -1)
    replica = replica_of(trace)[hooks]
    by_object: dict[int, list[int]] = {}
    for k in np.flatnonzero([bool(r) for r in resized]).tolist():
        by_object.setdefault(int(hook_ids[k]), []).append(k)
    reported: set[int] = set()
    for k, error in enumerate(errors.tolist()):
        if not error or not any(e in error for e in ITERATION_ERRORS):
            continue
        hook_id = int(hook_ids[k])
        others = [
            int(hooks[j])
            for j in by_object.get(hook_id, [])
            if trace.thread[hooks[j]] != trace.thread[hooks[k]]
            and _overlap(trace, hooks[k], hooks[j])
        ]
        reported.add(hook_id)
        yield _mutation_finding(trace, int(hooks[k]), others, "error", error)
    for hook_id, ks in by_object.items():
        if hook_id in reported or hook_id < 0:
            continue
        pairs = [(hooks[a], hooks[b]) for a in ks for b in ks if a < b and replica[a] >= 0
                 and replica[b] >= 0 and trace.thread[hooks[a]] != trace.thread[hooks[b]]
                 and _overlap(trace, hooks[a], hooks[b])]  # fmt: skip
        if pairs:
            yield _mutation_finding(trace, int(pairs[0][0]), [int(pairs[0][1])], "warning", None)


def _overlap(trace: Trace, a: int, b: int) -> bool:
    return bool(trace.start_ns[a] < trace.end_ns[b] and trace.start_ns[b] < trace.end_ns[a])


def _mutation_finding(
    trace: Trace, row: int, others: list[int], severity: str, error: str | None
) -> Finding:
    attrs = trace.attrs(row)
    containers = sorted({c for r in [row, *others] for c in trace.attrs(r).get("resized", [])})
    what = ", ".join(containers) or "a container"
    message = (
        f"hook {attrs.get('hook')} on {attrs.get('module')}: {error}; another replica thread "
        f"was resizing {what} of the same hook object at that moment"
        if error
        else f"hook {attrs.get('hook')} on {attrs.get('module')}: two replica threads resized "
        f"{what} of the same hook object at the same time; iterating it there can fail with "
        "'dictionary changed size during iteration'"
    )
    return Finding(
        rule="mutation-during-iteration",
        severity=severity,
        message=message,
        evidence=[row, *others],
        fix=(
            "Give each thread its own container (threading.local() or one keyed by device), "
            "or iterate a copy (list(d.items())) under a lock."
        ),
        details={
            "hook": attrs.get("hook"),
            "module": attrs.get("module"),
            "containers": containers,
            "source": attrs.get("source"),
        },
    )
