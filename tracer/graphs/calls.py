"""The aggregated call graph: one node per (lane, kind, name), edges caller -> callee.

Fifty training steps call ``features.0`` fifty times; here that is one node
with ``x50`` and the summed time, and one edge from ``features`` saying how
often and how long. Lanes are threads (inside their process), devices or
processes, drawn as clusters. Aggregation is numpy/numba over the columns,
so a million spans cost a few sorts, and only the kept nodes become Python.

Inclusive time of a node is the sum of its spans' durations: a recursive
call (the same kind and name nested in itself) is counted at every level.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import networkx as nx
import numpy as np

from tracer.analyze import aggregate
from tracer.file.trace import Trace
from tracer.graphs.prune import keep_top, note_left_out
from tracer.graphs.render import TIMES, fmt_ns, kind_color, label, short

CLUSTER_BY = ("thread", "device", "process", "none")


def _lanes(trace: Trace, cluster: str) -> tuple[np.ndarray, list[str], dict, list[str | None]]:
    """Lane of every row, each lane's label and cluster, and the cluster table."""
    if cluster not in CLUSTER_BY:
        raise ValueError(f"cluster by one of {CLUSTER_BY}, not {cluster!r}")
    clusters: dict[str, dict] = {}
    if cluster == "none":
        return np.zeros(trace.n, dtype=np.int64), [""], clusters, [None]
    procs = {p.part: p for p in trace.processes}
    if cluster == "process":
        parts = sorted(procs)
        index = np.full(max(parts, default=0) + 1, 0, dtype=np.int64)
        for i, part in enumerate(parts):
            index[part] = i
            clusters[f"p{part}"] = {"label": procs[part].label}
        return (
            index[trace.part],
            [procs[p].label for p in parts],
            clusters,
            [f"p{p}" for p in parts],
        )
    unknown = len(trace.threads)  # spans whose thread row was lost
    thread = trace.thread.astype(np.int64)
    thread[thread < 0] = unknown
    if cluster == "device":
        names = [*sorted({t.device for t in trace.threads if t.device}), ""]  # "": no device
        index = np.array(
            [names.index(t.device or "") for t in trace.threads] + [len(names) - 1],
            dtype=np.int64,
        )
        for d in names:
            clusters[f"d:{d}"] = {"label": f"device {d}" if d else "no device (host threads)"}
        return index[thread], names, clusters, [f"d:{d}" for d in names]
    # Replica threads come and go every step: threads of one process with the
    # same name and device share a lane, so fifty steps draw one replica lane.
    for p in trace.processes:
        clusters[f"p{p.part}"] = {"label": p.label, "color": "#666666"}
    lanes: dict[tuple[int, str], int] = {}
    table = np.empty(unknown + 1, dtype=np.int64)
    for t in trace.threads:
        table[t.row] = lanes.setdefault((t.part, t.label), len(lanes))
    table[unknown] = len(lanes)
    names, lane_clusters = [], []
    several = len(trace.processes) > 1
    for part, text in lanes:
        clusters[f"t{part}:{text}"] = {"label": text, "parent": f"p{part}"}
        names.append(f"{procs[part].label}: {text}" if several and part in procs else text)
        lane_clusters.append(f"t{part}:{text}")
    return table[thread], [*names, "?"], clusters, [*lane_clusters, None]


@dataclass
class Aggregated:
    """Nodes (distinct lane/kind/name) and edges (distinct caller/callee) with totals."""

    pairs: np.ndarray  # distinct (kind << 32 | name) codes
    keys: np.ndarray  # per node: lane * len(pairs) + pair index
    first: np.ndarray  # per node: a representative row (its first)
    count: np.ndarray
    incl: np.ndarray
    own: np.ndarray
    edges: np.ndarray  # per edge: caller node * n_nodes + callee node
    edge_count: np.ndarray
    edge_ns: np.ndarray


def aggregate_rows(
    trace: Trace,
    rows: np.ndarray,
    lane_of: np.ndarray,
    parent: np.ndarray | None = None,
    own: np.ndarray | None = None,
) -> Aggregated:
    """Groups ``rows`` by (lane, kind, name) and their parent links by node pair (numpy only).

    ``parent`` and ``own`` (self time) default to the trace's; the import graph
    passes import-only ancestry, so calls recorded between imports vanish.
    """
    parent_all = trace.parent if parent is None else parent
    own_all = trace.self_ns if own is None else own
    pair = (trace.kind[rows].astype(np.int64) << 32) | trace.name[rows].astype(np.int64)
    pairs, pair_of = np.unique(pair, return_inverse=True)
    key = lane_of[rows] * len(pairs) + pair_of.astype(np.int64)
    keys, first, node_of_sel = np.unique(key, return_index=True, return_inverse=True)
    node_of_sel = node_of_sel.astype(np.int64)
    n_nodes = len(keys)
    node_of = np.full(trace.n, -1, dtype=np.int64)
    node_of[rows] = node_of_sel
    parent = parent_all[rows]
    has = parent >= 0
    src = node_of[parent[has]]
    ok = src >= 0  # a parent outside the selection draws no edge
    edges, edge_of = np.unique(src[ok] * n_nodes + node_of_sel[has][ok], return_inverse=True)
    return Aggregated(
        pairs=pairs,
        keys=keys,
        first=rows[first],
        count=np.bincount(node_of_sel, minlength=n_nodes),
        incl=aggregate.sum_by(node_of_sel, trace.dur_ns[rows], n_nodes),
        own=aggregate.sum_by(node_of_sel, own_all[rows], n_nodes),
        edges=edges,
        edge_count=np.bincount(edge_of, minlength=len(edges)),
        edge_ns=aggregate.sum_by(edge_of.astype(np.int64), trace.dur_ns[rows][has][ok], len(edges)),
    )


def _add_nodes(
    graph: nx.DiGraph, trace: Trace, agg: Aggregated, kept: np.ndarray, lanes: tuple
) -> dict[int, tuple]:
    """Adds the kept nodes (and their clusters); returns node index -> networkx key."""
    lane_names, clusters, lane_cluster = lanes
    strings = trace.strings
    biggest = max(int(agg.incl[kept].max()) if len(kept) else 1, 1)
    node_ids = {}
    for i in kept.tolist():
        lane = int(agg.keys[i] // len(agg.pairs))
        k = int(agg.pairs[agg.keys[i] % len(agg.pairs)])
        kind, name = str(strings[k >> 32]), str(strings[k & 0xFFFFFFFF])
        row = int(agg.first[i])
        node_ids[i] = (lane_names[lane], kind, name)
        cid = lane_cluster[lane]
        while cid is not None:  # the lane's cluster and the process cluster around it
            graph.graph["clusters"][cid] = clusters[cid]
            cid = clusters[cid].get("parent")
        count, incl, own = int(agg.count[i]), int(agg.incl[i]), int(agg.own[i])
        graph.add_node(
            node_ids[i],
            kind=kind,
            name=name,
            lane=lane_names[lane],
            func=trace.func_of(row),
            count=count,
            incl_ns=incl,
            self_ns=own,
            cluster=lane_cluster[lane],
            label=label(
                short(name), f"{kind} {TIMES}{count:,}", f"{fmt_ns(incl)} incl · {fmt_ns(own)} self"
            ),
            fillcolor=kind_color(kind),
            penwidth=f"{1 + 2.5 * incl / biggest:.2f}",
            tooltip=f"{kind} {name}\n{trace.func_of(row)}",
        )
    return node_ids


def _add_edges(
    graph: nx.DiGraph, agg: Aggregated, node_ids: dict[int, tuple], top: int | None
) -> None:
    """Edges between kept nodes; a readable picture keeps at most 4 per kept node."""
    n_nodes = len(agg.keys)
    keep = np.zeros(n_nodes, dtype=bool)
    keep[list(node_ids)] = True
    chosen = np.flatnonzero(keep[agg.edges // n_nodes] & keep[agg.edges % n_nodes])
    if top is not None:
        chosen = chosen[np.argsort(-agg.edge_ns[chosen], kind="stable")[: 4 * max(top, 1)]]
    biggest = max(int(agg.incl[list(node_ids)].max()) if node_ids else 1, 1)
    for e in chosen.tolist():
        a, b = node_ids[int(agg.edges[e] // n_nodes)], node_ids[int(agg.edges[e] % n_nodes)]
        count, ns = int(agg.edge_count[e]), int(agg.edge_ns[e])
        graph.add_edge(
            a,
            b,
            count=count,
            time_ns=ns,
            label=f"{TIMES}{count:,} {fmt_ns(ns)}",
            penwidth=f"{1 + 2 * ns / biggest:.2f}",
            style="dashed" if a[0] != b[0] else None,  # a call that crosses lanes (a link)
        )


def build(
    trace: Trace,
    mask: np.ndarray | None = None,
    *,
    cluster: str = "thread",
    top: int | None = 40,
    min_time_ns: int = 0,
    parent: np.ndarray | None = None,
    own: np.ndarray | None = None,
) -> nx.DiGraph:
    """The call graph of the selected rows, pruned to the ``top`` nodes by inclusive time.

    ``parent``/``own``: another ancestry and self time (see ``aggregate_rows``).
    """
    rows = np.arange(trace.n) if mask is None else np.flatnonzero(mask)
    lane_of, lane_names, clusters, lane_cluster = _lanes(trace, cluster)
    graph = nx.DiGraph(title=f"calls: {os.path.basename(trace.path)}", rankdir="LR", clusters={})
    if not len(rows):
        graph.graph["note"] = "no spans selected"
        note_left_out(graph, "nodes", keep_top(np.zeros(0), top))
        return graph
    agg = aggregate_rows(trace, rows, lane_of, parent, own)
    kept = keep_top(agg.incl, top, min_time_ns)
    node_ids = _add_nodes(graph, trace, agg, kept.index, (lane_names, clusters, lane_cluster))
    _add_edges(graph, agg, node_ids, top)
    dropped = np.ones(len(agg.keys), dtype=bool)
    dropped[kept.index] = False
    note_left_out(
        graph,
        "nodes",
        kept,
        dropped_ns=int(agg.own[dropped].sum()),
        dropped_spans=int(agg.count[dropped].sum()),
        extra={"edges_total": len(agg.edges), "edges_kept": graph.number_of_edges()},
    )
    return graph
