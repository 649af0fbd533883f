"""Timeline text: labels never run into each other, lanes have names of their own."""

from __future__ import annotations

import pytest
from tui_helpers import SAMPLE

import tracer
from tui.model import TraceModel
from tui.widgets.timeline import fit_label


@pytest.mark.parametrize(
    "text, width, shown",
    [
        ("step", 10, "step      "),
        ("step", 5, "step "),
        ("step", 4, "st… "),  # "step" would touch the next bar
        ("__next__", 6, "__ne… "),
        ("replica 0", 2, "  "),
    ],
)
def test_a_label_fits_its_bar_and_keeps_its_last_cell_blank(text, width, shown):
    got = fit_label(text, width)
    assert len(got) == width and got.endswith(" ")
    assert got == shown


def test_every_lane_of_the_sample_has_a_name_of_its_own():
    model = TraceModel(tracer.load(str(SAMPLE)))
    names = [model.lane_names[lane.thread] for lane in model.lanes]
    assert len(set(names)) == len(names)
    assert "worker 0 pid 1001" in names and "worker 1 pid 1002" in names
    assert "main/replica 0 [sim:0]" in names and "rank 0 pid 2000 [cpu:0]" in names
