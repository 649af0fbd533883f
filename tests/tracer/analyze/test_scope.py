"""Imports and compilations stand aside: the lists and the calls graph show the
program's own work, and still show the imports when asked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from torchscope_cli import torchscope

import tracer
from tracer import graphs
from tracer.analyze.scope import aside_mask

SAMPLE = str(Path(__file__).parents[3] / "samples" / "dataparallel_hooks.py")


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> str:
    """The DeOldify sample under `torchscope record`: import torch and all."""
    out = str(tmp_path_factory.mktemp("scope") / "dp.tsdb")
    assert torchscope("record", "-o", out, SAMPLE, "--variant", "fixed").returncode == 0
    return out


def test_summary_lists_the_programs_work_and_counts_imports_apart(recorded):
    t = tracer.load(recorded)
    aside = aside_mask(t)
    assert aside.sum() > 10  # the program's own imports were recorded
    data = json.loads(torchscope("summary", recorded, "--json").stdout)
    listed = {s["kind"] for key in ("top_self", "top_inclusive") for s in data[key]}
    assert listed and not listed & {"import", "numba.compile"}
    assert {"module.forward", "hook.forward", "step"} <= {k["kind"] for k in data["kinds"]}
    assert not any(p["path"].startswith("import:") for p in data["top_paths"])
    assert data["imports"]["spans"] == int(aside.sum()) and not data["imports"]["included"]
    text = torchscope("summary", recorded).stdout
    assert "imports and compilations:" in text and "--include-imports" in text
    everything = json.loads(torchscope("summary", recorded, "--json", "--include-imports").stdout)
    assert "import" in {k["kind"] for k in everything["kinds"]}
    assert "import" not in {k["kind"] for k in data["kinds"]}


def test_the_calls_graph_draws_modules_not_imports(recorded):
    t = tracer.load(recorded)
    own = graphs.build(t, "calls", top=-1)
    kinds = {node[1] for node in own.nodes}
    assert "import" not in kinds and {"module.forward", "hook.forward"} <= kinds
    assert "import and compilation spans left out" in own.graph["note"]
    assert "import" in {node[1] for node in graphs.build(t, "calls", include_imports=True).nodes}
    assert graphs.build(t, "imports").number_of_nodes() > 0  # their own graph keeps them


def test_record_no_imports_skips_them(tmp_path):
    out = str(tmp_path / "quiet.tsdb")
    result = torchscope("record", "--no-imports", "-o", out, SAMPLE, "--variant", "fixed")
    assert result.returncode == 0, result.stderr
    t = tracer.load(out)
    assert t.code("import") < 0 and t.meta["imports"] == "no"
    assert t.code("hook.forward") >= 0  # the program's own work is all there
