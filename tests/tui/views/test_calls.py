"""The Calls view: details, sources and timeline follow the cursor, even through a run of keys."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from textual import events
from textual.pilot import Pilot
from textual.widgets import Tree
from tui_helpers import ready

from tui.app import TorchscopeApp
from tui.model import fmt_ns
from tui.views.calls import RUN_S, CallsView
from tui.widgets.source import SourcePane
from tui.widgets.timeline import Timeline

SIZE = (120, 50)  # tall enough for every fact of a span in the details pane


async def _until(pilot: Pilot, done: Callable[[], bool], what: str) -> None:
    """Lets the app run until ``done()`` holds: a bound on time, not a sleep to assert on."""
    for _ in range(500):
        if done():
            return
        await pilot.pause(0.01)
    raise AssertionError(f"never {what}")


def _screen_text(app: TorchscopeApp) -> str:
    """What the screen shows, as text."""
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


@asynccontextmanager
async def _calls_view(path: str) -> AsyncIterator[tuple[TorchscopeApp, Pilot, CallsView]]:
    """The app on ``path``, loaded and settled, with its Calls view."""
    app = TorchscopeApp(path)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        yield app, pilot, app.screen.query_one(CallsView)


def _burst(app: TorchscopeApp, key: str, n: int) -> None:
    """``n`` presses of ``key`` delivered at once, as a held key floods a busy app."""
    for _ in range(n):
        app.post_message(events.Key(key, None))


async def test_a_fast_run_of_keys_ends_with_every_pane_on_the_cursor_span(sample):
    async with _calls_view(sample) as (app, pilot, calls):
        tree = calls.tree
        t = tree.model.trace
        await pilot.press("down", "down", "down", "right")  # step 0, opened
        await ready(pilot)
        first, start = tree.cursor_row, tree.cursor_line
        _burst(app, "down", 8)
        await _until(pilot, lambda: tree.cursor_line == start + 8, "moved the cursor 8 rows")
        row = tree.cursor_row
        assert row is not None and row != first
        assert t.func_of(row) != t.func_of(first)  # the run crossed functions
        await _until(pilot, lambda: calls.shows(row), "showed the last span beside the tree")
        await pilot.pause()  # one frame
        lines = _screen_text(app).splitlines()
        # details: this span's name and its own start time
        assert any("name" in line and t.name_of(row) in line for line in lines)
        offset = f"+{fmt_ns(t.start_ns[row] - tree.model.t0)}"
        assert any("start" in line and offset in line for line in lines)
        # sources: this span's function
        pane = app.screen.query_one(SourcePane)
        assert pane.reimpl is not None and pane.reimpl.qualname == t.func_of(row)
        title = str(pane.query_one("#reimpl-box").border_title)
        assert title.split(" ", 1)[1].rstrip("…")[:30] == t.func_of(row)[:30]
        # timeline: fitted to this span, as the ruler says
        timeline = app.screen.query_one(Timeline)
        lo, hi = timeline.window
        assert timeline.row == row and lo < t.start_ns[row] and t.end_ns[row] < hi
        assert any(f"{fmt_ns(hi - lo)} shown" in line for line in lines)


async def test_a_single_key_shows_every_pane_at_once(sample):
    async with _calls_view(sample) as (app, pilot, calls):
        tree = calls.tree
        await pilot.pause(2 * RUN_S)  # the last highlight is long past: no run
        start = tree.cursor_line
        _burst(app, "down", 1)
        details = calls.query_one("#details")
        await _until(
            pilot,
            lambda: tree.cursor_line == start + 1 and details.row == tree.cursor_row,
            "moved the cursor and the details",
        )
        assert calls.shows(tree.cursor_row)  # nothing deferred to a timer


async def test_opening_a_node_draws_its_children_and_the_panes_follow_into_it(sample):
    async with _calls_view(sample) as (app, pilot, calls):
        tree = calls.tree
        t = tree.model.trace
        await pilot.press("down", "down", "down")
        await ready(pilot)
        step = tree.cursor_row
        assert step is not None and t.kind_of(step) == "step"
        node = tree.cursor_node
        await pilot.press("right")  # opens it; the cursor stays
        await _until(pilot, lambda: node.is_expanded and calls.shows(step), "opened the step")
        await pilot.pause()
        kids = [int(r) for r in t.children(step)]
        below = [line.node.data.row for line in tree._tree_lines[tree.cursor_line + 1 :]]
        assert below[: len(kids)] == kids  # every child, in order, under the step
        lines = _screen_text(app).splitlines()
        assert any(t.kind_of(kids[0]) in line and t.name_of(kids[0]) in line for line in lines)
        # each label measured as Tree itself measures it (the scroll width)
        nodes = [line.node for line in tree._tree_lines]
        assert [tree.get_label_width(n) for n in nodes] == [
            Tree.get_label_width(tree, n) for n in nodes
        ]
        assert tree.virtual_size.height == len(nodes)
        await pilot.press("right")  # into it: the first child, in every pane
        await _until(pilot, lambda: calls.shows(kids[0]), "showed the first child")
        assert tree.cursor_row == kids[0]
        await pilot.pause()
        lines = _screen_text(app).splitlines()
        assert any("name" in line and t.name_of(kids[0]) in line for line in lines)
        offset = f"+{fmt_ns(t.start_ns[kids[0]] - tree.model.t0)}"
        assert any("start" in line and offset in line for line in lines)
