"""The DataParallel graph: scatter -> replicas per device -> gather, shapes, errors."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

import tracer
from reimpl import _trace
from tracer.graphs import dataparallel, draw, modules, select


def test_last_call_is_the_failing_one_with_its_error(dp_trace):
    g = dataparallel.build(dp_trace)
    replicas = {d["device"]: d for _n, d in g.nodes(data=True) if d["type"] == "replica"}
    assert set(replicas) == {"sim:0", "sim:1"}
    assert "Expected all tensors to be on the same device" in replicas["sim:1"]["error"]
    assert replicas["sim:0"]["error"] is None
    assert "dp.gather" not in g  # parallel_apply re-raised: the call never gathered
    assert g.graph["note"].startswith("call 2 of 2")
    hooks = [d for _n, d in g.nodes(data=True) if d.get("kind") == "hook.forward"]
    assert len(hooks) == 2  # the shared hook ran inside both replicas


def test_a_complete_call_with_shapes_on_the_edges(dp_trace):
    g = dataparallel.build(dp_trace, select.select(dp_trace, step=0))
    for kind in (*dataparallel.DP_KINDS[:-2], "dp.gather"):
        assert kind in g, kind
    for device in ("sim:0", "sim:1"):
        node = ("replica", device)
        assert g.nodes[node]["cluster"] == f"device {device}"
        assert g.edges["dp.scatter", node]["shape"] == "[4, 6]"
        assert g.edges[node, "dp.gather"]["shape"] == "[4, 4]"
        assert g.edges["dp.parallel_apply", node]["type"] == "launch"
    assert g.edges["input", "dp.scatter"]["label"] == "[8, 6]"
    assert g.edges["dp.gather", "output"]["label"] == "[8, 4]"
    assert set(g.graph["clusters"]) == {"device sim:0", "device sim:1"}


def test_degrades_without_attributes_or_parents(trace_path):
    """Another DataParallel may emit fewer attrs: still a graph, with fewer labels."""
    with tracer.record(trace_path):
        with _trace.span("dp.scatter", "scatter"):
            pass

        def replica(k: int) -> None:
            _trace.set_thread_info(f"worker {k}", f"sim:{k}")
            with _trace.span("dp.replica", "replica"):  # no link, no device attr
                pass

        for k in range(3):
            th = threading.Thread(target=replica, args=(k,))
            th.start()
            th.join()
        with _trace.span("dp.gather", "gather", out=[{"shape": [6, 2], "dtype": "float32"}]):
            pass
    g = dataparallel.build(tracer.load(trace_path))
    assert {d["device"] for _n, d in g.nodes(data=True) if d["type"] == "replica"} == {
        "sim:0",
        "sim:1",
        "sim:2",
    }
    assert g.edges["dp.scatter", ("replica", "sim:2")]["shape"] is None
    assert g.nodes["output"]["label"].startswith("output\\n[6, 2]")


def test_no_dataparallel_says_so(trace_path):
    with tracer.record(trace_path):
        with _trace.span("step", "step"):
            pass
    t = tracer.load(trace_path)
    g = dataparallel.build(t, np.ones(t.n, dtype=bool))
    assert g.number_of_nodes() == 0 and "DataParallel was not called" in g.graph["note"]


def test_shape_text_reads_common_forms():
    assert dataparallel.shape_text([2, 3]) == "[2, 3]"
    assert dataparallel.shape_text({"shape": [2], "dtype": "f"}) == "[2]"
    assert dataparallel.shape_text([[2, 3], {"shape": [1]}]) == "[2, 3], [1]"
    assert dataparallel.shape_text("cpu") is None


def test_renders_to_svg(dp_trace, tmp_path, svg_text):
    out = draw(dataparallel.build(dp_trace), str(tmp_path / "dp.svg"))
    assert out.warnings == []
    text = svg_text(out.path)
    for name in ("scatter", "replica 0 [sim:0]", "device sim:1", "Expected all tensors"):
        assert name in text


def test_the_real_deoldify_sample(trace_path):
    """samples/dataparallel_hooks.py on reimpl's DataParallel: the bug, drawn."""
    sample = pytest.importorskip("samples.dataparallel_hooks")
    with tracer.record(trace_path):
        with pytest.raises(RuntimeError, match="same device"):
            sample.run("buggy")
    t = tracer.load(trace_path)
    g = dataparallel.build(t)
    errors = {d["device"]: d["error"] for _n, d in g.nodes(data=True) if d["type"] == "replica"}
    assert set(errors) == {"sim:0", "sim:1"}
    assert any(e and "Expected all tensors to be on the same device" in e for e in errors.values())
    assert g.edges["dp.scatter", ("replica", "sim:0")]["shape"] == "[2, 3, 16, 16]"
    assert g.edges["input", "dp.scatter"]["label"] == "[4, 3, 16, 16]"  # chunks joined on dim 0
    m = modules.build(t)
    hooks = [(n, d) for n, d in m.nodes(data=True) if d["type"] == "hook"]
    assert len(hooks) == 2 and all(d["shared_threads"] for _n, d in hooks)
    targets = {m.nodes[s]["path"] for n, _d in hooks for s in m.successors(n)}
    assert targets == {"module.encoder.0", "module.encoder.1"}  # replica paths resolved
    enc = next(d for _n, d in m.nodes(data=True) if d.get("path") == "module.encoder.0")
    assert enc["calls"] == 2  # one forward per replica, counted on the original


def test_resolve_replica_paths():
    mods = {"DataParallel": "DataParallel", "module": "UNet", "module.encoder.0": "Sequential"}
    assert modules.resolve("encoder.0", mods, "DataParallel") == "module.encoder.0"
    assert modules.resolve("UNet", mods, "DataParallel") == "module"
    assert modules.resolve("encoder.0", mods, "DataParallel", frozenset({"encoder.0"})) is None
    assert modules.resolve("decoder", mods, "DataParallel") is None


def test_backward_reductions_join_their_call(trace_path, svg_text, tmp_path):
    """Two calls, each with its backward: one reduce_add per call, an edge per device."""
    from reimpl import nn
    from reimpl.nn.parallel import DataParallel

    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    dp = DataParallel(model, device_ids=["sim:0", "sim:1"])
    with tracer.record(trace_path):
        for i in range(2):
            with _trace.step(i):
                dp(torch.randn(6, 3)).sum().backward()
    t = tracer.load(trace_path)
    assert len(dataparallel.dp_calls(t, np.ones(t.n, dtype=bool))) == 2  # no third, open call
    g = dataparallel.build(t)
    (reduce,) = [n for n, d in g.nodes(data=True) if d["type"] == "reduce_add"]
    nbytes = sum(p.numel() * p.element_size() for p in model.parameters())
    assert g.nodes[reduce]["attrs"]["sizes"] == {"sim:0": nbytes, "sim:1": nbytes}
    for device in ("sim:0", "sim:1"):
        edge = g.edges[("replica", device), reduce]
        assert edge["type"] == "reduce" and edge["label"] == f"grads {nbytes} B"
    first = dataparallel.build(t, select.select(t, step=0))
    assert [d["row"] for _n, d in first.nodes(data=True) if d["type"] == "reduce_add"] != [
        g.nodes[reduce]["row"]
    ]  # each call draws its own backward
    out = draw(g, str(tmp_path / "dp.svg"))
    assert "reduce_add (backward)" in svg_text(out.path)
