"""One ``DataParallel`` call: scatter -> replicas (a cluster per device) -> gather,
and in backward the replicas' gradients summed back (``dp.reduce_add``).

Reads the ``dp.*`` spans of DESIGN.md -- ``dp.scatter``, ``dp.replicate``,
``dp.broadcast``, ``dp.parallel_apply``, ``dp.replica`` (attribute
``device``), ``dp.gather`` and backward's ``dp.reduce_add`` (attribute
``sizes``: bytes from each device) -- and whatever attributes they carry: tensor
shapes are recognised by their form (a list of ints, ``{"shape": ...}``, or a
list of those per device), not by agreed key names, so a missing or renamed
attribute only removes a label. Calls are delimited by time within a
process (a call ends at its ``dp.gather``), so the graph does not depend on
how spans nest either; a ``dp.reduce_add`` belongs to the call gathered
before it. Inside each replica, its direct callees and every
hook it ran are shown; a replica that failed is red with its error.
"""

from __future__ import annotations

import os
from collections import Counter

import networkx as nx
import numpy as np

from tracer.file.trace import Trace
from tracer.graphs.prune import keep_top, note_left_out
from tracer.graphs.render import ALERT, TIMES, fmt_bytes, fmt_ns, kind_color, label, short, wrap
from tracer.graphs.select import subtree_mask

DP_KINDS = (
    "dp.scatter",
    "dp.replicate",
    "dp.broadcast",
    "dp.parallel_apply",
    "dp.replica",
    "dp.gather",
)
BACKWARD_KINDS = ("dp.reduce_add",)
"""Spans of a call's backward: they come after its gather."""


def _is_shape(v: object) -> bool:
    return isinstance(v, list) and all(isinstance(x, int) for x in v)


def shape_text(v: object) -> str | None:
    """``[4, 3]``; ``{"shape": [4, 3], ...}``; several tensors joined with ``, ``."""
    if _is_shape(v):
        return str(v)
    if isinstance(v, dict) and _is_shape(v.get("shape")):
        return str(v["shape"])
    if isinstance(v, (list, tuple)) and v:
        parts = [shape_text(x) for x in v]
        if all(parts):
            return ", ".join(parts)  # type: ignore[arg-type]
    return None


def _pick(attrs: dict, hints: tuple[str, ...]) -> str | None:
    """The first shape-like attribute whose key mentions one of ``hints``."""
    for hint in hints:
        for key, value in attrs.items():
            if hint in key.lower():
                text = shape_text(value)
                if text:
                    return text
    return None


def _device_values(attrs: dict, devices: list[str], hints: tuple[str, ...]) -> list | None:
    """One raw value per replica: a list in replica order, or a dict keyed by device."""
    n = len(devices)
    for hint in hints:
        for key, value in attrs.items():
            if hint not in key.lower():
                continue
            if isinstance(value, dict) and n and all(d in value for d in devices):
                values = [value[d] for d in devices]
            elif isinstance(value, list) and len(value) == n and n > 1:
                values = value
            else:
                continue
            if all(shape_text(v) for v in values):
                return values
    return None


def _per_device(attrs: dict, devices: list[str], hints: tuple[str, ...]) -> list[str] | None:
    """A shape label per replica (what scatter sent it, what gather took from it)."""
    values = _device_values(attrs, devices, hints)
    return [shape_text(v) for v in values] if values else None  # type: ignore[misc]


def _joined(values: list, dim: object) -> str | None:
    """The batch before scatter: per-device chunks joined along ``dim``."""
    shapes = [v if _is_shape(v) else v[0] if len(v) == 1 and _is_shape(v[0]) else None
              for v in values]  # fmt: skip
    if not isinstance(dim, int) or any(s is None for s in shapes):
        return None
    if len({len(s) for s in shapes}) != 1 or not -len(shapes[0]) <= dim < len(shapes[0]):
        return None
    total = list(shapes[0])
    total[dim] = sum(s[dim] for s in shapes)
    return str(total)


def dp_calls(trace: Trace, mask: np.ndarray) -> list[list[int]]:
    """The ``dp.*`` rows of each DataParallel call, in time order (a call ends at gather;
    its backward's reductions, after the gather, join it)."""
    codes = [c for c in map(trace.code, DP_KINDS + BACKWARD_KINDS) if c >= 0]
    rows = np.flatnonzero(mask & np.isin(trace.kind, codes)) if codes else np.zeros(0, int)
    rows = rows[np.lexsort((trace.start_ns[rows], trace.part[rows]))]
    gather = trace.code("dp.gather")
    backward = [c for c in map(trace.code, BACKWARD_KINDS) if c >= 0]
    calls: list[list[int]] = []
    open_by_part: dict[int, list[int]] = {}
    gathered: dict[int, list[int]] = {}  # the last call of each part that gathered
    for row in rows.tolist():
        part = int(trace.part[row])
        current = open_by_part.setdefault(part, [])
        if trace.kind[row] in backward and not current and part in gathered:
            gathered[part].append(row)
            continue
        current.append(row)
        if trace.kind[row] == gather:
            calls.append(current)
            gathered[part] = current
            open_by_part[part] = []
    calls += [c for c in open_by_part.values() if c]  # a call that never gathered (it failed)
    return sorted(calls, key=lambda c: int(trace.start_ns[c[0]]))


def _replica_inside(trace: Trace, row: int, limit: int) -> list[tuple[str, str, int, int, bool]]:
    """(kind, name, calls, ns, is_hook) of a replica's direct callees and its hooks."""
    sub = subtree_mask(trace, [row])
    sub[row] = False
    direct = np.flatnonzero(sub & (trace.parent == row))
    hooks = np.flatnonzero(
        sub & np.isin(trace.kind, [trace.code(k) for k in ("hook.forward", "hook.forward_pre")])
    )
    found: Counter = Counter()
    time: Counter = Counter()
    for r in np.concatenate([direct, hooks]).tolist():
        key = (trace.kind_of(r), trace.name_of(r))
        found[key] += 1
        time[key] += int(trace.dur_ns[r])
    ranked = sorted(found, key=lambda k: -time[k])[:limit]
    return [(k, n, found[(k, n)], time[(k, n)], k.startswith("hook.")) for k, n in ranked]


def _device_of(trace: Trace, row: int, attrs: dict, index: int) -> str:
    thread = int(trace.thread[row])
    device = attrs.get("device")
    if device is None and thread >= 0:
        device = trace.threads[thread].device
    return str(device) if device is not None else f"replica {index}"


def _add_host(graph: nx.DiGraph, trace: Trace, one: dict, host_label: str) -> None:
    """scatter, replicate, broadcast, parallel_apply and gather: the host thread's steps."""
    for kind, row in one.items():
        if row is None or kind == "dp.replica":
            continue
        attrs = trace.attrs(row)
        extra = [fmt_bytes(attrs["bytes"])] if isinstance(attrs.get("bytes"), int) else []
        graph.add_node(
            kind,
            type=kind,
            row=row,
            attrs=attrs,
            duration_ns=int(trace.dur_ns[row]),
            thread=host_label,
            label=label(kind.removeprefix("dp."), fmt_ns(trace.dur_ns[row]), *extra),
            fillcolor=kind_color(kind),
        )
    if "dp.replicate" in graph and "dp.broadcast" in graph:
        graph.add_edge("dp.replicate", "dp.broadcast")


def _add_replica(graph: nx.DiGraph, trace: Trace, row: int, i: int, limit: int) -> tuple:
    """One replica in its device cluster, with what ran inside it; returns its node."""
    attrs = trace.attrs(row)
    device = _device_of(trace, row, attrs, i)
    cid = f"device {device}"
    graph.graph["clusters"][cid] = {"label": cid, "color": "#1f77b4"}
    thread = int(trace.thread[row])
    thread_label = trace.threads[thread].label if thread >= 0 else "?"
    error = attrs.get("error")
    node = ("replica", device)
    graph.add_node(
        node,
        type="replica",
        row=row,
        attrs=attrs,
        device=device,
        thread=thread_label,
        error=error,
        duration_ns=int(trace.dur_ns[row]),
        cluster=cid,
        label=label(
            f"replica {attrs.get('index', i)}",
            thread_label,
            fmt_ns(trace.dur_ns[row]),
            *(wrap(f"error: {error}") if error else []),
        ),
        fillcolor="#ffcdd2" if error else kind_color("dp.replica"),
        color=ALERT if error else None,
        penwidth="2.5" if error else None,
    )
    for kind, name, count, ns, is_hook in _replica_inside(trace, row, limit):
        inner = ("inside", device, kind, name)
        graph.add_node(
            inner,
            type="inside",
            kind=kind,
            name=name,
            count=count,
            time_ns=ns,
            cluster=cid,
            label=label(short(name, 36), f"{kind} {TIMES}{count}", fmt_ns(ns)),
            fillcolor=kind_color(kind),
            fontsize="9",
        )
        graph.add_edge(node, inner, style="dotted" if is_hook else None)
    return node


def _connect(graph: nx.DiGraph, node: tuple, shape_in: str | None, shape_out: str | None) -> None:
    """A replica's edges: scattered input, module copy, launch, gathered output."""
    if "dp.scatter" in graph:
        graph.add_edge("dp.scatter", node, type="scatter", shape=shape_in, label=shape_in)
    if "dp.broadcast" in graph or "dp.replicate" in graph:
        src = "dp.broadcast" if "dp.broadcast" in graph else "dp.replicate"
        graph.add_edge(src, node, type="replicate", label="module copy", style="dashed")
    if "dp.parallel_apply" in graph:
        graph.add_edge("dp.parallel_apply", node, type="launch", style="dotted")
    if "dp.gather" in graph:
        graph.add_edge(node, "dp.gather", type="gather", shape=shape_out, label=shape_out)


def _add_ends(graph: nx.DiGraph, scatter_attrs: dict, gather_attrs: dict, devices: list) -> None:
    """The batch going in and the result coming out, with shapes when they are known."""
    shape = _pick(scatter_attrs, ("input",))
    if shape is None and (chunks := _device_values(scatter_attrs, devices, ("chunk", "shape"))):
        shape = _joined(chunks, scatter_attrs.get("dim", 0))
    if "dp.scatter" in graph and shape:
        graph.add_node("input", type="input", label=label("input", shape), shape="ellipse")
        graph.add_edge("input", "dp.scatter", label=shape)
    if "dp.gather" in graph:
        out = _pick(gather_attrs, ("out", "result", "shape"))
        where = next((gather_attrs[k] for k in ("target_device", "target", "device")
                      if k in gather_attrs), None)  # fmt: skip
        graph.add_node("output", type="output", label=label("output", out, where), shape="ellipse")
        graph.add_edge("dp.gather", "output", label=out)


def _add_reductions(graph: nx.DiGraph, trace: Trace, rows: list[int], host_label: str) -> None:
    """Backward: each broadcast group's gradients, one edge from every replica's device."""
    for i, row in enumerate(rows):
        attrs = trace.attrs(row)
        node = ("reduce_add", i)
        size = attrs.get("bytes")
        graph.add_node(
            node,
            type="reduce_add",
            row=row,
            attrs=attrs,
            duration_ns=int(trace.dur_ns[row]),
            thread=host_label,
            label=label(
                "reduce_add (backward)",
                f"{attrs.get('tensors', '?')} tensors -> {attrs.get('destination', '?')}",
                fmt_ns(trace.dur_ns[row]),
                *([fmt_bytes(size)] if isinstance(size, int) else []),
            ),
            fillcolor=kind_color("dp.reduce_add"),
        )
        sizes = attrs.get("sizes") if isinstance(attrs.get("sizes"), dict) else {}
        for device in attrs.get("devices") or list(sizes):
            src = ("replica", device)
            if src not in graph:
                continue
            n = sizes.get(device)
            text = f"grads {fmt_bytes(n)}" if isinstance(n, int) else "grads"
            graph.add_edge(src, node, type="reduce", label=text, style="dashed")


def build(
    trace: Trace, mask: np.ndarray | None = None, *, top: int | None = 40, min_time_ns: int = 0
) -> nx.DiGraph:
    """The last DataParallel call among the selected spans (``--step`` picks another)."""
    mask = np.ones(trace.n, dtype=bool) if mask is None else mask
    graph = nx.DiGraph(
        title=f"DataParallel: {os.path.basename(trace.path)}", rankdir="LR", clusters={}
    )
    calls = dp_calls(trace, mask)
    if not calls:
        graph.graph["note"] = "no dp.* spans in the selection (DataParallel was not called)"
        note_left_out(graph, "DataParallel calls", keep_top(np.zeros(0), top))
        return graph
    rows = calls[-1]
    kinds = {r: trace.kind_of(r) for r in rows}
    one = {k: next((r for r in rows if kinds[r] == k), None) for k in DP_KINDS}
    replicas = [r for r in rows if kinds[r] == "dp.replica"]
    host = int(trace.thread[rows[0]])
    host_label = trace.threads[host].label if host >= 0 else "?"
    _add_host(graph, trace, one, host_label)
    scatter_attrs = trace.attrs(one["dp.scatter"]) if one["dp.scatter"] is not None else {}
    gather_attrs = trace.attrs(one["dp.gather"]) if one["dp.gather"] is not None else {}
    n = len(replicas)
    devices = [_device_of(trace, row, trace.attrs(row), i) for i, row in enumerate(replicas)]
    scattered = _per_device(scatter_attrs, devices, ("chunk", "shape", "output", "input", ""))
    gathered = _per_device(gather_attrs, devices, ("shape", "input", "output", ""))
    limit = max(2, (top or 40) // max(n, 1) - 2)  # inner nodes per replica
    for i, row in enumerate(replicas):
        node = _add_replica(graph, trace, row, i, limit)
        attrs = graph.nodes[node]["attrs"]
        shape_in = (scattered[i] if scattered else None) or _pick(attrs, ("in", "shape"))
        shape_out = (gathered[i] if gathered else None) or _pick(attrs, ("out",))
        _connect(graph, node, shape_in, shape_out)
    _add_ends(graph, scatter_attrs, gather_attrs, devices)
    _add_reductions(graph, trace, [r for r in rows if kinds[r] == "dp.reduce_add"], host_label)
    note_left_out(graph, "DataParallel calls", keep_top(np.ones(len(calls)), 1))
    graph.graph["note"] = f"call {len(calls)} of {len(calls)}, host thread {host_label}" + (
        "; --step N shows another" if len(calls) > 1 else ""
    )
    return graph
