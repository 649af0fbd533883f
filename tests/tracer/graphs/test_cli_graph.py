"""``torchscope graph``: every kind to SVG from the command line, filters, clear errors."""

from __future__ import annotations

import pytest

from tracer.cli import main
from tracer.graphs import KINDS


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_renders(kind, dp_trace, tmp_path, capsys):
    out = tmp_path / f"{kind}.svg"
    assert main(["graph", dp_trace.path, "--kind", kind, "-o", str(out)]) == 0
    captured = capsys.readouterr()
    assert out.read_text().startswith("<?xml") and captured.err == ""
    assert f"wrote {out}" in captured.out


def test_filters_top_min_time_and_formats(syncbn_trace, imports_trace, tmp_path, capsys):
    out = tmp_path / "s.dot"
    args = ["graph", syncbn_trace.path, "--kind", "syncbn", "--step", "1", "-o", str(out)]
    assert main([*args, "--process", "rank 1"]) == 0
    assert out.read_text().startswith("digraph")
    out = tmp_path / "i.png"
    args = ["graph", imports_trace.path, "--kind", "imports", "--top", "5", "-o", str(out)]
    assert main([*args, "--min-time", "1ms"]) == 0
    assert "showing 5 of 150 modules" in capsys.readouterr().out
    assert main(["graph", imports_trace.path, "--top", "-1", "-o", str(tmp_path / "a.svg")]) == 0
    assert "import and compilation spans left out (--include-imports)" in capsys.readouterr().out
    args = ["graph", imports_trace.path, "--top", "-1", "--include-imports"]
    assert main([*args, "-o", str(tmp_path / "a.svg")]) == 0
    assert "all 150 nodes shown" in capsys.readouterr().out


def test_errors_name_the_problem(dp_trace, tmp_path, capsys):
    assert main(["graph", dp_trace.path, "--step", "42", "-o", str(tmp_path / "x.svg")]) == 2
    assert "no step 42" in capsys.readouterr().err
    assert main(["graph", dp_trace.path, "--thread", "zzz", "-o", str(tmp_path / "x.svg")]) == 2
    assert "no thread matches 'zzz'" in capsys.readouterr().err
    assert main(["graph", dp_trace.path, "--min-time", "soon"]) == 2
    assert "--min-time" in capsys.readouterr().err
    assert main(["graph", dp_trace.path, "-o", str(tmp_path / "x.gif")]) == 2
    assert "unknown output format" in capsys.readouterr().err


def test_cluster_by_device(dp_trace, tmp_path, capsys, svg_text):
    out = tmp_path / "d.svg"
    assert main(["graph", dp_trace.path, "--cluster", "device", "-o", str(out)]) == 0
    assert "device sim:1" in svg_text(str(out))
    assert main(["graph", dp_trace.path, "--kind", "optim", "--cluster", "device"]) == 2
    assert "--cluster applies to --kind calls only" in capsys.readouterr().err
