"""Pruning keeps the heaviest N and says what it left out."""

from __future__ import annotations

import networkx as nx
import numpy as np

from tracer.graphs.prune import keep_top, note_left_out


def test_keep_top_orders_by_weight_and_honours_min():
    kept = keep_top(np.array([5, 50, 1, 20, 20]), 3)
    assert kept.index.tolist() == [1, 3, 4] and kept.dropped == 2
    kept = keep_top(np.array([5, 50, 1, 20]), 10, min_weight=10)
    assert kept.index.tolist() == [1, 3] and kept.below_min == 2
    assert keep_top(np.array([3, 2]), None).index.tolist() == [0, 1]


def test_note_states_what_was_left_out():
    g = nx.DiGraph()
    note_left_out(
        g, "nodes", keep_top(np.arange(100), 10, 5), dropped_ns=3_100_000, dropped_spans=4242
    )
    assert g.graph["left_out"]["dropped"] == 90
    assert g.graph["note"] == (
        "showing 10 of 100 nodes: left out 90 (4,242 spans, 3.1 ms self time); 5 under --min-time"
    )
    g = nx.DiGraph()
    note_left_out(g, "modules", keep_top(np.ones(4), 10))
    assert g.graph["note"] == "all 4 modules shown"
