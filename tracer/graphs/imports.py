"""What ``import torch`` imports: the dependency graph of ``import`` spans.

An ``import`` span nested in another is a module imported while the outer
one was executing, so the call graph of ``import`` spans *is* the import
dependency graph (an edge: importer -> imported, first import only, since
later imports hit ``sys.modules`` and record nothing). Thousands of modules
are pruned to the top N by inclusive time -- what ``import`` costs -- and
nodes are coloured by top-level package.
"""

from __future__ import annotations

import os
import zlib

import networkx as nx
import numpy as np

from tracer.file.trace import Trace
from tracer.graphs import calls
from tracer.graphs.render import fmt_ns, label, short

_PALETTE = ("#cfe2ff", "#d4edda", "#fff3cd", "#f8d7da", "#e2d9f3", "#d1ecf1", "#f3e5d8")


def package_color(module: str) -> str:
    """A stable colour per top-level package (``torch``, ``numpy``...)."""
    top = module.split(".", 1)[0]
    return _PALETTE[zlib.crc32(top.encode()) % len(_PALETTE)]


def import_ancestry(trace: Trace, is_import: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each import's nearest enclosing import, and its self time counting imports only.

    With ``torchscope imports --deep`` every Python call of the import is a
    span too; the dependency graph skips them (an import inside a function
    called by another import is still that import's dependency).
    """
    rows = np.flatnonzero(is_import)
    up = trace.parent[rows].copy()
    pending = (up >= 0) & ~is_import[np.maximum(up, 0)]
    while pending.any():  # one level per pass; only import rows are walked
        up[pending] = trace.parent[up[pending]]
        pending = (up >= 0) & ~is_import[np.maximum(up, 0)]
    parent = np.full(trace.n, -1, dtype=np.int64)
    parent[rows] = up
    own = np.zeros(trace.n, dtype=np.int64)
    own[rows] = trace.dur_ns[rows]
    nested = up >= 0
    np.subtract.at(own, up[nested], trace.dur_ns[rows[nested]])
    return parent, own


def build(
    trace: Trace, mask: np.ndarray | None = None, *, top: int | None = 40, min_time_ns: int = 0
) -> nx.DiGraph:
    """Modules as nodes (keyed by name), importer -> imported edges, top N by inclusive time."""
    code = trace.code("import")
    selected = trace.kind == code if code >= 0 else np.zeros(trace.n, dtype=bool)
    if mask is not None:
        selected &= mask
    parent, own = import_ancestry(trace, trace.kind == code)
    graph = calls.build(
        trace,
        selected,
        cluster="none",
        top=top,
        min_time_ns=min_time_ns,
        parent=parent,
        own=own,
    )
    graph = nx.relabel_nodes(graph, {n: n[2] for n in graph.nodes})
    graph.graph["title"] = f"imports: {os.path.basename(trace.path)}"
    graph.graph["rankdir"] = "LR"
    for name, data in graph.nodes(data=True):
        data["type"] = "module"
        data["label"] = label(
            short(name), f"{fmt_ns(data['incl_ns'])} incl · {fmt_ns(data['self_ns'])} self"
        )
        data["fillcolor"] = package_color(name)
    for _a, _b, data in graph.edges(data=True):
        data["label"] = fmt_ns(data["time_ns"])
    if code < 0:
        graph.graph["note"] = "no import spans in this trace (record with `torchscope imports`)"
    else:
        graph.graph["note"] = graph.graph["note"].replace("nodes", "modules")
    return graph
