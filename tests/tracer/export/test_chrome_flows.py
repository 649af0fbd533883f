"""Chrome export flow arrows: scatter -> replica -> gather, and collectives across ranks."""

from __future__ import annotations

import json
from collections import defaultdict

import tracer
from tracer.export import chrome as export_chrome
from tracer.graphs import synth


def _flows(trace, tmp_path):
    out = tmp_path / "t.json"
    export_chrome.export(trace, str(out))
    events = json.loads(out.read_text())["traceEvents"]
    slices = [e for e in events if e["ph"] == "X"]
    flows = defaultdict(dict)
    for e in events:
        if e["ph"] in ("s", "f"):
            flows[e["id"]][e["ph"]] = e
    return slices, flows


def _slice_at(slices, ev, *, start=False):
    """The innermost slice on the event's thread that the event binds to."""
    found = [
        s
        for s in slices
        if (s["pid"], s["tid"]) == (ev["pid"], ev["tid"])
        and (abs(s["ts"] - ev["ts"]) < 1e-9 if start else s["ts"] <= ev["ts"] <= s["ts"] + s["dur"])
    ]
    return min(found, key=lambda s: s["dur"])


def test_dataparallel_flows(tmp_path):
    path = synth.record_dataparallel(str(tmp_path / "dp.tsdb"), steps=2, bug=False)
    slices, flows = _flows(tracer.load(path), tmp_path)
    assert len(flows) == 2 * 2 * 2  # 2 calls x 2 replicas x (scatter->replica, replica->gather)
    seen = defaultdict(int)
    for pair in flows.values():
        assert set(pair) == {"s", "f"} and pair["f"]["bp"] == "e"
        src = _slice_at(slices, pair["s"])
        dst = _slice_at(slices, pair["f"], start=True)
        seen[(src["cat"], dst["cat"])] += 1
    assert seen == {("dp.scatter", "dp.replica"): 4, ("dp.replica", "dp.gather"): 4}


def test_collective_flows_between_ranks(tmp_path):
    path = synth.record_syncbn(str(tmp_path / "s.tsdb"), world_size=3, steps=1)
    t = tracer.load(path)
    slices, flows = _flows(t, tmp_path)
    assert len(flows) == 4 * 2  # 4 collectives per rank, rank 0 -> ranks 1 and 2
    pid_rank = {p.pid: p.role_index for p in t.processes}
    for pair in flows.values():
        src = _slice_at(slices, pair["s"])
        dst = _slice_at(slices, pair["f"], start=True)
        assert src["cat"] == dst["cat"] and src["cat"].startswith("collective.")
        assert pid_rank[pair["s"]["pid"]] == 0 and pid_rank[pair["f"]["pid"]] in (1, 2)
