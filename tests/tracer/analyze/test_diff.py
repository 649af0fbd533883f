"""``tracer.analyze.diff`` on hand-made trace pairs: every expectation checkable on paper."""

from __future__ import annotations

import json

import pytest

from tests import handmade
from tests.handmade import Span
from tests.torchscope_cli import torchscope
from tracer.analyze.diff import diff
from tracer.analyze.diff_report import render_text, report


def _pair(tmp_path, a_roots, b_roots):
    a = handmade.write(str(tmp_path / "a.tsdb"), a_roots)
    b = handmade.write(str(tmp_path / "b.tsdb"), b_roots)
    return a, b


def _changes(data) -> list[tuple[str, str, list[str], int]]:
    return [(c["change"], c["lane"], c["path"], c["segment"]) for c in data["changes"]]


def test_same_structure_twice_as_slow_is_no_structural_difference(tmp_path):
    a, b = _pair(tmp_path, handmade.two_steps(), handmade.two_steps(scale=2))
    d = diff(a, b)
    assert not d.structural
    data = report(d)
    assert data["counts"] == {"missing": 0, "extra": 0, "reordered": 0, "aligned": 10}
    assert data["changes"] == []
    kinds = {k["kind"]: k for k in data["kinds"]}
    # self times from the module docstring of tests/handmade.py, doubled in B
    assert kinds["step"]["a_self_ns"] == 600 and kinds["step"]["b_self_ns"] == 1200
    assert {k["kind"]: k["ratio"] for k in data["kinds"]} == {
        "step": 2.0, "module.forward": 2.0, "optim.step": 2.0, "data.next": 2.0,
    }  # fmt: skip
    modules = {m["module"]: m for m in data["modules"]}
    assert modules["net.fc"]["a_ns"] == 790 and modules["net.fc"]["b_ns"] == 1580
    assert modules["net"]["a_count"] == modules["net"]["b_count"] == 2


def test_lanes_are_named_by_role_and_thread_name_never_by_id(tmp_path):
    b_roots = handmade.two_steps()
    b_roots[-1].thread = (99999, "worker 0", None)  # another tid, the same thread name
    a, b = _pair(tmp_path, handmade.two_steps(), b_roots)
    data = report(diff(a, b))
    assert not data["structural"]
    assert [lane["lane"] for lane in data["lanes"]] == ["main / main", "main / worker 0"]
    assert data["lanes"][0]["a_steps"] == data["lanes"][0]["b_steps"] == 2


def test_an_extra_hook_and_a_second_scheduler_step_are_extra_spans_with_their_path(tmp_path):
    b_roots = handmade.two_steps()
    step1 = b_roots[1]
    fc = step1.children[0].children[0]
    fc.children.append(Span("hook.forward", "Probe.hook", 1400, 1440))
    step1.children.append(Span("sched.step", "StepLR.step", 1710, 1720))
    step1.children.append(Span("sched.step", "StepLR.step", 1730, 1740))
    a_roots = handmade.two_steps()
    a_roots[1].children.append(Span("sched.step", "StepLR.step", 1710, 1720))
    a, b = _pair(tmp_path, a_roots, b_roots)
    d = diff(a, b)
    assert d.structural
    data = report(d)
    assert data["counts"]["extra"] == 2 and data["counts"]["missing"] == 0
    assert _changes(data) == [
        ("extra", "main / main",
         ["step step", "module.forward net", "module.forward net.fc", "hook.forward Probe.hook"],
         2),
        ("extra", "main / main", ["step step", "sched.step StepLR.step #2"], 2),
    ]  # fmt: skip
    first = data["changes"][0]
    assert first["step"] == {"ordinal": 1, "index": None, "name": "step"}
    assert first["a_row"] is None and first["b_ns"] == 40
    text = render_text(data)
    assert "+ extra     hook.forward Probe.hook" in text
    assert "in step step > module.forward net > module.forward net.fc" in text


def test_a_missing_subtree_is_reported_once_with_its_size(tmp_path):
    b_roots = handmade.two_steps()
    b_roots[0].children[0].children = []  # step 0's net calls no fc in B
    a, b = _pair(tmp_path, handmade.two_steps(), b_roots)
    data = report(diff(a, b))
    assert data["counts"]["missing"] == 2  # fc and fc #2, each a node of its own
    assert [c["path"][-1] for c in data["changes"]] == [
        "module.forward net.fc",
        "module.forward net.fc #2",
    ]
    b_roots = handmade.two_steps()
    del b_roots[0].children[0]  # step 0 has no forward at all: one change, 3 spans
    a, b = _pair(tmp_path, handmade.two_steps(), b_roots)
    data = report(diff(a, b))
    assert [(c["change"], c["path"], c["spans"]) for c in data["changes"]] == [
        ("missing", ["step step", "module.forward net"], 3)
    ]


def test_siblings_in_another_order_are_reordered(tmp_path):
    b_roots = handmade.two_steps()
    net, sgd = b_roots[0].children
    sgd.start, sgd.end = 50, 90  # the optimizer steps before the forward
    b_roots[0].children = [sgd, net]
    a, b = _pair(tmp_path, handmade.two_steps(), b_roots)
    data = report(diff(a, b))
    assert data["counts"] == {"missing": 0, "extra": 0, "reordered": 1, "aligned": 10}
    (change,) = data["changes"]
    assert change["change"] == "reordered" and change["segment"] == 1
    assert change["path"][-1] in ("module.forward net", "optim.step SGD")


def test_a_different_number_of_steps(tmp_path):
    b_roots = handmade.two_steps()
    third = Span("step", "step", 2200, 2300, [Span("optim.step", "SGD", 2210, 2290)])
    b_roots.append(third)
    a, b = _pair(tmp_path, handmade.two_steps(), b_roots)
    data = report(diff(a, b))
    assert [(c["change"], c["path"], c["spans"], c["segment"]) for c in data["changes"]] == [
        ("extra", ["step step"], 2, 3)
    ]
    assert data["lanes"][0]["a_steps"] == 2 and data["lanes"][0]["b_steps"] == 3
    assert "main / main, step #2 ('step')" in render_text(data)


def test_steps_marked_in_one_trace_only_align_without_them(tmp_path):
    a_roots = handmade.two_steps()
    b_roots = [child for step in handmade.two_steps()[:2] for child in step.children]
    b_roots.append(handmade.two_steps()[2])
    a, b = _pair(tmp_path, a_roots, b_roots)
    data = report(diff(a, b))
    assert not data["structural"], data["changes"]
    assert data["counts"]["aligned"] == 8
    assert any("only A marks steps" in n for n in data["notes"])


def test_imports_stand_aside(tmp_path):
    b_roots = handmade.two_steps()
    b_roots[0].children[0].children.append(Span("import", "json", 660, 690))
    a, b = _pair(tmp_path, handmade.two_steps(), b_roots)
    data = report(diff(a, b))
    assert not data["structural"]
    assert data["b"]["spans"] == 11 and data["b"]["aligned_spans"] == 10


def test_cli_exit_status_and_json_schema(tmp_path):
    a, _ = _pair(tmp_path, handmade.two_steps(), handmade.two_steps(scale=3))
    same = torchscope("diff", a.path, str(tmp_path / "b.tsdb"), "--json")
    assert same.returncode == 0, same.stderr
    data = json.loads(same.stdout)
    assert data["schema"] == "torchscope.diff" and data["schema_version"] == 1
    assert set(data) == {
        "schema", "schema_version", "a", "b", "structural", "counts", "lanes", "changes",
        "changes_left_out", "kinds", "modules", "steps", "notes", "warnings",
    }  # fmt: skip
    assert [(s["ordinal"], s["a_ns"], s["b_ns"], s["ratio"]) for s in data["steps"]] == [
        (0, 1000, 3000, 3.0),
        (1, 900, 2700, 3.0),
    ]
    assert "step time B/A, main / main: median 3.00x (3.00x to 3.00x over 2 steps)" in (
        torchscope("diff", a.path, str(tmp_path / "b.tsdb")).stdout
    )
    b_roots = handmade.two_steps()
    b_roots[0].children.append(Span("sched.step", "StepLR.step", 960, 990))
    handmade.write(str(tmp_path / "c.tsdb"), b_roots)
    changed = torchscope("diff", a.path, str(tmp_path / "c.tsdb"))
    assert changed.returncode == 1
    assert "structure: DIFFERENT: 0 missing (A only), 1 extra (B only)" in changed.stdout
    assert "+ extra     sched.step StepLR.step" in changed.stdout


@pytest.mark.parametrize("content", [None, b"not a trace"])
def test_cli_bad_input_is_exit_2_naming_the_file(tmp_path, content):
    good = handmade.write(str(tmp_path / "a.tsdb"), handmade.two_steps())
    bad = tmp_path / "bad.tsdb"
    if content is not None:
        bad.write_bytes(content)
    result = torchscope("diff", good.path, str(bad))
    assert result.returncode == 2
    assert str(bad) in result.stderr and "Traceback" not in result.stderr


def test_kinds_left_out_are_transparent_their_children_rise(tmp_path):
    a_roots = handmade.two_steps()
    sgd = a_roots[0].children[1]
    sgd.children = [Span("optim.group", "group[0]", 760, 940,
                         [Span("optim.update", "net.fc.weight", 770, 930)])]  # fmt: skip
    a_roots.append(Span("swa.update_bn", "AveragedModel", 2200, 2400,
                        [Span("module.forward", "AveragedModel", 2210, 2390)]))  # fmt: skip
    b_roots = handmade.two_steps()
    b_roots.append(Span("module.forward", "AveragedModel", 2210, 2390))
    a, b = _pair(tmp_path, a_roots, b_roots)
    every = report(diff(a, b))
    assert [(c["change"], c["path"], c["spans"]) for c in every["changes"]] == [
        ("missing", ["step step", "optim.step SGD", "optim.group group[0]"], 2),
        ("missing", ["swa.update_bn AveragedModel"], 2),
        ("extra", ["module.forward AveragedModel"], 1),
    ]
    public = report(diff(a, b, ["public"]))
    assert not public["structural"], public["changes"]
    assert public["counts"]["aligned"] == 11
    assert {k["kind"] for k in public["kinds"]} == {
        "step",
        "module.forward",
        "optim.step",
        "data.next",
    }
    only = report(diff(a, b, ["module.*"]))
    assert not only["structural"] and only["counts"]["aligned"] == 6


def test_node_table_finds_every_key_through_collisions():
    """The open-addressing table, small enough that probes collide: the second
    trace finds the first one's nodes, and a repeated name is a new occurrence."""
    import numpy as np

    from tracer.analyze.diff import assign_nodes

    n = 40
    names = np.array([*range(n - 1), 5], dtype=np.int64)  # name 5 twice
    args = (np.arange(n), np.full(n, -1), np.ones(n, dtype=bool), np.full(n, -2),
            np.zeros(n, dtype=np.int64), names)  # fmt: skip
    slots = np.full((128, 5), -1, dtype=np.int64)
    tables = [np.empty(2 * n, dtype=np.int64) for _ in range(4)]
    first, count = assign_nodes(*args, slots, *tables, 0)
    assert count == n and first.tolist() == list(range(n))
    assert tables[3][n - 1] == 1 and tables[2][n - 1] == 5  # the second name 5
    second, count = assign_nodes(*args, slots, *tables, count)
    assert count == n and second.tolist() == first.tolist()


def test_view_with_diff_refuses_a_bad_second_trace_before_the_ui(tmp_path):
    good = handmade.write(str(tmp_path / "a.tsdb"), handmade.two_steps())
    result = torchscope("view", good.path, "--diff", str(tmp_path / "missing.tsdb"))
    assert result.returncode == 2
    assert "missing.tsdb" in result.stderr and "Traceback" not in result.stderr


def test_siblings_on_two_threads_are_never_reordered(tmp_path):
    """Replicas under parallel_apply start in either order: not a structural change."""

    def replicas(first: int) -> list[Span]:
        r0 = (7001, "replica 0", "sim:0")
        r1 = (7002, "replica 1", "sim:1")
        apply = Span("dp.parallel_apply", "parallel_apply", 0, 1000, [
            Span("dp.replica", "replica 0", 100 + first, 500, thread=r0),
            Span("dp.replica", "replica 1", 300 - first, 600, thread=r1),
        ])  # fmt: skip
        return [Span("step", "step", 0, 1100, [apply])]

    a, b = _pair(tmp_path, replicas(0), replicas(250))  # B: replica 1 starts first
    data = report(diff(a, b))
    assert not data["structural"], data["changes"]
    assert data["counts"]["aligned"] == 4


def test_view_with_diff_hands_both_traces_and_the_kinds_to_the_viewer(tmp_path, monkeypatch):
    import tracer.demo
    from tracer.cli import main

    a, b = _pair(tmp_path, handmade.two_steps(), handmade.two_steps())
    calls = []
    monkeypatch.setattr(tracer.demo, "find_viewer", lambda: lambda *a, **k: calls.append((a, k)))
    assert main(["view", a.path, "--diff", b.path, "--kinds", "module.*, step"]) == 0
    assert calls == [((a.path,), {"diff": b.path, "kinds": ["module.*", "step"]})]
    assert main(["view", a.path]) == 0 and calls[-1] == ((a.path,), {})


def test_an_empty_trace_against_itself_and_against_a_full_one(tmp_path):
    from tracer.analyze.diff_tree import DiffTree

    empty = handmade.write(str(tmp_path / "e.tsdb"), [])
    full = handmade.write(str(tmp_path / "f.tsdb"), handmade.two_steps())
    same = diff(empty, empty)
    assert not same.structural and same.counts()["aligned"] == 0
    assert DiffTree(same).segments() == [] and DiffTree(same).next_change() is None
    data = report(diff(empty, full))
    # B's steps have no counterpart to align with: its lane is compared without them
    assert data["counts"] == {"missing": 0, "extra": 5, "reordered": 0, "aligned": 0}
    assert {c["path"][-1] for c in data["changes"]} == {
        "module.forward net", "optim.step SGD", "data.next __next__",
        "module.forward net #2", "optim.step SGD #2",
    }  # fmt: skip


def test_kinds_that_match_nothing_are_bad_input(tmp_path):
    a, b = _pair(tmp_path, handmade.two_steps(), handmade.two_steps())
    with pytest.raises(ValueError, match=r"no span of the kinds modul\.forward"):
        diff(a, b, ["modul.forward"])
    result = torchscope("diff", a.path, b.path, "--kinds", "modul.forward")
    assert result.returncode == 2
    assert "the traces hold data.next, module.forward, optim.step, step" in result.stderr


@pytest.mark.multiprocess  # forked ranks, each writing its own part
def test_rank_lanes_align_by_rank_and_an_extra_step_shows_in_each(tmp_path):
    import tracer
    from tracer.graphs.synth import record_syncbn

    paths = [str(tmp_path / f"{name}.tsdb") for name in ("a", "b", "c")]
    for path, steps in zip(paths, (2, 2, 3)):
        record_syncbn(path, world_size=2, steps=steps)
    a, b, c = (tracer.load(p) for p in paths)
    same = report(diff(a, b))
    assert not same["structural"], same["changes"]
    lanes = {lane["lane"]: lane for lane in same["lanes"]}
    assert {"rank 0 / rank 0 [cpu]", "rank 1 / rank 1 [cpu]"} <= set(lanes)
    assert lanes["rank 1 / rank 1 [cpu]"]["a_steps"] == 2
    more = report(diff(a, c))
    # a step: itself, the forward with 2 layers x 5 spans, the backward with 2 x 4: 21
    assert [(ch["change"], ch["lane"], ch["path"], ch["spans"]) for ch in more["changes"]] == [
        ("extra", f"rank {r} / rank {r} [cpu]", ["step step"], 21) for r in (0, 1)
    ]
