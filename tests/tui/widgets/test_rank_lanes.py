"""A merged distributed trace in the TUI: rank lanes in order, a collective's peers.

The parts are generated (benchmarks/bench_merge.py's generator, three ranks
arriving 7 ns apart at every collective) and merged by ``torchscope merge``'s
own code; the app runs headless under Pilot.
"""

from __future__ import annotations

import pytest
from tui_helpers import SIZE, ready, type_text

from benchmarks import bench_merge
from tracer.distributed.merge import merge
from tui.app import TorchscopeApp
from tui.widgets.calltree import CallTree
from tui.widgets.details import DetailsPane
from tui.widgets.timeline import Timeline, rank_order


@pytest.fixture
def merged(tmp_path, monkeypatch):
    monkeypatch.setattr(bench_merge, "N_RANKS", 3)
    monkeypatch.setattr(bench_merge, "N_SPANS", 1_000)
    parts = []
    for rank in (2, 0, 1):  # hosts given in any order
        parts.append(str(tmp_path / f"rank{rank}.tsdb"))
        bench_merge.make_part(parts[-1], rank)
    out = str(tmp_path / "merged.tsdb")
    merge(out, parts)
    return out


def _facts(pane: DetailsPane) -> dict[str, str]:
    return {label.plain.strip(): value.plain for label, value in pane.content.rows}


async def test_a_collective_shows_its_peers_and_ranks_come_in_order(merged):
    app = TorchscopeApp(merged)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        timeline = app.screen.query_one(Timeline)
        model = timeline.model
        lanes = rank_order(model, model.visible_lanes())
        assert [model.lane_names[lane.thread].split()[:2] for lane in lanes] == [
            ["rank", "0"], ["rank", "1"], ["rank", "2"],
        ]  # fmt: skip
        await pilot.press("slash")
        await type_text(pilot, "collective.all_reduce")
        await pilot.press("enter")
        await pilot.pause()
        tree = app.screen.query_one("#calltree", CallTree)
        row = tree.cursor_row
        t = model.trace
        assert row is not None and t.kind_of(row) == "collective.all_reduce"
        facts = _facts(app.screen.query_one("#details", DetailsPane))
        assert facts["matched"] == "3 of 3 ranks; the last to arrive: rank 2"
        # rank r arrives 7 r ns after rank 0 and waits for rank 2
        for rank in range(3):
            wait = 14 - 7 * rank
            assert facts[f"rank {rank}"].startswith(
                f"arrived +{7 * rank} ns after the first, waited {wait} ns"
            )
        this = f"rank {t.process_of(row).role_index}"
        assert facts[this].endswith("(this span)")
        # the timeline draws the same collective on every rank's lane
        assert timeline.row == row and len(timeline._peers) == 3
        same = {(t.attrs(r)["group"], t.attrs(r)["seq"]) for r in timeline._peers}
        assert same == {(t.attrs(row)["group"], t.attrs(row)["seq"])}
