"""Graphs of a trace as networkx graphs you can query and prune, drawn with Graphviz.

One module per kind of graph, each with ``build(trace, mask, ...) -> nx.DiGraph``:

* ``calls``: the aggregated call graph (one node per kind and name per lane);
* ``modules``: the module tree from the structure snapshots, with parameters,
  buffers and hooks (a hook object shared by modules or replicas drawn once);
* ``dataparallel``: scatter -> replicas (a cluster per device) -> gather;
* ``syncbn``: each rank's collectives, drawn as synchronisation points;
* ``optim``: param groups -> parameters -> state tensors;
* ``imports``: what imported what, pruned to the top N by inclusive time.

``draw`` (in ``render``) turns any of them into svg/png/pdf/dot; ``select`` picks the
spans (a step, a thread, a process, a subtree) a graph is built from.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module

import networkx as nx
import numpy as np

from tracer.analyze.scope import aside_mask
from tracer.file.trace import Trace
from tracer.graphs.render import Rendered, draw
from tracer.graphs.select import select as select_rows
from tracer.graphs.select import subtree_mask

KINDS = ("calls", "modules", "dataparallel", "syncbn", "optim", "imports")
DEFAULT_TOP = 40

__all__ = ["DEFAULT_TOP", "KINDS", "Rendered", "build", "draw", "render_subtree", "select_rows"]


def builder(kind: str) -> Callable[..., nx.DiGraph]:
    """The ``build`` function of one kind of graph."""
    if kind not in KINDS:
        raise ValueError(f"unknown graph kind {kind!r}; choose one of {', '.join(KINDS)}")
    return import_module(f"tracer.graphs.{kind}").build


def build(
    trace: Trace,
    kind: str,
    *,
    step: int | None = None,
    thread: str | None = None,
    process: str | None = None,
    top: int | None = None,
    min_time_ns: int = 0,
    cluster: str | None = None,
    include_imports: bool = False,
) -> nx.DiGraph:
    """Selects spans (step/thread/process), then builds and prunes one kind of graph.

    ``top=None`` keeps each kind's own default (40 nodes; 12 sync points for
    syncbn); a negative ``top`` keeps everything. ``cluster`` (calls only):
    lanes by thread (default), device, process or none. The calls graph leaves
    imports and compilations out unless ``include_imports``.
    """
    make = builder(kind)
    mask = select_rows(trace, step=step, thread=thread, process=process)
    left_out = 0
    if kind == "calls" and not include_imports:  # the program's own work (tracer.analyze.scope)
        aside = aside_mask(trace) & mask
        left_out = int(aside.sum())
        mask = mask & ~aside
    options: dict = {"min_time_ns": min_time_ns}
    if top is not None:
        options["top"] = None if top < 0 else top
    if cluster is not None:
        if kind != "calls":
            raise ValueError(f"--cluster applies to the calls graph, not {kind}")
        options["cluster"] = cluster
    graph = make(trace, mask, **options)
    if left_out:
        note = graph.graph.get("note", "")
        graph.graph["note"] = (note + "; " if note else "") + (
            f"{left_out:,} import and compilation spans left out (--include-imports)"
        )
    return graph


def render_subtree(trace: Trace, row: int, out_path: str, top: int | None = DEFAULT_TOP) -> str:
    """Draws the calls graph of one span's subtree (linked threads included); returns the path.

    The TUI calls this for the span under the cursor; the format follows the
    extension of ``out_path`` (svg, png, pdf, dot).
    """
    from tracer.graphs import calls

    mask = subtree_mask(trace, np.array([row]))
    graph = calls.build(trace, mask, top=top)
    graph.graph["title"] = f"calls under {trace.kind_of(row)} {trace.name_of(row)}"
    return draw(graph, out_path).path
