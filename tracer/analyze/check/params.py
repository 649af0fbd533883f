"""Rules about which parameters an optimizer updates: left out, or never given a gradient.

Evidence: each ``optim.step`` span's ``id`` (the optimizer), ``no_grad`` (the
indices of its params that required grad but had none at the step) and, once
per optimizer, ``param_names`` (``[index, root key, name]``: where each param
sits in the traced models); and the ``module`` structure snapshots, which list
each module's parameters with ``requires_grad`` under the same root keys
(reimpl/optim/optimizer.py, reimpl/nn/modules/module.py).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import numpy as np

from tracer.analyze.check import Finding, rows_of_kinds, rule
from tracer.file.trace import Trace

SHOWN = 6  # parameter names spelled out in a message; details list them all


def _steps_by_part(trace: Trace) -> dict[int, list[int]]:
    """``optim.step`` rows per process, in start order (only steps with evidence)."""
    rows = rows_of_kinds(trace, ("optim.step",))
    rows = rows[np.argsort(trace.start_ns[rows], kind="stable")]
    ids = trace.attr_values(rows, "id")
    out: dict[int, list[int]] = defaultdict(list)
    for row, oid in zip(rows.tolist(), ids.tolist()):
        if oid is not None:
            out[int(trace.part[row])].append(row)
    return out


def _names(trace: Trace, steps: list[int]) -> dict[int, list[tuple[str, str]]]:
    """Optimizer id -> per param index, the (root key, name) places recorded for it."""
    out: dict[int, dict[int, list[tuple[str, str]]]] = defaultdict(lambda: defaultdict(list))
    for row in steps:
        attrs = trace.attrs(row)
        for index, key, name in attrs.get("param_names") or []:
            place = (str(key), str(name))
            if place not in out[attrs["id"]][int(index)]:
                out[attrs["id"]][int(index)].append(place)
    return out  # type: ignore[return-value]


def _listed(names: list[str]) -> str:
    more = f" and {len(names) - SHOWN} more" if len(names) > SHOWN else ""
    return ", ".join(names[:SHOWN]) + more


def _structures(trace: Trace, part: int) -> dict[str, dict[str, Any]]:
    """The latest structure snapshot of each root model of one process."""
    latest: dict[str, dict[str, Any]] = {}
    for snap in sorted(trace.snapshots, key=lambda s: s["t_ns"]):
        if snap["kind"] == "module" and snap["part"] == part:
            latest[snap["key"]] = snap["payload"]
    return latest


def _trainable(payload: dict[str, Any]) -> dict[str, str]:
    """Full name (as ``named_parameters`` gives it) -> owning module path, for
    every parameter that requires grad."""
    out: dict[str, str] = {}
    for i, module in enumerate(payload.get("modules", [])):
        path = module.get("path", "")
        for p in module.get("parameters", []):
            if p.get("requires_grad"):
                out[p["name"] if i == 0 else f"{path}.{p['name']}"] = path
    return out


def _first_forward(trace: Trace, part: int, path: str) -> int | None:
    code = trace.code(path)
    if code < 0:
        return None
    rows = np.flatnonzero(
        (trace.name == code) & (trace.kind == trace.code("module.forward")) & (trace.part == part)
    )
    return int(rows[np.argmin(trace.start_ns[rows])]) if len(rows) else None


@rule(
    "param-not-optimized",
    "warning",
    "a parameter that requires grad is in no optimizer, though others of its model are",
)
def param_not_optimized(trace: Trace) -> Iterator[Finding]:
    """A parameter group that forgot a submodule, a layer added or replaced after
    the optimizer was built: the layer gets gradients and never changes. Only
    models with at least one optimized parameter are checked (a teacher or a
    frozen copy no optimizer touches is left out), and ``requires_grad`` is as
    the model's latest structure snapshot saw it."""
    for part, steps in _steps_by_part(trace).items():
        optimized: dict[str, set[str]] = defaultdict(set)
        for places in _names(trace, steps).values():
            for index_places in places.values():
                for key, name in index_places:
                    optimized[key].add(name)
        structures = _structures(trace, part)
        for key, names in optimized.items():
            payload = structures.get(key)
            if payload is None:
                continue
            trainable = _trainable(payload)
            left_out = [n for n in trainable if n not in names]
            if left_out:
                yield _not_optimized(trace, part, key, payload, left_out, trainable, steps[0])


def _not_optimized(
    trace: Trace,
    part: int,
    key: str,
    payload: dict[str, Any],
    left_out: list[str],
    trainable: dict[str, str],
    step: int,
) -> Finding:
    modules = list(dict.fromkeys(trainable[n] for n in left_out))
    forward = _first_forward(trace, part, modules[0])
    root = payload.get("root", key.split("@")[0])
    return Finding(
        rule="param-not-optimized",
        severity="warning",
        message=(
            f"{len(left_out)} parameter(s) of {root} require grad but no optimizer updates "
            f"them: {_listed(left_out)} (module{'s' if len(modules) > 1 else ''} "
            f"{_listed(modules)}); they get gradients and never change"
        ),
        evidence=([forward] if forward is not None else []) + [step],
        fix=(
            "Give them to the optimizer (a param group that lists every submodule, or "
            "model.parameters() after the model is complete), or freeze them on purpose "
            "with p.requires_grad_(False)."
        ),
        details={"model": root, "parameters": left_out, "modules": modules},
    )


@rule(
    "grad-never-computed",
    "warning",
    "a parameter an optimizer updates never had a gradient at any of its steps",
)
def grad_never_computed(trace: Trace) -> Iterator[Finding]:
    """A layer the forward never uses (a typo, a branch never taken), or whose
    output was detached or computed under ``no_grad``: the optimizer holds it,
    it requires grad, and at every step of the run its ``.grad`` was None.
    Parameters that do not require grad (frozen on purpose) are not counted."""
    for steps in _steps_by_part(trace).values():
        names = _names(trace, steps)
        by_optimizer: dict[int, list[int]] = defaultdict(list)
        for row in steps:
            by_optimizer[trace.attrs(row)["id"]].append(row)
        for oid, mine in by_optimizer.items():
            never: set[int] | None = None
            for row in mine:
                missing = set(trace.attrs(row).get("no_grad") or [])
                never = missing if never is None else never & missing
            if never:
                yield _never_computed(trace, mine, sorted(never), names.get(oid, {}))


def _never_computed(
    trace: Trace, steps: list[int], never: list[int], places: dict[int, list[tuple[str, str]]]
) -> Finding:
    roots = {key for index_places in places.values() for key, _ in index_places}
    several = len(roots) > 1

    def name(index: int) -> str:
        if not places.get(index):
            return f"param[{index}]"
        key, n = places[index][0]
        return f"{key.split('@')[0]}.{n}" if several else n

    named = [name(i) for i in never]
    optimizer = trace.name_of(steps[0]).removesuffix(".step")
    first = places.get(never[0])
    module = first[0][1].rpartition(".")[0] or first[0][0].split("@")[0] if first else None
    forward = _first_forward(trace, int(trace.part[steps[0]]), module) if module else None
    return Finding(
        rule="grad-never-computed",
        severity="warning",
        message=(
            f"{len(named)} parameter(s) that {optimizer} updates never had a gradient in "
            f"{len(steps)} step(s): {_listed(named)}; the forward never used them, or used "
            "them under no_grad or through a detached tensor"
        ),
        evidence=([forward] if forward is not None else [])
        + ([steps[0], steps[-1]] if len(steps) > 1 else [steps[0]]),
        fix=(
            "Make the forward use the layer (or delete it), or stop detaching its output; "
            "to freeze it on purpose, call p.requires_grad_(False)."
        ),
        details={
            "optimizer": optimizer,
            "parameters": named,
            "indices": never,
            "steps": len(steps),
        },
    )
