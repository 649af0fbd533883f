"""benchmarks/bench_merge.py: the generated parts are real traces that merge as the table says."""

from __future__ import annotations

import tracer
from benchmarks import bench_merge
from tracer.distributed.merge import merge


def test_generated_parts_merge_with_every_collective_matched(tmp_path, monkeypatch):
    monkeypatch.setattr(bench_merge, "N_RANKS", 3)
    monkeypatch.setattr(bench_merge, "N_SPANS", 20_000)
    parts = [str(tmp_path / f"rank{r}.tsdb") for r in range(3)]
    for rank, path in enumerate(parts):
        bench_merge.make_part(path, rank)
    result = merge(str(tmp_path / "m.tsdb"), parts)
    assert result.spans == 3 * 20_000
    assert result.report["collectives"] == {"points": 200, "complete": 200}
    t = tracer.load(str(tmp_path / "m.tsdb"))
    assert t.n == 60_000 and not t.warnings
    assert int((t.parent == -1).sum()) == 3 * 200  # each step holds its 99 spans
