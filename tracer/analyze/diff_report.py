"""What ``torchscope diff`` prints: the alignment of ``tracer.analyze.diff`` as
plain data (the ``--json`` schema, documented in docs/diff.md) and as text,
with the time tables (per kind, per module, per step; ratios B/A)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from tracer.analyze import aggregate
from tracer.analyze.diff import CHANGES, SCHEMA_VERSION, Diff, Side
from tracer.file.errors import one_line

MODULE_KINDS = ("module.forward", "module.backward")
MARKS = {"missing": "-", "extra": "+", "reordered": "~"}


def _side(side: Side) -> dict[str, Any]:
    steps = sum(len(v) for v in side.steps.values())
    return {
        "file": side.trace.path,
        "target": side.trace.meta.get("target", "reimpl"),
        "spans": int(side.trace.n),
        "aligned_spans": side.n_kept,
        "steps": steps,
    }


def _lanes(d: Diff) -> list[dict[str, Any]]:
    out = []
    for lane in np.argsort(d.lane_rank).tolist():
        label = d.lanes[lane]
        a = int((d.a.keep & (d.a.lane == lane)).sum())
        b = int((d.b.keep & (d.b.lane == lane)).sum())
        if not a and not b:
            continue
        out.append(
            {
                "lane": label,
                "a_spans": a,
                "b_spans": b,
                "a_steps": len(d.a.steps.get(lane, [])),
                "b_steps": len(d.b.steps.get(lane, [])),
                "steps_aligned": lane in d.step_lanes,
            }
        )
    return out


def _change(d: Diff, node: int) -> dict[str, Any]:
    what = CHANGES[int(d.change[node]) - 1]
    lane, seg = d.segment_of(node)
    ra, rb = int(d.row_a[node]), int(d.row_b[node])
    return {
        "change": what,
        "lane": d.lanes[lane],
        "segment": seg,
        "step": d.step_info(lane, seg),
        "path": [d.label(p) for p in d.path(node)],
        "kind": str(d.strings[d.node_kind[node]]),
        "name": str(d.strings[d.node_name[node]]),
        "occurrence": int(d.node_occ[node]),
        "spans": int(d.size[node]) if what != "reordered" else 1,
        "a_row": ra if ra >= 0 else None,
        "b_row": rb if rb >= 0 else None,
        "a_ns": int(d.a.trace.dur_ns[ra]) if ra >= 0 else None,
        "b_ns": int(d.b.trace.dur_ns[rb]) if rb >= 0 else None,
    }


def since_segment_start(side: Side) -> np.ndarray:
    """Each row's start, counted from the start of its segment in its own trace."""
    trace = side.trace
    if trace.n == 0:
        return np.zeros(0, dtype=np.int64)
    uniq, inv = np.unique(side.segment, return_inverse=True)
    first = np.full(len(uniq), np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first, inv.reshape(-1), trace.start_ns)
    return trace.start_ns - first[inv.reshape(-1)]


def changed_nodes(d: Diff) -> np.ndarray:
    """Reported nodes in reading order: lane, step, then when they start in it
    (A's and B's changes interleaved by time since the step began)."""
    nodes = np.flatnonzero(d.change > 0)
    if not len(nodes):
        return nodes
    ra, rb = d.row_a[nodes], d.row_b[nodes]
    when = np.zeros(len(nodes), dtype=np.int64)
    for side, rows in ((d.a, ra), (d.b, rb)):
        has = rows >= 0
        if has.any():
            when[has] = since_segment_start(side)[rows[has]]
    lane, seg = d.segments(nodes)
    return nodes[np.lexsort((when, seg, d.lane_rank[lane]))]


# -- times ---------------------------------------------------------------------


def _ratio(a: int, b: int) -> float | None:
    return None if a == 0 else round(b / a, 4)


def kind_times(d: Diff) -> list[dict[str, Any]]:
    """Per kind: spans and self time in A and B, and the ratio B/A."""
    out: dict[str, dict[str, Any]] = {}
    for tag, side in (("a", d.a), ("b", d.b)):
        rows = np.flatnonzero(side.keep)
        if not len(rows):
            continue
        codes = side.kind[rows]
        uniq, inv = np.unique(codes, return_inverse=True)
        own = aggregate.sum_by(
            inv.reshape(-1).astype(np.int64), side.trace.self_ns[rows], len(uniq)
        )
        counts = np.bincount(inv.reshape(-1), minlength=len(uniq))
        for code, c, s in zip(uniq.tolist(), counts.tolist(), own.tolist()):
            entry = out.setdefault(str(d.strings[code]), _empty_times(str(d.strings[code])))
            entry[f"{tag}_count"], entry[f"{tag}_self_ns"] = int(c), int(s)
    for entry in out.values():
        entry["ratio"] = _ratio(entry["a_self_ns"], entry["b_self_ns"])
    return sorted(out.values(), key=lambda e: -max(e["a_self_ns"], e["b_self_ns"]))


def _empty_times(kind: str) -> dict[str, Any]:
    return {"kind": kind, "a_count": 0, "b_count": 0, "a_self_ns": 0, "b_self_ns": 0}


def module_times(d: Diff) -> list[dict[str, Any]]:
    """Per module path and direction: calls and inclusive time in A and B, ratio B/A."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for tag, side in (("a", d.a), ("b", d.b)):
        codes = [c for c in (d.strings.index(k) for k in MODULE_KINDS if k in d.strings)]
        rows = np.flatnonzero(side.keep & np.isin(side.kind, codes))
        if not len(rows):
            continue
        key = (side.kind[rows] << 32) | side.name[rows]
        uniq, inv = np.unique(key, return_inverse=True)
        inv = inv.reshape(-1).astype(np.int64)
        incl = aggregate.sum_by(inv, side.trace.dur_ns[rows], len(uniq))
        counts = np.bincount(inv, minlength=len(uniq))
        for k, c, t in zip(uniq.tolist(), counts.tolist(), incl.tolist()):
            kind, name = str(d.strings[k >> 32]), str(d.strings[k & 0xFFFFFFFF])
            entry = out.setdefault(
                (name, kind),
                {"module": name, "kind": kind, "a_count": 0, "b_count": 0, "a_ns": 0, "b_ns": 0},
            )
            entry[f"{tag}_count"], entry[f"{tag}_ns"] = int(c), int(t)
    for entry in out.values():
        entry["ratio"] = _ratio(entry["a_ns"], entry["b_ns"])
    return sorted(out.values(), key=lambda e: (e["module"], e["kind"]))


def step_times(d: Diff) -> list[dict[str, Any]]:
    """Per lane with steps in both traces: each step's wall time in A and B (paired
    by position), and the ratio B/A."""
    out = []
    for lane in sorted(d.step_lanes, key=lambda k: d.lane_rank[k]):
        rows_a, rows_b = d.a.steps.get(lane, []), d.b.steps.get(lane, [])
        for k, (ra, rb) in enumerate(zip(rows_a, rows_b)):
            a_ns, b_ns = int(d.a.trace.dur_ns[ra]), int(d.b.trace.dur_ns[rb])
            info = d.step_info(lane, k + 1) or {}
            out.append(
                {
                    "lane": d.lanes[lane],
                    "ordinal": k,
                    "index": info.get("index"),
                    "a_ns": a_ns,
                    "b_ns": b_ns,
                    "ratio": _ratio(a_ns, b_ns),
                }
            )
    return out


def report(d: Diff, limit: int = 1000) -> dict[str, Any]:
    """The diff as plain data (what ``--json`` prints); ``limit``: changes listed."""
    nodes = changed_nodes(d)
    warnings = [f"A: {w}" for w in d.a.trace.warnings] + [f"B: {w}" for w in d.b.trace.warnings]
    return {
        "schema": "torchscope.diff",
        "schema_version": SCHEMA_VERSION,
        "a": _side(d.a),
        "b": _side(d.b),
        "structural": d.structural,
        "counts": d.counts(),
        "lanes": _lanes(d),
        "changes": [_change(d, int(n)) for n in nodes[:limit]],
        "changes_left_out": max(0, len(nodes) - limit),
        "kinds": kind_times(d),
        "modules": module_times(d),
        "steps": step_times(d),
        "notes": d.notes,
        "warnings": warnings,
    }


def render_json(data: dict[str, Any]) -> str:
    """The report as JSON for scripts and CI."""
    return json.dumps(data, indent=2)


def _ms(ns: int | None) -> str:
    return "-" if ns is None else f"{ns / 1e6:.3f}"


def _fmt_ratio(r: float | None) -> str:
    return "-" if r is None else f"{r:.2f}x"


def step_title(change: dict[str, Any]) -> str:
    """Where a change is: its lane, and the step it is in (or before)."""
    step = change["step"]
    if step is not None:
        index = "" if step["index"] is None else f", index {step['index']}"
        where = f"step #{step['ordinal']} ({step['name']!r}{index})"
    elif change["segment"] == 0:
        where = "before the first step"
    else:
        where = f"step segment {change['segment']}"
    return f"{change['lane']}, {where}"


def _step_lines(steps: list[dict[str, Any]]) -> list[str]:
    """One line per lane: its steps' time ratios B/A, median and range."""
    out = []
    by_lane: dict[str, list[float]] = {}
    for s in steps:
        if s["ratio"] is not None:
            by_lane.setdefault(s["lane"], []).append(s["ratio"])
    for lane, ratios in by_lane.items():
        r = sorted(ratios)
        out.append(
            f"step time B/A, {lane}: median {r[len(r) // 2]:.2f}x "
            f"({r[0]:.2f}x to {r[-1]:.2f}x over {len(r)} steps)"
        )
    return ["", *out] if out else []


def render_text(data: dict[str, Any], width: int = 100, top: int = 20) -> str:
    """The report for a terminal; ``top``: modules listed, slowest first (all in JSON)."""
    a, b, c = data["a"], data["b"], data["counts"]
    out = [
        f"A {a['file']} ({a['target']}, {a['aligned_spans']:,} spans compared, {a['steps']} steps)",
        f"B {b['file']} ({b['target']}, {b['aligned_spans']:,} spans compared, {b['steps']} steps)",
        "",
    ]
    if data["structural"]:
        out.append(
            f"structure: DIFFERENT: {c['missing']} missing (A only), {c['extra']} extra "
            f"(B only), {c['reordered']} reordered; {c['aligned']:,} spans aligned"
        )
    else:
        out.append(f"structure: the same ({c['aligned']:,} spans aligned); only times differ")
    out += [f"note: {n}" for n in data["notes"]]
    out += ["", f"{'lane':<44}{'A spans':>9}{'B spans':>9}{'A steps':>9}{'B steps':>9}"]
    for lane in data["lanes"]:
        out.append(
            f"{lane['lane'][:43]:<44}{lane['a_spans']:>9,}{lane['b_spans']:>9,}"
            f"{lane['a_steps']:>9}{lane['b_steps']:>9}"
        )
    title = None
    for change in data["changes"]:
        if step_title(change) != title:
            title = step_title(change)
            out += ["", title]
        label = change["path"][-1]
        spans = f" ({change['spans']} spans)" if change["spans"] > 1 else ""
        out.append(f"  {MARKS[change['change']]} {change['change']:<10}{label}{spans}")
        if len(change["path"]) > 1:
            path = " > ".join(change["path"][:-1])
            out.append(
                f"      in {path if len(path) <= width - 9 else '…' + path[-(width - 10) :]}"
            )
    if data["changes_left_out"]:
        out.append(f"  ... and {data['changes_left_out']:,} more (--limit)")
    out += _step_lines(data["steps"])
    out += [
        "",
        f"{'time per kind (self)':<28}{'A n':>8}{'A ms':>11}{'B n':>8}{'B ms':>11}{'B/A':>8}",
    ]
    for k in data["kinds"]:
        out.append(
            f"{k['kind'][:27]:<28}{k['a_count']:>8,}{_ms(k['a_self_ns']):>11}{k['b_count']:>8,}"
            f"{_ms(k['b_self_ns']):>11}{_fmt_ratio(k['ratio']):>8}"
        )
    if data["modules"]:
        modules = sorted(data["modules"], key=lambda m: -max(m["a_ns"], m["b_ns"]))
        shown = modules[:top]
        title = "time per module (inclusive)"
        if len(modules) > top:
            title += f", top {top} of {len(modules)}"
        out += ["", f"{title:<44}{'A ms':>11}{'B ms':>11}{'B/A':>8}"]
        for m in shown:
            label = f"{m['module']} {m['kind'].split('.')[-1]}"
            out.append(
                f"{label[:43]:<44}{_ms(m['a_ns']):>11}{_ms(m['b_ns']):>11}{_fmt_ratio(m['ratio']):>8}"
            )
    out += [one_line(f"warning: {w}") for w in data["warnings"]]
    return "\n".join(out)
