"""Rendering networkx graphs through Graphviz: clusters, labels, formats, warnings."""

from __future__ import annotations

import networkx as nx
import pytest

from tracer.file.errors import TraceError
from tracer.graphs import render


def _graph() -> nx.DiGraph:
    g = nx.DiGraph(
        title="t",
        note="all shown",
        clusters={"p": {"label": "main (pid 1)"}, "t": {"label": "replica 1", "parent": "p"}},
    )
    g.add_node("a", label=render.label("C:\\path\\net", "x2"), cluster="t", fillcolor="#ffffff")
    g.add_node("b", label="b<&>", count=3)  # count is data, never passed to dot
    g.add_edge("a", "b", label="3 ms", time_ns=3)
    return g


def test_svg_has_nested_clusters_labels_and_no_warnings(tmp_path, svg_text):
    out = render.draw(_graph(), str(tmp_path / "g.svg"))
    assert out.warnings == []
    text = svg_text(out.path)
    for expected in ("C:\\path\\net", "b<&>", "3 ms", "main (pid 1)", "replica 1", "all shown"):
        assert expected in text
    source = render.to_dot(_graph()).source
    assert source.index("cluster_0") < source.index("cluster_1")  # replica nested in main
    assert "count" not in source and "time_ns" not in source


@pytest.mark.parametrize("fmt", ["png", "pdf", "dot"])
def test_other_formats(tmp_path, fmt):
    out = render.draw(_graph(), str(tmp_path / f"g.{fmt}"))
    data = (tmp_path / f"g.{fmt}").read_bytes()
    assert out.warnings == [] and len(data) > 100
    assert data.startswith({"png": b"\x89PNG", "pdf": b"%PDF", "dot": b"digraph"}[fmt])


def test_dot_warnings_are_returned_not_printed(tmp_path, capfd):
    g = nx.DiGraph()
    g.add_node("a", fillcolor="#fff")  # not a colour dot knows
    out = render.draw(g, str(tmp_path / "w.svg"))
    assert out.warnings == ["Warning: #fff is not a known color."]
    assert "Warning" not in capfd.readouterr().err


def test_unknown_format_is_a_clear_error(tmp_path):
    with pytest.raises(TraceError, match="unknown output format"):
        render.draw(_graph(), str(tmp_path / "g.gif"))


def test_helpers():
    assert render.fmt_ns(1_500) == "1.5 µs" and render.fmt_ns(2_000_000_000) == "2 s"
    assert render.fmt_bytes(2048) == "2 kB"
    assert len(render.short("x" * 100, 20)) == 20
    assert render.kind_color("hook.forward") == render.KIND_COLORS["hook"]
    assert render.wrap("word " * 40, 20, 3)[-1].endswith("…")
