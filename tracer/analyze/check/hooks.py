"""Rules about module hooks: state shared by DataParallel replicas, deprecated hooks."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from tracer.analyze import aggregate
from tracer.analyze.check import Finding, rows_of_kinds, rule
from tracer.file.trace import Trace

HOOK_KINDS = ("hook.forward_pre", "hook.forward", "hook.backward_pre", "hook.backward")


def replica_of(trace: Trace) -> np.ndarray:
    """The ``dp.replica`` span each span ran inside (-1: none)."""
    seed = np.full(trace.n, -1, dtype=np.int64)
    replicas = rows_of_kinds(trace, ("dp.replica",))
    seed[replicas] = replicas
    return aggregate.inherit(trace.parent, trace.start_order, seed)


def thread_device(trace: Trace, row: int) -> str | None:
    """The device the thread of span ``row`` serves (a replica's sim:k), if named."""
    thread = int(trace.thread[row])
    return trace.threads[thread].device if 0 <= thread < len(trace.threads) else None


@rule(
    "shared-hook-state",
    "error",
    "a hook object called from several DataParallel replica threads rebinds its own state",
)
def shared_hook_state(trace: Trace) -> Iterator[Finding]:
    """The DeOldify bug. ``replicate`` copies a module's ``__dict__``, so every
    replica shares the hook object registered on it; a hook that stores what it
    saw (``self.stored = output``) is overwritten by whichever replica ran last,
    and the others read it. Evidence needs no error: a hook object called from
    two replicas of one ``parallel_apply`` that rebound an attribute of its own."""
    hooks = rows_of_kinds(trace, HOOK_KINDS)
    replica = replica_of(trace)[hooks] if len(hooks) else hooks
    rows = hooks[replica >= 0]
    if not len(rows):
        return
    hook_ids = trace.attr_values(rows, "hook_id", -1).astype(np.int64)
    rebinds = np.array([bool(r) for r in trace.attr_values(rows, "rebound")], dtype=bool)
    # one group per (parallel_apply, hook object): how many replica threads called
    # it there, and whether any call rebound the object's state
    applies = trace.parent[replica[replica >= 0]]
    pairs, group = np.unique(np.stack([applies, hook_ids], axis=1), axis=0, return_inverse=True)
    group = group.reshape(-1)
    per_thread = np.unique(np.stack([group, trace.thread[rows].astype(np.int64)], axis=1), axis=0)
    n_threads = np.bincount(per_thread[:, 0], minlength=len(pairs))
    rebound_any = np.bincount(group, weights=rebinds, minlength=len(pairs)) > 0
    shared = np.flatnonzero((n_threads >= 2) & rebound_any & (pairs[:, 1] >= 0))
    reported: dict[int, Finding] = {}
    for g in shared.tolist():
        apply, hook_id = int(pairs[g, 0]), int(pairs[g, 1])
        if hook_id in reported:  # one finding per hook object; count the forwards
            reported[hook_id].details["forwards"] += 1
            continue
        reported[hook_id] = _shared_hook_finding(trace, rows[group == g].tolist(), apply)
    yield from reported.values()


def _shared_hook_finding(trace: Trace, rows: list[int], apply: int) -> Finding:
    threads = sorted({int(trace.thread[r]) for r in rows})
    rebound = sorted({a for r in rows for a in trace.attrs(r).get("rebound", [])})
    attrs = trace.attrs(rows[0])
    devices = sorted({d for r in rows if (d := thread_device(trace, r)) is not None})
    return Finding(
        rule="shared-hook-state",
        severity="error",
        message=(
            f"hook {attrs.get('hook')} on {attrs.get('module')} is one object shared by "
            f"{len(threads)} DataParallel replicas ({', '.join(devices) or 'threads'}) and "
            f"rebinds {', '.join(rebound)} on every call: each replica overwrites what the "
            "others stored, and reads another device's tensor"
        ),
        evidence=[*rows, apply] if apply >= 0 else rows,
        fix=(
            "Keep one value per replica: store it in a threading.local() or a dict keyed "
            "by the output's device (self.stored[output.device] = output) and read it the "
            "same way (samples/dataparallel_hooks.py --variant fixed)."
        ),
        details={
            "hook": attrs.get("hook"),
            "module": attrs.get("module"),
            "source": attrs.get("source"),
            "rebound": rebound,
            "devices": devices,
            "threads": [trace.threads[t].label for t in threads],
            "forwards": 1,
        },
    )


@rule(
    "deprecated-backward-hook",
    "warning",
    "a hook registered with register_backward_hook (not the full backward hook)",
)
def deprecated_backward_hook(trace: Trace) -> Iterator[Finding]:
    """``register_backward_hook`` hooks the last autograd node of the forward,
    so for a module of several operations it sees the wrong grad_input; torch
    deprecates it. One finding per hook object, pointing at its first call."""
    seen: set[int] = set()
    rows = rows_of_kinds(trace, ("hook.backward",))
    legacy = rows[trace.attr_values(rows, "legacy", False).astype(bool)] if len(rows) else rows
    for row in legacy.tolist():
        attrs = trace.attrs(row)
        if not attrs.get("legacy") or attrs.get("hook_id") in seen:
            continue
        seen.add(attrs.get("hook_id"))
        yield Finding(
            rule="deprecated-backward-hook",
            severity="warning",
            message=(
                f"hook {attrs.get('hook')} on {attrs.get('module')} was registered with the "
                "deprecated register_backward_hook: its grad_input is the gradient of the "
                "module's last operation only, not of the module's inputs"
            ),
            evidence=[row],
            fix="Register it with module.register_full_backward_hook(hook) instead.",
            details={
                "hook": attrs.get("hook"),
                "module": attrs.get("module"),
                "source": attrs.get("source"),
            },
        )
