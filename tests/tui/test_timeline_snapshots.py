"""SVG snapshots of the timeline: the demo's lanes, and labels of spans too short
for them (issue 18), on tests/data/demo_lanes.tsdb (fixed times, written by
``write_demo_lanes`` in tests/data/make_sample_trace.py).

Two DataLoaders (training, then SWA's ``update_bn``) each start a "worker 0"
and a "worker 1": the lanes must still read apart (by pid). On the main
thread, ``data.next``, ``optim.step`` and ``sched.step`` last a few
microseconds between long forward and backward spans: a label is drawn only
where it fits, cut with an ellipsis, never running into the next bar.
Update with ``pytest tests/tui/test_timeline_snapshots.py --snapshot-update``.
"""

from __future__ import annotations

from pathlib import Path

from textual.pilot import Pilot
from tui_helpers import ready

from tui.app import TorchscopeApp

DEMO_LANES = Path(__file__).parents[1] / "data" / "demo_lanes.tsdb"
SIZE = (120, 40)


def _app() -> TorchscopeApp:
    return TorchscopeApp(str(DEMO_LANES))


async def _settle(pilot: Pilot) -> None:
    await ready(pilot)
    await pilot.pause(0.1)


def test_timeline_of_the_demo_lanes(snap_compare):
    assert snap_compare(_app(), terminal_size=SIZE, run_before=_settle)


def test_timeline_labels_of_short_spans_in_a_step(snap_compare):
    async def select_first_step(pilot: Pilot) -> None:
        await ready(pilot)
        await pilot.press("down", "down")  # main > MainThread > step 0: its timeline
        await _settle(pilot)

    assert snap_compare(_app(), terminal_size=SIZE, run_before=select_first_step)
