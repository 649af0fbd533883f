"""The Diff view (``torchscope view A --diff B``) driven with Pilot, and its snapshot."""

from __future__ import annotations

from textual.pilot import Pilot
from textual.widgets import Static, Tree
from tui_helpers import SIZE, ready

from tests import handmade
from tests.handmade import Span
from tui.app import TorchscopeApp
from tui.screens.diff import DiffScreen
from tui.views.diff import DiffView


def _pair(tmp_path, changed: bool) -> tuple[str, str]:
    """two_steps against itself, or against a twin with an extra hook in step 1's
    fc and its SGD moved before the forward in step 0."""
    a = str(tmp_path / "a.tsdb")
    b = str(tmp_path / "b.tsdb")
    handmade.write(a, handmade.two_steps())
    b_roots = handmade.two_steps(scale=2)
    if changed:
        fc = b_roots[1].children[0].children[0]
        fc.children.append(Span("hook.forward", "Probe.hook", 2800, 2880))
        net, sgd = b_roots[0].children
        sgd.start, sgd.end = 20, 180
        b_roots[0].children = [sgd, net]
    handmade.write(b, b_roots)
    return a, b


def _labels(tree: Tree) -> list[str]:
    out = []

    def walk(node) -> None:
        for child in node.children:
            out.append(str(child.label))
            if child.is_expanded:
                walk(child)

    walk(tree.root)
    return out


async def test_changes_are_marked_and_n_walks_them(tmp_path):
    a, b = _pair(tmp_path, changed=True)
    app = TorchscopeApp(a, diff=b)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        assert isinstance(app.screen, DiffScreen)
        view = app.screen.query_one(DiffView)
        summary = str(view.query_one("#diff-summary", Static).render())
        assert "structure differs: 0 missing (A only), 1 extra (B only), 1 reordered" in summary
        tree = view.query_one(Tree)
        labels = _labels(tree)
        assert labels[0] == "main / main"
        # opened along the changes: the extra hook under step 1's fc is visible
        hook = next(label for label in labels if "Probe.hook" in label)
        assert hook.startswith("+ hook.forward Probe.hook") and "B 80 ns" in hook
        fc = next(label for label in labels if "net.fc" in label and "[1 below]" in label)
        assert "300 ns -> 600 ns  2.00x" in fc
        await pilot.press("n")
        first = tree.cursor_node.data.key
        assert view.tree_model.change(first) == "reordered"
        await pilot.press("n")
        second = tree.cursor_node.data.key
        assert view.tree_model.change(second) == "extra"
        assert view.tree_model.diff.label(second) == "hook.forward Probe.hook"
        await pilot.press("n")  # wraps round
        assert tree.cursor_node.data.key == first


async def test_same_structure_says_so(tmp_path):
    a, b = _pair(tmp_path, changed=False)
    app = TorchscopeApp(a, diff=b)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        view = app.screen.query_one(DiffView)
        summary = str(view.query_one("#diff-summary", Static).render())
        assert "same structure: 10 spans aligned" in summary
        await pilot.press("n")
        assert any("No structural difference" in n.message for n in app._notifications)


async def test_a_bad_second_trace_is_named(tmp_path):
    a, _ = _pair(tmp_path, changed=False)
    bad = tmp_path / "bad.tsdb"
    bad.write_bytes(b"not a trace")
    app = TorchscopeApp(a, diff=str(bad))
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        summary = str(app.screen.query_one("#diff-summary", Static).render())
        assert str(bad) in summary


def test_diff_view_snapshot(snap_compare, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative names: the picture shows no temporary path
    _pair(tmp_path, changed=True)

    async def settle(pilot: Pilot) -> None:
        await ready(pilot)
        await pilot.press("n", "n")
        await pilot.pause(0.1)

    app = TorchscopeApp("a.tsdb", diff="b.tsdb")
    assert snap_compare(app, terminal_size=SIZE, run_before=settle)


async def test_long_lists_come_a_page_at_a_time_and_n_pages_on(tmp_path, monkeypatch):
    from tui.views import diff as diff_view

    monkeypatch.setattr(diff_view, "PAGE", 2)

    def steps() -> list[Span]:
        return [
            Span("step", "step", k * 100, k * 100 + 90,
                 [Span("optim.step", "SGD", k * 100 + 10, k * 100 + 80)])
            for k in range(5)
        ]  # fmt: skip

    a_roots, b_roots = steps(), steps()
    b_roots[4].children.append(Span("sched.step", "StepLR.step", 485, 488))
    a, b = str(tmp_path / "a.tsdb"), str(tmp_path / "b.tsdb")
    handmade.write(a, a_roots)
    handmade.write(b, b_roots)
    app = TorchscopeApp(a, diff=b)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        view = app.screen.query_one(DiffView)
        tree = view.query_one(Tree)
        lane = tree.root.children[0]
        assert [str(n.label) for n in lane.children] == [
            "step #0 (step)",
            "step #1 (step)",
            "... 3 more (enter)",
        ]
        tree.move_cursor(lane.children[-1])
        await pilot.press("enter")  # the next page
        assert [str(n.label) for n in lane.children][2:] == [
            "step #2 (step)",
            "step #3 (step)",
            "... 1 more (enter)",
        ]
        await pilot.press("n")  # step #4 is past the page: the view pages on to it
        node = tree.cursor_node
        assert view.tree_model.diff.label(node.data.key) == "sched.step StepLR.step"
        assert [str(n.label) for n in lane.children][-1].startswith("step #4 (step)")
