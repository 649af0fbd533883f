"""The app driven with Pilot: tree navigation, sources, search, views, filters, steps."""

from __future__ import annotations

import inspect
import shutil
import sqlite3

import numpy as np
import torch
from textual.widgets import TabbedContent, Tree
from tui_helpers import SIZE, ready, type_text

import tracer
from reimpl import _trace
from tracer.file.findings import insert_finding
from tui.app import TorchscopeApp, run_app
from tui.screens.help import HelpScreen
from tui.screens.main import MainScreen
from tui.views import CallsView
from tui.widgets.calltree import CallTree
from tui.widgets.details import DetailsPane
from tui.widgets.source import SourcePane
from tui.widgets.timeline import Timeline


def _calls(app: TorchscopeApp) -> CallsView:
    return app.screen.query_one(CallsView)


async def test_navigate_tree_opens_nodes_lazily(sample):
    app = TorchscopeApp(sample)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        assert isinstance(app.screen, MainScreen)
        tree = app.screen.query_one("#calltree", CallTree)
        assert tree.has_focus
        await pilot.press("down", "down", "down")  # main > MainThread > import > step 0
        row = tree.cursor_row
        t = tree.model.trace
        assert row is not None and t.kind_of(row) == "step"
        step_node = tree.cursor_node
        assert step_node is not None and not step_node.children  # not built yet
        await pilot.press("right")  # Tree: expand
        await pilot.pause()
        assert len(step_node.children) == len(t.children(row)) == 9
        await pilot.press("down")
        child = tree.cursor_row
        assert child is not None and t.parent[child] == row
        details = app.screen.query_one("#details", DetailsPane)
        assert details.row == child
        assert app.screen.query_one(Timeline).row == child


async def test_batchnorm_span_shows_reimpl_and_torch_sources(sample):
    app = TorchscopeApp(sample)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("slash")
        await type_text(pilot, "bn.stats")
        await pilot.press("enter")
        await pilot.pause()
        tree = app.screen.query_one("#calltree", CallTree)
        row = tree.cursor_row
        assert row is not None and tree.model.trace.kind_of(row) == "bn.stats"
        pane = app.screen.query_one(SourcePane)
        assert pane.reimpl is not None and pane.reimpl.error is None
        assert pane.reimpl.file is not None and pane.reimpl.file.endswith(
            "reimpl/nn/modules/_functions.py"
        )
        assert "def forward" in pane.reimpl.text
        assert pane.upstream is not None and pane.upstream.error is None
        assert pane.upstream.file is not None
        assert pane.upstream.file.startswith(inspect.getfile(torch).rsplit("/", 1)[0])
        assert "def forward" in pane.upstream.text
        assert pane.show_mirror and pane.query_one("#torch-box").display
        await pilot.press("m")  # hide the torch side
        assert not pane.show_mirror and not pane.query_one("#torch-box").display
        await pilot.press("s")  # source only
        assert _calls(app).source_only and not tree.display


async def test_search_and_next_previous_hit(sample):
    app = TorchscopeApp(sample)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("slash")
        await type_text(pilot, "replica 1")
        await pilot.press("enter")
        await pilot.pause()
        calls = _calls(app)
        hits = calls.search_state.hits
        assert len(hits) == 3  # one dp.replica span per step
        tree = calls.tree
        first = tree.cursor_row
        assert first == hits[0]
        await pilot.press("n")
        assert tree.cursor_row == hits[1]
        await pilot.press("N", "N")
        assert tree.cursor_row == hits[-1]  # wraps around
        assert "3 hits" in calls.status


async def test_switch_views_and_empty_states(sample):
    app = TorchscopeApp(sample)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        tabs = app.screen.query_one(TabbedContent)
        for key, view in [("2", "modules"), ("3", "stats"), ("4", "findings"), ("5", "imports")]:
            await pilot.press(key)
            await pilot.pause()
            assert tabs.active == view
        findings = app.screen.query_one("#findings-view")
        assert "No findings" in str(findings.query_one(".empty-state").render())
        await pilot.press("1")
        assert tabs.active == "calls"
        await pilot.click("#--content-tab-stats")
        assert tabs.active == "stats"


async def test_filter_to_one_thread(sample):
    app = TorchscopeApp(sample)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("f")
        await pilot.pause()
        screen = app.screen
        labels = [str(o.prompt) for o in screen.query_one("OptionList").options]
        target = next(i for i, s in enumerate(labels) if "replica 1" in s)
        screen.query_one("OptionList").highlighted = target
        await pilot.press("enter")
        await pilot.pause()
        model = _calls(app).model
        lanes = model.visible_lanes()
        assert [lane.label for lane in lanes] == ["replica 1 [sim:1]"]
        tree = _calls(app).tree
        threads = [t for p in tree.root.children for t in p.children]
        assert len(tree.root.children) == 1 and len(threads) == 1
        assert "thread replica 1" in _calls(app).status
        await pilot.press("slash")
        await type_text(pilot, "features.1")
        await pilot.press("enter")
        await pilot.pause()
        row = tree.cursor_row  # found under the replica's own lane
        assert row is not None and model.trace.threads[model.trace.thread[row]].device == "sim:1"


async def test_steps_are_landmarks(sample):
    app = TorchscopeApp(sample)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        tree = _calls(app).tree
        t = tree.model.trace
        await pilot.press("right_square_bracket")
        first = tree.cursor_row
        assert first is not None and t.kind_of(first) == "step"
        await pilot.press("right_square_bracket")
        assert t.start_ns[tree.cursor_row] > t.start_ns[first]
        await pilot.press("left_square_bracket")
        assert tree.cursor_row == first
        await pilot.press("g", "1", "enter")
        await pilot.pause()
        assert t.attrs(tree.cursor_row)["index"] == 1


async def test_timeline_zoom_pan_and_click(sample):
    app = TorchscopeApp(sample)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("right_square_bracket")
        timeline = app.screen.query_one(Timeline)
        lo, hi = timeline.window
        await pilot.press("t", "plus")
        assert timeline.has_focus
        lo2, hi2 = timeline.window
        assert hi2 - lo2 < hi - lo
        await pilot.press("right")
        assert timeline.window[0] > lo2
        await pilot.press("0")
        assert timeline.window == (lo, hi)
        await pilot.click(Timeline, offset=(60, 2))  # a replica lane, inside the step
        await pilot.pause()
        row = _calls(app).tree.cursor_row
        assert row is not None and _calls(app).model.trace.kind_of(row) == "dp.replica"


async def test_help_lists_keys(sample):
    app = TorchscopeApp(sample)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert isinstance(app.screen, MainScreen)


async def test_trace_without_workers_snapshots_or_imports(tmp_path):
    path = str(tmp_path / "plain.tsdb")
    with tracer.record(path):
        for i in range(2):
            with _trace.step(i):
                with _trace.span("optim.step", "SGD.step"):
                    pass
    app = TorchscopeApp(path)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        assert isinstance(app.screen, MainScreen)
        for key in "23451":
            await pilot.press(key)
            await pilot.pause()
        for view in ("modules", "findings", "imports"):
            assert app.screen.query_one(f"#{view}-view").query(".empty-state")
        await pilot.press("right_square_bracket")
        assert _calls(app).tree.cursor_row is not None


async def test_unreadable_file_says_why_and_exits_1(tmp_path):
    bad = tmp_path / "bad.tsdb"
    bad.write_text("not a trace")
    app = TorchscopeApp(str(bad))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
        assert app.failed
        assert "not a torchscope trace" in str(app.screen.query_one("#loading-stage").render())
        await pilot.press("q")
    assert app.return_code == 1


def test_run_app_is_the_registered_viewer():
    from importlib.metadata import entry_points

    found = [e for e in entry_points(group="torchscope.viewers") if e.name == "tui"]
    assert found and found[0].load() is run_app


async def test_export_writes_the_subtree_graph(sample, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    app = TorchscopeApp(sample)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("right_square_bracket", "e")
        await ready(pilot)
        row = _calls(app).tree.cursor_row
    out = tmp_path / f"torchscope-span-{row}.svg"
    assert out.exists() and out.read_text().lstrip().startswith(("<?xml", "<svg"))


async def test_views_jump_to_spans_in_calls(sample, tmp_path):
    path = tmp_path / "with_findings.tsdb"
    shutil.copy(sample, path)
    t = tracer.load(str(path))
    hook = int(np.flatnonzero(t.kind == t.code("hook.forward"))[-1])
    with sqlite3.connect(path) as conn:
        insert_finding(conn, "shared-hook", "error", "hook state shared by replicas", hook, None)
    app = TorchscopeApp(str(path))
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        tabs = app.screen.query_one(TabbedContent)
        await pilot.press("4", "enter")
        await ready(pilot)
        assert tabs.active == "calls" and _calls(app).tree.cursor_row == hook
        await pilot.press("3")
        await ready(pilot)
        await pilot.press("enter")  # per-kind table: the slowest span of the top kind
        await ready(pilot)
        row = _calls(app).tree.cursor_row
        top_kind = _calls(app).model.kind_totals()[0][0]
        assert tabs.active == "calls" and t.kind_of(row) == top_kind
        await pilot.press("2", "down", "down", "down")  # SmallCNN > features > 0 > 1
        await pilot.pause()
        module = app.screen.query_one("#module-tree", Tree).cursor_node.data
        assert module["cls"] == "BatchNorm2d"
        assert module["hooks"]["forward"][0]["name"] == "samples.unet.StoreHook.__call__"
        await pilot.press("j")
        await ready(pilot)
        row = _calls(app).tree.cursor_row
        assert tabs.active == "calls" and t.name_of(row) == "features.1"


async def test_a_damaged_block_is_announced_in_the_viewer(sample, tmp_path):
    """The warning every command prints reaches the TUI too, as a notification."""
    path = tmp_path / "damaged.tsdb"
    shutil.copy(sample, path)
    with sqlite3.connect(path) as conn:  # one changed byte in a worker's block
        rowid, starts = conn.execute("SELECT id, starts FROM blocks WHERE part=2").fetchone()
        flipped = bytes([starts[0] ^ 1]) + bytes(starts[1:])
        conn.execute("UPDATE blocks SET starts=? WHERE id=?", (flipped, rowid))
    app = TorchscopeApp(str(path))
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        assert isinstance(app.screen, MainScreen)
        messages = [n.message for n in app._notifications]
        assert any("checksum mismatch" in m and "left out" in m for m in messages), messages


async def test_spans_carrying_a_finding_are_marked_in_calls():
    """Each evidence span of a stored finding shows its severity and rule; others do not."""
    from tui_helpers import SAMPLE

    app = TorchscopeApp(str(SAMPLE.with_name("sample_findings.tsdb")))
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        tree = _calls(app).tree
        t = tree.model.trace
        marked = sorted(tree.model.finding_marks)
        assert [t.kind_of(r) for r in marked] == ["import", "step"]
        for row in range(t.n):
            label = tree.span_label(row).plain
            assert ("⚠" in label) == (row in marked), label
            assert ("[missing-zero-grad]" in label) == (row in marked)
