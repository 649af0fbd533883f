"""SyncBatchNorm across ranks: each rank's collectives, joined at synchronisation points.

Every rank calls the same collectives in the same order (that is what makes
them collective), so the spans sharing a group and sequence number
(``reimpl/_collectives.py``) are one synchronisation point; spans recorded
without them are matched by position (the k-th of each rank). After
``torchscope merge`` each span's ``wait_ns`` is its wait for the slowest rank.
Each rank is a cluster (processes with role ``rank``); its collectives run
down the cluster in order, and an edge from each goes to the shared point,
labelled with how long that rank waited there. The rank that waited least
is the straggler the others waited for. Ranks disagreeing on the k-th
operation (one skipped a layer: a hang in the making) are drawn in red. The
layer is the enclosing ``module.forward`` or ``module.backward`` span.
"""

from __future__ import annotations

import os

import networkx as nx
import numpy as np

from tracer.file.trace import Trace
from tracer.graphs.prune import keep_top, note_left_out
from tracer.graphs.render import ALERT, fmt_bytes, fmt_ns, kind_color, label

DEFAULT_TOP = 12  # synchronisation points: one step of a small model
_LAYER_KINDS = ("module.forward", "module.backward")


def ranks(trace: Trace, mask: np.ndarray) -> list[tuple[str, int]]:
    """(label, part) of each rank; processes with collectives when none says ``rank``."""
    with_rank = [p for p in trace.processes if p.role == "rank"]
    if with_rank:
        with_rank.sort(key=lambda p: (p.role_index is None, p.role_index or 0, p.part))
        return [(f"rank {p.role_index}", p.part) for p in with_rank]
    parts = set(np.unique(trace.part[mask & _collective_mask(trace)]).tolist())
    return [(p.label, p.part) for p in trace.processes if p.part in parts]


def _collective_mask(trace: Trace) -> np.ndarray:
    codes = [i for i, s in enumerate(trace.strings) if str(s).startswith("collective.")]
    return np.isin(trace.kind, codes)


def _layer(trace: Trace, row: int) -> tuple[str, str, str]:
    """(layer path, forward/backward, class) of the nearest enclosing module span."""
    codes = {trace.code(k): k for k in _LAYER_KINDS}
    p = int(trace.parent[row])
    while p >= 0:
        kind = codes.get(int(trace.kind[p]))
        if kind is not None:
            cls = str(trace.attrs(p).get("cls", ""))
            return trace.name_of(p), kind.removeprefix("module."), cls
        p = int(trace.parent[p])
    return "", "", ""


def sync_points(
    trace: Trace, mask: np.ndarray
) -> tuple[list[tuple[str, int]], list[list[int | None]]]:
    """The ranks and, for each, its collective rows, point by point (None: the
    rank never reached that point)."""
    found = ranks(trace, mask)
    coll = mask & _collective_mask(trace)
    per_rank: list[list[int | None]] = []
    for _label, part in found:
        rows = np.flatnonzero(coll & (trace.part == part))
        per_rank.append(rows[np.argsort(trace.start_ns[rows], kind="stable")].tolist())
    return found, _aligned(trace, per_rank)


def _aligned(trace: Trace, per_rank: list[list[int | None]]) -> list[list[int | None]]:
    """Aligns the ranks' collectives by (group, seq) when every span carries them,
    points in the order they first started; otherwise by position."""
    rows = np.array([r for line in per_rank for r in line], dtype=np.int64)
    if not len(rows):
        return per_rank
    groups, seqs = trace.attr_values(rows, "group"), trace.attr_values(rows, "seq")
    if not all(isinstance(g, str) for g in groups) or not all(isinstance(q, int) for q in seqs):
        return per_rank
    key_of = dict(zip(rows.tolist(), zip(groups.tolist(), seqs.tolist())))
    first: dict[tuple, int] = {}
    for row, key in key_of.items():
        first[key] = min(first.get(key, 1 << 62), int(trace.start_ns[row]))
    index = {key: i for i, key in enumerate(sorted(first, key=first.__getitem__))}
    out: list[list[int | None]] = []
    for line in per_rank:
        aligned: list[int | None] = [None] * len(index)
        for row in line:
            aligned[index[key_of[row]]] = row
        out.append(aligned)
    return out


def _wait(trace: Trace, row: int, attrs: dict) -> int:
    wait = attrs.get("wait_ns")
    return int(wait) if isinstance(wait, (int, float)) else int(trace.dur_ns[row])


def _collective_info(trace: Trace, row: int) -> dict:
    """What a rank did at one synchronisation point."""
    attrs = trace.attrs(row)
    layer, phase, cls = _layer(trace, row)
    return {
        "row": row,
        "op": trace.kind_of(row).removeprefix("collective."),
        "layer": layer or trace.name_of(row),  # outside any module: the span's own name
        "cls": cls,
        "phase": phase,
        "wait_ns": _wait(trace, row, attrs),
        "bytes": attrs.get("bytes"),
    }


def _add_point(graph: nx.DiGraph, k: int, present: list[tuple[str, dict]], ranks_n: int) -> None:
    """The shared node of the k-th collective: op, layer, longest wait, straggler."""
    ops = sorted({item["op"] for _, item in present})
    layers = {(item["layer"], item["phase"]) for _, item in present}
    mismatch = len(ops) > 1 or len(present) < ranks_n
    waits = [item["wait_ns"] for _, item in present]
    straggler = present[int(np.argmin(waits))][0]
    layer, phase = next(iter(layers)) if len(layers) == 1 else ("several layers", "")
    graph.add_node(
        f"sync {k}",
        type="sync",
        index=k,
        op="/".join(ops),
        layer=layer,
        phase=phase,
        max_wait_ns=int(max(waits)),
        straggler=straggler,
        mismatch=mismatch,
        label=label(
            f"#{k} {'/'.join(ops)}",
            f"{layer} ({phase})" if phase else layer,
            f"max wait {fmt_ns(max(waits))}",
            f"straggler: {straggler}" if len(present) > 1 else "",
            f"! {len(present)} of {ranks_n} ranks" if len(present) < ranks_n else "",
        ),
        shape="ellipse",
        style="filled",
        fillcolor="#ffcdd2" if mismatch else kind_color("collective"),
        color=ALERT if mismatch else None,
    )


def _add_rank_side(
    graph: nx.DiGraph, k: int, present: list[tuple[str, dict]], previous: str | None, big: int
) -> None:
    """Each rank's collective in its cluster, its wait edge, and the order edge before it."""
    longest = max(item["wait_ns"] for _, item in present)
    for rank_label, item in present:
        node = (rank_label, k)
        width = f"{1 + 3 * item['wait_ns'] / big:.2f}"
        graph.add_node(
            node,
            type="collective",
            rank=rank_label,
            **{k: item[k] for k in ("row", "op", "layer", "cls", "phase", "wait_ns", "bytes")},
            cluster=rank_label,
            label=label(
                item["op"],
                f"{item['layer']} · {item['cls']}" if item["cls"] else item["layer"],
                fmt_bytes(item["bytes"]) if isinstance(item["bytes"], int) else "",
            ),
            fillcolor=kind_color("bn") if item["phase"] != "backward" else "#efe7f7",
            penwidth=width,
        )
        graph.add_edge(
            node,
            f"sync {k}",
            type="wait",
            wait_ns=item["wait_ns"],
            label=f"wait {fmt_ns(item['wait_ns'])}",
            penwidth=width,
            color=ALERT if item["wait_ns"] == longest and len(present) > 1 else None,
        )
        if previous is not None:  # the rank goes on after the previous point: keeps the order
            graph.add_edge(previous, node, type="order", style="dotted", arrowhead="none")


def build(
    trace: Trace,
    mask: np.ndarray | None = None,
    *,
    top: int | None = DEFAULT_TOP,
    min_time_ns: int = 0,
) -> nx.DiGraph:
    """Ranks as clusters, collectives as synchronisation points (the ``top`` longest waits)."""
    mask = np.ones(trace.n, dtype=bool) if mask is None else mask
    found, per_rank = sync_points(trace, mask)
    graph = nx.DiGraph(
        title=f"SyncBatchNorm collectives: {os.path.basename(trace.path)}", clusters={}
    )
    count = max((len(r) for r in per_rank), default=0)
    if not count:
        graph.graph["note"] = "no collective.* spans on any rank in the selection"
        note_left_out(graph, "synchronisation points", keep_top(np.zeros(0), top))
        return graph
    info = [
        [None if row is None else _collective_info(trace, row) for row in rows] for rows in per_rank
    ]
    max_wait = np.array(
        [
            max((r[k]["wait_ns"] for r in info if k < len(r) and r[k]), default=0)
            for k in range(count)
        ]
    )
    kept = keep_top(max_wait, top, min_time_ns)
    chosen = sorted(kept.index.tolist())
    for rank_label, _part in found:
        graph.graph["clusters"][rank_label] = {"label": rank_label, "color": "#1f77b4"}
    previous: str | None = None
    for k in chosen:
        present = [(found[i][0], r[k]) for i, r in enumerate(info) if k < len(r) and r[k]]
        _add_point(graph, k, present, len(found))
        _add_rank_side(graph, k, present, previous, max(int(max_wait.max()), 1))
        previous = f"sync {k}"
    note_left_out(
        graph,
        "synchronisation points",
        kept,
        dropped_ns=int(max_wait.sum() - max_wait[chosen].sum()),
        extra={"ranks": [r[0] for r in found]},
    )
    return graph
