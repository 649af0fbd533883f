"""Rules about module hooks: state shared by DataParallel replicas, deprecated hooks."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

import numpy as np

from tracer.analyze import aggregate
from tracer.analyze.check import Finding, rule
from tracer.file.trace import Trace

HOOK_KINDS = ("hook.forward_pre", "hook.forward", "hook.backward_pre", "hook.backward")


def _rows_of_kinds(trace: Trace, kinds: tuple[str, ...]) -> np.ndarray:
    codes = [c for c in (trace.code(k) for k in kinds) if c >= 0]
    return np.flatnonzero(np.isin(trace.kind, codes)) if codes else np.empty(0, dtype=np.int64)


def replica_of(trace: Trace) -> np.ndarray:
    """The ``dp.replica`` span each span ran inside (-1: none)."""
    seed = np.full(trace.n, -1, dtype=np.int64)
    replicas = _rows_of_kinds(trace, ("dp.replica",))
    seed[replicas] = replicas
    return aggregate.inherit(trace.parent, trace.start_order, seed)


def _device(trace: Trace, row: int) -> str | None:
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
    hooks = _rows_of_kinds(trace, HOOK_KINDS)
    if not len(hooks):
        return
    replica = replica_of(trace)[hooks]
    inside = hooks[replica >= 0]
    calls: dict[tuple[int, int], list[int]] = defaultdict(list)  # (parallel_apply, hook) -> rows
    for row, rep in zip(inside.tolist(), replica[replica >= 0].tolist()):
        hook_id = trace.attrs(row).get("hook_id")
        if hook_id is not None:
            calls[(int(trace.parent[rep]), hook_id)].append(row)
    reported: dict[int, Finding] = {}
    for (apply, hook_id), rows in calls.items():
        threads = {int(trace.thread[r]) for r in rows}
        rebound = sorted({a for r in rows for a in trace.attrs(r).get("rebound", [])})
        if len(threads) < 2 or not rebound:
            continue
        if hook_id in reported:  # one finding per hook object; count the forwards
            reported[hook_id].details["forwards"] += 1
            continue
        attrs = trace.attrs(rows[0])
        devices = sorted({d for r in rows if (d := _device(trace, r)) is not None})
        reported[hook_id] = Finding(
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
                "threads": [trace.threads[t].label for t in sorted(threads)],
                "forwards": 1,
            },
        )
    yield from reported.values()


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
    for row in _rows_of_kinds(trace, ("hook.backward",)).tolist():
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
