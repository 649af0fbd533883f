"""The diff benchmark's pair: what it times must be the pair its table describes."""

from __future__ import annotations

import tracer
from benchmarks.bench_diff import changed
from benchmarks.bench_graphs import training_records, write_trace
from tracer.analyze.diff import diff


def test_changed_twin_renames_one_span_in_every_and_is_slower(tmp_path):
    records = training_records(3000)
    twin = changed(records, every=1000)
    renamed = [r for r in twin if r[6].endswith(".changed")]
    assert len(renamed) == 3
    assert all(t[3] == r[3] * 11 // 10 for r, t in zip(records, twin))
    a, b = str(tmp_path / "a.tsdb"), str(tmp_path / "b.tsdb")
    write_trace(a, records)
    write_trace(b, twin)
    counts = diff(tracer.load(a), tracer.load(b)).counts()
    assert counts["missing"] == counts["extra"] == 3
    assert counts["aligned"] == 3000 - 3
