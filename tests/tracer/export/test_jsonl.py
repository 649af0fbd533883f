"""JSON lines export: one self-contained span per line, parents before children."""

from __future__ import annotations

import json

from tracer.cli import main
from tracer.export import jsonl as export_jsonl
from tracer.graphs import synth


def test_one_line_per_span_with_every_field(tmp_path):
    src = synth.record_dataparallel(str(tmp_path / "dp.tsdb"), steps=1, bug=False)
    out = tmp_path / "dp.jsonl"
    assert main(["export", src, "--format", "jsonl", "-o", str(out)]) == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert all(
        set(x)
        == {"id", "parent", "kind", "name", "func", "pid", "tid", "thread", "device",
            "start_ns", "end_ns", "attrs"}
        for x in lines
    )  # fmt: skip
    seen = set()
    for x in lines:
        assert x["parent"] is None or x["parent"] in seen  # parents come first
        assert x["end_ns"] >= x["start_ns"]
        seen.add(x["id"])
    by_id = {x["id"]: x for x in lines}
    replica = next(x for x in lines if x["kind"] == "dp.replica" and x["device"] == "sim:1")
    assert replica["attrs"]["device"] == "sim:1" and replica["thread"] == "replica 1"
    assert by_id[replica["parent"]]["kind"] == "dp.parallel_apply"  # a cross-thread link
    assert by_id[replica["parent"]]["tid"] != replica["tid"]


def test_default_output_name(tmp_path, capsys):
    src = synth.record_imports(str(tmp_path / "imp.tsdb"), modules=20)
    assert main(["export", src, "--format", "jsonl"]) == 0
    assert (tmp_path / "imp.jsonl").exists()
    assert "wrote 20 spans" in capsys.readouterr().out
    assert export_jsonl.export  # the module's public entry point
