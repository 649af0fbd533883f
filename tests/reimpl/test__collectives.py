"""reimpl/_collectives.py: group ids and per-group sequence numbers of collective spans.

The test without ``world1`` comes first: that fixture lives for the whole module.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from sinks import ListSink

from reimpl import _collectives, _trace


def _traced(fn):
    sink = ListSink()
    _trace.attach(sink)
    try:
        fn()
    finally:
        _trace.detach()
    return sink


def test_a_new_default_group_restarts_the_numbering():
    t = torch.ones(1)
    seqs = []
    for _ in range(2):
        dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
        try:
            sink = _traced(
                lambda: _collectives.collective("all_reduce", lambda: dist.all_reduce(t), [t])
            )
        finally:
            dist.destroy_process_group()
        seqs.append(sink.records[0][8]["seq"])
    assert seqs == [0, 0]


def test_spans_name_group_sequence_op_sizes_and_dtype(world1):
    t = torch.ones(3, 2)
    sub = dist.new_group([0])

    def run():
        for _ in range(2):
            _collectives.collective("all_reduce", lambda: dist.all_reduce(t), [t])
        _collectives.collective("all_reduce", lambda: dist.all_reduce(t, group=sub), [t], sub)

    sink = _traced(run)
    attrs = [r[8] for r in sink.records]
    assert [(a["group"], a["seq"]) for a in attrs] == [("world", 0), ("world", 1), ("0", 0)]
    assert [r[5] for r in sink.records] == ["collective.all_reduce"] * 3
    assert attrs[0]["sizes"] == [[3, 2]] and attrs[0]["dtype"] == "float32"
    assert attrs[0]["bytes"] == 24 and attrs[0]["backend"] == "gloo"
    assert all(0 <= a["wait_ns"] <= r[4] - r[3] for a, r in zip(attrs, sink.records))
    assert _collectives.in_flight == {}  # nothing left behind once the calls returned


def test_untraced_it_only_runs_the_collective(world1):
    t = torch.ones(2)
    assert _collectives.collective("all_reduce", lambda: "ran", [t]) == "ran"
    assert _collectives.in_flight == {}
