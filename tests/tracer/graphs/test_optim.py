"""The optimizer graph from real reimpl optimizers: groups, parameters, state tensors."""

from __future__ import annotations

import threading

import torch

import tracer
from reimpl import _trace, nn
from reimpl.optim import SGD, Adam
from tracer.graphs import draw, optim


def _record(path: str) -> tracer.Trace:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    sgd = SGD(
        [
            {"params": model[0].parameters()},
            {"params": model[2].parameters(), "lr": 0.01},
        ],
        lr=0.1,
        momentum=0.9,
    )
    adam = Adam(model[2].parameters(), lr=1e-3, amsgrad=True)
    with tracer.record(path):
        for i in range(2):
            with _trace.step(i):
                sgd.zero_grad()
                model(torch.randn(5, 4)).sum().backward()
                sgd.step()
                adam.step()
    return tracer.load(path)


def test_groups_parameters_and_state(trace_path):
    t = _record(trace_path)
    g = optim.build(t)
    updates = [r for r in range(t.n) if t.kind_of(r) == "optim.update"]
    recorded = any("state" in t.attrs(r) for r in updates)  # reimpl records state shapes
    assert set(g.successors(("optimizer", "SGD"))) == {("group", "SGD", 0), ("group", "SGD", 1)}
    assert g.nodes["group", "SGD", 1]["hyper"]["lr"] == 0.01
    assert g.nodes["group", "SGD", 0]["hyper"]["momentum"] == 0.9
    weight = g.nodes["param", "SGD", 0]
    assert weight["tensor_shape"] == [8, 4] and weight["calls"] == 2
    assert weight["name"] == "0.weight"  # named after the model, whose shapes match
    assert g.nodes["param", "SGD", 3]["name"] == "2.bias"
    assert g.nodes["param", "Adam", 0]["name"] == "param[0]"  # a subset: no safe name
    assert set(g.successors(("group", "SGD", 1))) == {("param", "SGD", 2), ("param", "SGD", 3)}
    buf = g.nodes["state", "SGD", 0, "momentum_buffer"]
    assert buf["tensor_shape"] == [8, 4] and buf["derived"] is not recorded
    adam_state = {
        n[3]: d["tensor_shape"] for n, d in g.nodes(data=True) if n[:3] == ("state", "Adam", 0)
    }
    assert adam_state == {
        "step": [],
        "exp_avg": [2, 8],
        "exp_avg_sq": [2, 8],
        "max_exp_avg_sq": [2, 8],
    }
    assert ("derived from the optimizer's rules" in g.graph["note"]) is not recorded


def test_state_is_derived_when_not_recorded():
    assert optim.derived_state("SGD", {"momentum": 0.9}, [3]) == {"momentum_buffer": [3]}
    assert optim.derived_state("SGD", {"momentum": 0}, [3]) == {}
    assert set(optim.derived_state("RMSprop", {"momentum": 0.1, "centered": True}, [2])) == {
        "step",
        "square_avg",
        "momentum_buffer",
        "grad_avg",
    }


def test_recorded_state_wins_over_derived(trace_path):
    with tracer.record(trace_path):
        sink, tid = _trace.sink, threading.get_ident()
        step, group, update = sink.next_id(), sink.next_id(), sink.next_id()
        attrs = {"param": 0, "name": "w", "shape": [3], "state": {"exp_avg": [3]}}
        sink.append((update, 0, tid, 3, 4, "optim.update", "w", "f", attrs))
        sink.append((group, 0, tid, 2, 5, "optim.group", "group[0]", "f", {"index": 0}))
        sink.append((step, 0, tid, 1, 6, "optim.step", "Lion.step", "f", {"optimizer": "Lion"}))
    g = optim.build(tracer.load(trace_path))
    state = g.nodes["state", "Lion", 0, "exp_avg"]
    assert state["tensor_shape"] == [3] and not state["derived"]


def test_top_keeps_the_slowest_parameters(trace_path):
    t = _record(trace_path)
    full = optim.build(t)
    g = optim.build(t, top=2)
    times = sorted((d["update_ns"] for _n, d in full.nodes(data=True) if d["type"] == "param"))
    kept = sorted(d["update_ns"] for _n, d in g.nodes(data=True) if d["type"] == "param")
    assert kept == times[-2:]
    assert g.graph["left_out"]["dropped"] == len(times) - 2


def test_renders_to_svg(trace_path, tmp_path, svg_text):
    out = draw(optim.build(_record(trace_path)), str(tmp_path / "o.svg"))
    assert out.warnings == []
    text = svg_text(out.path)
    for name in ("SGD", "Adam", "param_groups[1]", "momentum_buffer [8, 4]", "exp_avg_sq [2]"):
        assert name in text
