"""networkx graph -> Graphviz (the ``graphviz`` package and the ``dot`` program).

Builders put everything a picture needs on the networkx graph itself, so the
graph stays the one thing tests query and the renderer stays generic:

* ``graph.graph``: ``title``, ``note`` (what pruning left out), ``rankdir``,
  ``clusters`` ({id: {"label", "parent", "color"}}, nested through ``parent``);
* nodes: ``label`` (lines joined with ``\\n``), ``cluster`` and Graphviz
  styling (``fillcolor``, ``color``, ``shape``, ``style``, ``penwidth``...);
* edges: ``label`` and styling. Other attributes (counts, nanoseconds) are
  data for queries and are not passed to Graphviz.
"""

from __future__ import annotations

import contextlib
import io
import os
import textwrap
from dataclasses import dataclass, field

import graphviz
import networkx as nx

from tracer.file.errors import TraceError
from tracer.file.output import atomic_output

NODE_ATTRS = (
    *("label", "shape", "style", "fillcolor", "color", "fontcolor"),
    *("penwidth", "fontsize", "tooltip", "peripheries"),
)
EDGE_ATTRS = (
    *("label", "color", "fontcolor", "style", "penwidth", "arrowhead", "dir"),
    *("constraint", "tooltip", "weight", "minlen"),
)
FORMATS = ("svg", "png", "pdf", "dot")

# One light fill per family of span kinds, so a glance tells module work from
# hooks, optimizer, collectives and DataParallel plumbing.
KIND_COLORS = {
    "module": "#cfe2ff",
    "hook": "#ffe0b3",
    "optim": "#d4edda",
    "sched": "#d4edda",
    "swa": "#d4edda",
    "bn": "#e2d9f3",
    "collective": "#f8d7da",
    "dp": "#d1ecf1",
    "data": "#f3e5d8",
    "import": "#e9ecef",
    "autograd": "#fde2f3",
    "step": "#fff3cd",
}
DEFAULT_COLOR = "#f8f9fa"
ALERT = "#c62828"
TIMES = "\u00d7"  # the multiplication sign of "x50 calls"


def kind_color(kind: str) -> str:
    """The fill colour of a span kind's family (``hook.forward`` -> hooks)."""
    return KIND_COLORS.get(kind.split(".", 1)[0], DEFAULT_COLOR)


def fmt_ns(ns: float) -> str:
    """A duration for a label: 3 significant digits, unit chosen to fit."""
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if abs(ns) >= scale:
            return f"{ns / scale:.3g} {unit}"
    return f"{ns:.0f} ns"


def fmt_bytes(n: float) -> str:
    """A byte count for a label."""
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("kB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{int(n)} B"


def short(text: str, width: int = 44) -> str:
    """Cuts the middle of long names (module paths, hook qualnames) to keep nodes narrow."""
    if len(text) <= width:
        return text
    keep = width - 1
    return text[: keep // 2] + "…" + text[-(keep - keep // 2) :]


def wrap(text: str, width: int = 48, lines: int = 4) -> list[str]:
    """A long message (an error) as a few label lines instead of one wide node."""
    out = textwrap.wrap(text, width) or [""]
    return out[:lines] if len(out) <= lines else [*out[: lines - 1], out[lines - 1] + " …"]


def label(*lines: object) -> str:
    """A multi-line Graphviz label; user text has its backslashes escaped."""
    return "\\n".join(str(x).replace("\\", "\\\\") for x in lines if x not in (None, ""))


@dataclass
class Rendered:
    """Where a graph was written and what ``dot`` complained about."""

    path: str
    warnings: list[str] = field(default_factory=list)


def to_dot(graph: nx.DiGraph) -> graphviz.Digraph:
    """The Graphviz description of a builder's networkx graph."""
    meta = graph.graph
    dot = graphviz.Digraph(name="torchscope")
    dot.attr(rankdir=meta.get("rankdir", "TB"), fontname="Helvetica", fontsize="11")
    dot.attr(labelloc="t", labeljust="l", newrank="true")
    title = label(meta.get("title", ""), meta.get("note", ""))
    if title:
        dot.attr(label=title)
    dot.attr("node", shape="box", style="rounded,filled", fontname="Helvetica", fontsize="10")
    dot.attr("node", fillcolor=DEFAULT_COLOR)
    dot.attr("edge", fontname="Helvetica", fontsize="9", color="#555555")
    clusters: dict[str, dict] = meta.get("clusters", {})
    ids = {node: f"n{i}" for i, node in enumerate(graph.nodes)}
    subs = {cid: graphviz.Digraph(name=f"cluster_{i}") for i, cid in enumerate(clusters)}
    for cid, info in clusters.items():
        subs[cid].attr(
            label=label(info.get("label", cid)),
            style="rounded" + (",filled" if info.get("fillcolor") else ""),
            color=info.get("color", "#999999"),
            fillcolor=info.get("fillcolor", "white"),
            penwidth=str(info.get("penwidth", 1)),
        )
    for node, data in graph.nodes(data=True):
        attrs = {k: str(data[k]) for k in NODE_ATTRS if data.get(k) is not None}
        attrs.setdefault("label", label(str(node)))
        target = subs.get(data.get("cluster"), dot)
        target.node(ids[node], **attrs)
    for a, b, data in graph.edges(data=True):
        attrs = {k: str(data[k]) for k in EDGE_ATTRS if data.get(k) is not None}
        dot.edge(ids[a], ids[b], **attrs)

    # A cluster's body is copied when it is attached, so attach the deepest first.
    def depth(cid: str) -> int:
        d, seen = 0, set()
        while clusters.get(cid, {}).get("parent") is not None and cid not in seen:
            seen.add(cid)
            cid = clusters[cid]["parent"]
            d += 1
        return d

    for cid in sorted(clusters, key=depth, reverse=True):
        parent = clusters[cid].get("parent")
        subs.get(parent, dot).subgraph(subs[cid])
    return dot


def draw(graph: nx.DiGraph, out_path: str, fmt: str | None = None) -> Rendered:
    """Writes ``graph`` as svg/png/pdf (through ``dot``) or as DOT source.

    ``dot``'s warnings are captured and returned instead of leaking to the
    terminal, so callers (the CLI, tests) decide what to show.
    """
    fmt = (fmt or os.path.splitext(out_path)[1].lstrip(".") or "svg").lower()
    if fmt not in FORMATS:
        raise TraceError(f"{out_path}: unknown output format {fmt!r}; use one of {FORMATS}.")
    dot = to_dot(graph)
    if fmt == "dot":
        with atomic_output(out_path) as fh:
            fh.write(dot.source)
        return Rendered(out_path)
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            data = dot.pipe(format=fmt, engine="dot")
    except graphviz.ExecutableNotFound as exc:
        raise TraceError(
            "Graphviz's `dot` program is not installed; install it (apt-get install graphviz, "
            "brew install graphviz) or write DOT source with -o graph.dot."
        ) from exc
    with atomic_output(out_path, "wb") as fh:
        fh.write(data)
    warnings = [line for line in err.getvalue().splitlines() if line.strip()]
    return Rendered(out_path, warnings)
