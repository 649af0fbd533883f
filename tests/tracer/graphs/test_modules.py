"""The module graph on real reimpl modules: tree, tensors, hooks shared across threads."""

from __future__ import annotations

import threading

import torch

import tracer
from reimpl import _trace, nn
from tracer.graphs import draw, modules


class Store:
    """A hook object keeping state, as the DeOldify U-Net does."""

    def __init__(self) -> None:
        self.stored = None

    def hook(self, module, inputs, output) -> None:
        self.stored = output


def _record(path: str, threads: int = 2) -> tracer.Trace:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))
    shared = Store()
    model[0].register_forward_hook(shared.hook)
    model[3].register_forward_hook(shared.hook)
    model[2].register_forward_pre_hook(lambda m, i: None)
    with tracer.record(path):

        def replica(k: int) -> None:
            _trace.set_thread_info(f"replica {k}", f"sim:{k}")
            model(torch.randn(3, 4))

        for k in range(threads):
            th = threading.Thread(target=replica, args=(k,))
            th.start()
            th.join()
        # the pre-hook also runs once on the main thread only when threads == 1
    return tracer.load(path)


def _hooks(g):
    return {
        d["name"].rsplit(".", 2)[-2]: (n, d) for n, d in g.nodes(data=True) if d["type"] == "hook"
    }


def test_tree_parameters_buffers_and_forward_time(trace_path):
    g = modules.build(_record(trace_path))
    mods = {d["path"]: n for n, d in g.nodes(data=True) if d["type"] == "module"}
    assert set(mods) == {"Sequential", "0", "1", "2", "3"}
    assert set(g.successors(mods["Sequential"])) >= {mods["0"], mods["1"], mods["2"], mods["3"]}
    assert g.nodes[mods["1"]]["cls"] == "BatchNorm1d" and g.nodes[mods["1"]]["calls"] == 2
    assert g.nodes[mods["1"]]["forward_ns"] > 0
    tensors = {
        (d["type"], n[2]): d["tensor_shape"]
        for n, d in g.nodes(data=True)
        if d["type"] in ("parameter", "buffer")
    }
    assert tensors[("parameter", "0.weight")] == [8, 4]
    assert tensors[("buffer", "1.running_mean")] == [8]
    assert ("buffer", "1.num_batches_tracked") in tensors


def test_a_shared_hook_object_is_one_node_with_an_edge_to_each_module(trace_path):
    g = modules.build(_record(trace_path))
    node, hook = _hooks(g)["Store"]
    targets = {g.nodes[m]["path"] for m in g.successors(node)}
    assert targets == {"0", "3"}
    assert hook["calls"] == 4
    assert hook["shared_threads"] and hook["threads"] == ["replica 0 [sim:0]", "replica 1 [sim:1]"]
    assert hook["color"] == modules.ALERT
    edge = g.edges[node, next(m for m in g.successors(node) if g.nodes[m]["path"] == "0")]
    assert edge["kinds"] == ["forward"]
    assert edge["by_thread"] == {"replica 0 [sim:0]": 1, "replica 1 [sim:1]": 1}


def test_a_hook_called_from_one_thread_is_not_highlighted(trace_path):
    g = modules.build(_record(trace_path, threads=1))
    _node, hook = _hooks(g)["Store"]
    assert not hook["shared_threads"] and hook.get("color") is None


def test_pruning_keeps_the_slowest_modules_hooked_ones_and_ancestors(trace_path):
    t = _record(trace_path)
    g = modules.build(t, top=0)
    paths = {d["path"] for _n, d in g.nodes(data=True) if d["type"] == "module"}
    assert paths == {"Sequential", "0", "2", "3"}  # the root and every hooked module
    assert g.graph["left_out"]["dropped"] == 1
    assert g.graph["note"] == "showing 4 of 5 modules: left out 1"
    full = {d["path"]: d["forward_ns"] for _n, d in modules.build(t).nodes(data=True) if "cls" in d}
    second = sorted(full, key=lambda p: -full[p])[1]  # the heaviest after the root
    g = modules.build(t, top=2)
    assert second in {d["path"] for _n, d in g.nodes(data=True) if d["type"] == "module"}


def test_renders_to_svg(trace_path, tmp_path, svg_text):
    out = draw(modules.build(_record(trace_path)), str(tmp_path / "m.svg"))
    assert out.warnings == []
    text = svg_text(out.path)
    for name in ("BatchNorm1d", "running_mean [8] float32", "Store.hook", "called from 2 threads:"):
        assert name in text


def test_no_snapshot_says_so(trace_path):
    with tracer.record(trace_path):
        with _trace.span("step", "step"):
            pass
    g = modules.build(tracer.load(trace_path))
    assert g.number_of_nodes() == 0 and "no module snapshot" in g.graph["note"]
