"""``torchscope summary`` on a trace whose totals are worked out by hand (handmade.py)."""

from __future__ import annotations

import json

import pytest
from handmade import two_steps, write

from tracer.analyze.summary import call_paths, render_json, render_text, summarize


@pytest.fixture
def summary(tmp_path):
    return summarize(write(str(tmp_path / "t.tsdb"), two_steps()))


def test_totals_per_kind_sorted_by_self_time(summary) -> None:
    assert summary["spans"] == 10 and summary["wall_ns"] == 2100
    assert [(k["kind"], k["count"], k["incl_ns"], k["self_ns"]) for k in summary["kinds"]] == [
        ("module.forward", 5, 1790, 1000),
        ("step", 2, 1900, 600),
        ("optim.step", 2, 300, 300),
        ("data.next", 1, 150, 150),
    ]


def test_top_spans_by_self_and_by_inclusive_time(summary) -> None:
    def table(key: str) -> list[tuple]:
        return [
            (s["kind"], s["name"], s["count"], s["incl_ns"], s["self_ns"]) for s in summary[key]
        ]

    assert table("top_self") == [
        ("module.forward", "net.fc", 3, 790, 790),
        ("step", "step", 2, 1900, 600),
        ("optim.step", "SGD", 2, 300, 300),
        ("module.forward", "net", 2, 1000, 210),
        ("data.next", "__next__", 1, 150, 150),
    ]
    assert [row[1] for row in table("top_inclusive")] == [
        "step",
        "net",
        "net.fc",
        "SGD",
        "__next__",
    ]


def test_call_paths_merge_the_steps(tmp_path) -> None:
    paths = call_paths(write(str(tmp_path / "t.tsdb"), two_steps()))
    assert [(p["path"], p["count"], p["incl_ns"], p["self_ns"]) for p in paths] == [
        ("step:step", 2, 1900, 600),
        ("step:step > module.forward:net", 2, 1000, 210),
        ("step:step > module.forward:net > module.forward:net.fc", 3, 790, 790),
        ("step:step > optim.step:SGD", 2, 300, 300),
        ("data.next:__next__", 1, 150, 150),
    ]


def test_top_paths_and_threads(summary) -> None:
    assert [p["incl_ns"] for p in summary["top_paths"]] == [1900, 1000, 790, 300, 150]
    assert [(t["name"], t["spans"]) for t in summary["threads"]] == [
        ("main", 9),
        ("worker 0", 1),
    ]


def test_top_limits_every_list(tmp_path) -> None:
    s = summarize(write(str(tmp_path / "t.tsdb"), two_steps()), top=2)
    assert [x["name"] for x in s["top_self"]] == ["net.fc", "step"]
    assert [x["name"] for x in s["top_inclusive"]] == ["step", "net"]
    assert len(s["top_paths"]) == 2 and len(s["kinds"]) == 4


def test_text_and_json_reports(tmp_path) -> None:
    """The text report in milliseconds (times scaled to microseconds here), the JSON as is."""
    summary = summarize(write(str(tmp_path / "t.tsdb"), two_steps(scale=1000)))
    text = render_text(summary)
    assert "10 spans over 2.100 ms" in text
    lines = text.splitlines()
    assert next(x for x in lines if x.startswith("module.forward ")).split() == [
        "module.forward", "5", "1.790", "1.000"
    ]  # fmt: skip
    assert next(x for x in lines if x.startswith("module.forward net.fc ")).split()[2:] == [
        "3", "0.790", "0.790"
    ]  # fmt: skip
    assert "step:step > module.forward:net > module.forward:net.fc" in text
    assert json.loads(render_json(summary))["kinds"][0]["self_ns"] == 1_000_000
