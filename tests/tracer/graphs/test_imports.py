"""The import graph: importer -> imported, pruned to the top N by inclusive time."""

from __future__ import annotations

import threading

import tracer
from reimpl import _trace
from tracer.graphs import draw, imports


def test_edges_are_imports_and_top_n_by_inclusive_time(imports_trace):
    full = imports.build(imports_trace, top=None)
    assert full.number_of_nodes() == 150
    assert full.has_edge("torch", "torch._C") and full.has_edge("torch", "numpy")
    assert full.has_edge("numpy.core", "numpy.core._multiarray_umath")
    g = imports.build(imports_trace, top=10)
    heaviest = sorted(full.nodes, key=lambda n: -full.nodes[n]["incl_ns"])[:10]
    assert set(g.nodes) == set(heaviest)
    assert {"torch", "torch._C"} <= set(g.nodes)
    left = g.graph["left_out"]
    assert left["dropped"] == 140 and left["dropped_spans"] == 140
    assert g.graph["note"].startswith("showing 10 of 150 modules: left out 140")


def test_colour_per_package(imports_trace):
    g = imports.build(imports_trace, top=40)
    assert g.nodes["torch"]["fillcolor"] == g.nodes["torch._C"]["fillcolor"]
    assert imports.package_color("numpy.core") == imports.package_color("numpy")


def test_without_import_spans(dp_trace):
    g = imports.build(dp_trace)
    assert g.number_of_nodes() == 0 and "no import spans" in g.graph["note"]


def test_renders_to_svg(imports_trace, tmp_path, svg_text):
    out = draw(imports.build(imports_trace, top=15), str(tmp_path / "i.svg"))
    assert out.warnings == []
    text = svg_text(out.path)
    assert "torch._C" in text and "showing 15 of 150 modules" in text


def test_calls_between_imports_are_skipped(trace_path):
    """``torchscope imports --deep`` records Python calls between the imports."""
    with tracer.record(trace_path):
        sink, tid = _trace.sink, threading.get_ident()
        outer, call, inner = sink.next_id(), sink.next_id(), sink.next_id()
        sink.append((inner, 0, tid, 20, 50, "import", "b", "f", None))
        sink.append((call, 0, tid, 10, 60, "py.call", "load", "f", None))
        sink.append((outer, 0, tid, 0, 100, "import", "a", "f", None))
    g = imports.build(tracer.load(trace_path))
    assert set(g.nodes) == {"a", "b"} and g.has_edge("a", "b")
    assert g.nodes["a"]["self_ns"] == 70  # the call's own time is the importer's
