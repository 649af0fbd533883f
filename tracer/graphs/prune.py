"""Pruning: keep the N heaviest nodes and say, on the picture, what was left out.

A graph of 3,000 nodes is unreadable; a graph of the top 40 with a line that
says "left out 2,960 nodes holding 3.1 ms of self time" is a map. Every
builder prunes through here, so the note reads the same everywhere and tests
can check ``graph.graph["left_out"]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx
import numpy as np

from tracer.graphs.render import fmt_ns


@dataclass(frozen=True)
class Kept:
    """Which of ``total`` candidates survive, heaviest first."""

    index: np.ndarray
    total: int
    below_min: int  # dropped by --min-time (the rest of the dropped by --top)

    @property
    def dropped(self) -> int:
        """How many candidates were left out."""
        return self.total - len(self.index)


def keep_top(weight: np.ndarray, top: int | None, min_weight: int = 0) -> Kept:
    """Indices of the ``top`` largest weights that reach ``min_weight`` (ties: first seen)."""
    weight = np.asarray(weight)
    eligible = np.flatnonzero(weight >= min_weight)
    order = eligible[np.argsort(-weight[eligible], kind="stable")]
    if top is not None and top >= 0:
        order = order[:top]
    return Kept(order, len(weight), len(weight) - len(eligible))


def note_left_out(
    graph: nx.DiGraph,
    noun: str,
    kept: Kept,
    *,
    dropped_ns: int = 0,
    dropped_spans: int = 0,
    extra: dict | None = None,
) -> None:
    """Records what pruning dropped on the graph (``left_out``) and in its visible note."""
    info = {
        "noun": noun,
        "total": kept.total,
        "kept": len(kept.index),
        "dropped": kept.dropped,
        "below_min_time": kept.below_min,
        "dropped_ns": int(dropped_ns),
        "dropped_spans": int(dropped_spans),
        **(extra or {}),
    }
    graph.graph["left_out"] = info
    if not kept.dropped:
        graph.graph.setdefault("note", f"all {kept.total:,} {noun} shown")
        return
    parts = [f"showing {len(kept.index):,} of {kept.total:,} {noun}"]
    detail = f"left out {kept.dropped:,}"
    if dropped_spans:
        detail += f" ({dropped_spans:,} spans"
        detail += f", {fmt_ns(dropped_ns)} self time)" if dropped_ns else ")"
    elif dropped_ns:
        detail += f" ({fmt_ns(dropped_ns)})"
    if kept.below_min:
        detail += f"; {kept.below_min:,} under --min-time"
    parts.append(detail)
    graph.graph["note"] = ": ".join(parts)
