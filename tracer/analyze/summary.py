"""Totals of a trace: per kind, top spans by self and inclusive time, lanes.

Aggregation groups spans by (kind, name) with numba loops over the columns;
nothing here walks spans one by one in Python.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from tracer.analyze import aggregate
from tracer.analyze.scope import aside_mask, aside_totals
from tracer.file.errors import one_line
from tracer.file.trace import Trace


def _group_totals(trace: Trace, key: np.ndarray, rows: np.ndarray) -> list[dict[str, Any]]:
    """count, inclusive and self time per distinct value of ``key`` over ``rows``."""
    uniq, inverse = np.unique(key[rows], return_inverse=True)
    inverse = inverse.astype(np.int64).reshape(-1)
    counts = np.bincount(inverse, minlength=len(uniq))
    incl = aggregate.sum_by(inverse, trace.dur_ns[rows], len(uniq))
    own = aggregate.sum_by(inverse, trace.self_ns[rows], len(uniq))
    return [
        {"key": int(k), "count": int(c), "incl_ns": int(i), "self_ns": int(s)}
        for k, c, i, s in zip(uniq, counts, incl, own)
    ]


def summarize(trace: Trace, top: int = 15, include_imports: bool = False) -> dict[str, Any]:
    """The summary as plain data (what ``--json`` prints). Imports and numba
    compilations stand aside (their own line) unless ``include_imports``."""
    strings = trace.strings
    aside = aside_mask(trace)
    rows = np.arange(trace.n) if include_imports else np.flatnonzero(~aside)
    kinds = [
        {"kind": str(strings[g.pop("key")]), **g} for g in _group_totals(trace, trace.kind, rows)
    ]
    kinds.sort(key=lambda g: -g["self_ns"])
    pair = (trace.kind.astype(np.int64) << 32) | trace.name.astype(np.int64)
    spans = []
    for g in _group_totals(trace, pair, rows):
        key = g.pop("key")
        spans.append({"kind": str(strings[key >> 32]), "name": str(strings[key & 0xFFFFFFFF]), **g})
    wall = int(trace.end_ns.max() - trace.start_ns.min()) if trace.n else 0
    paths = call_paths(trace, None if include_imports else ~aside)
    lanes = np.bincount(trace.thread[trace.thread >= 0], minlength=len(trace.threads))
    return {
        "file": trace.path,
        "spans": int(trace.n),
        "wall_ns": wall,
        # older traces have no such key: they always recorded backward spans
        "backward_spans": trace.meta.get("backward_spans", "yes") != "no",
        # record --sim-devices: which devices were simulated, not GPUs
        "sim_devices": [d for d in trace.meta.get("sim_devices", "").split(",") if d],
        "imports": {**aside_totals(trace, aside), "included": include_imports},
        "kinds": kinds,
        "top_self": sorted(spans, key=lambda g: -g["self_ns"])[:top],
        "top_inclusive": sorted(spans, key=lambda g: -g["incl_ns"])[:top],
        "top_paths": sorted(paths, key=lambda g: -g["incl_ns"])[:top],
        "processes": [
            {"pid": p.pid, "role": p.role, "index": p.role_index, "status": p.status}
            for p in trace.processes
        ],
        "threads": [
            {
                "pid": trace.processes[_part_pos(trace, t.part)].pid,
                "tid": t.tid,
                "name": t.name,
                "device": t.device,
                "spans": int(lanes[t.row]),
            }
            for t in trace.threads
        ],
        "findings": len(trace.findings),
        "warnings": trace.warnings,
    }


def call_paths(trace: Trace, keep: np.ndarray | None = None) -> list[dict[str, Any]]:
    """Spans merged by call path (the same layer in every step is one entry);
    ``keep``: only these rows count (a path none of them reaches is left out)."""
    if trace.n == 0:
        return []
    path, path_parent, path_kind, path_name = aggregate.call_paths(
        trace.parent, trace.kind, trace.name, trace.start_order
    )
    n_paths = len(path_parent)
    rows = np.arange(trace.n) if keep is None else np.flatnonzero(keep)
    counts = np.bincount(path[rows], minlength=n_paths)
    incl = aggregate.sum_by(path[rows], trace.dur_ns[rows], n_paths)
    own = aggregate.sum_by(path[rows], trace.self_ns[rows], n_paths)
    labels: list[str] = []
    for p in range(n_paths):  # parents are numbered before their children
        label = f"{trace.strings[path_kind[p]]}:{trace.strings[path_name[p]]}"
        parent = path_parent[p]
        labels.append(label if parent < 0 else f"{labels[parent]} > {label}")
    return [
        {
            "path": labels[p],
            "count": int(counts[p]),
            "incl_ns": int(incl[p]),
            "self_ns": int(own[p]),
        }
        for p in range(n_paths)
        if counts[p]
    ]


def _part_pos(trace: Trace, part: int) -> int:
    return next(i for i, p in enumerate(trace.processes) if p.part == part)


def _ms(ns: int) -> str:
    return f"{ns / 1e6:10.3f}"


def render_text(summary: dict[str, Any]) -> str:
    """The summary as a terminal report."""
    out = [
        f"trace {summary['file']}: {summary['spans']:,} spans over "
        f"{summary['wall_ns'] / 1e6:.3f} ms",
        "",
        f"{'kind':<24}{'count':>10}{'incl ms':>11}{'self ms':>11}",
    ]
    if not summary["backward_spans"]:
        out[1:1] = ["recorded with --no-backward-spans: no module.backward spans", ""]
    if summary.get("sim_devices"):
        out[1:1] = [
            f"simulated devices: {', '.join(summary['sim_devices'])} (--sim-devices: "
            "torch.nn.DataParallel ran on the CPU, not on GPUs)",
            "",
        ]
    imports = summary["imports"]
    if imports["spans"] and not imports["included"]:
        out[1:1] = [
            f"imports and compilations: {imports['top_level']:,} at top level, "
            f"{imports['spans']:,} spans, {imports['incl_ns'] / 1e6:.3f} ms; left out below "
            "(--include-imports; the Imports view and graph --kind imports show them)",
            "",
        ]
    out += [
        f"{k['kind']:<24}{k['count']:>10,}{_ms(k['incl_ns'])} {_ms(k['self_ns'])}"
        for k in summary["kinds"]
    ]
    for title, key in (
        ("top by self time", "top_self"),
        ("top by inclusive time", "top_inclusive"),
    ):
        out += ["", f"{title:<46}{'count':>8}{'incl ms':>11}{'self ms':>11}"]
        for s in summary[key]:
            label = f"{s['kind']} {s['name']}"
            label = label if len(label) <= 45 else label[:44] + "…"
            out.append(f"{label:<46}{s['count']:>8,}{_ms(s['incl_ns'])} {_ms(s['self_ns'])}")
    out += ["", f"{'hottest call paths, merged across steps':<65}{'count':>8}{'incl ms':>11}"]
    for s in summary["top_paths"]:
        label = s["path"] if len(s["path"]) <= 64 else "…" + s["path"][-63:]
        out.append(f"{label:<65}{s['count']:>8,}{_ms(s['incl_ns'])}")
    out += ["", "processes"]
    out += [
        f"  pid {p['pid']:<8} {p['role']}{'' if p['index'] is None else ' ' + str(p['index'])}"
        f"  ({p['status']})"
        for p in summary["processes"]
    ]
    out += ["", "threads"]
    out += [
        f"  pid {t['pid']:<8} {t['name']}{'' if t['device'] is None else ' [' + t['device'] + ']'}"
        f"  {t['spans']:,} spans"
        for t in summary["threads"]
    ]
    out += [one_line(f"warning: {w}") for w in summary["warnings"]]
    return "\n".join(out)


def render_json(summary: dict[str, Any]) -> str:
    """The summary as JSON for scripts and CI."""
    return json.dumps(summary, indent=2)
