"""The call tree on a span with many children: pages, never a node per child."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from textual.widgets.tree import TreeNode
from tui_helpers import ready

import tracer
from reimpl import _trace
from tui.app import TorchscopeApp
from tui.widgets.calltree import MAX_WINDOW, PAGE, CallTree

N = 1_500


def _wide_trace(path: str) -> None:
    with tracer.record(path):
        with _trace.step(0):
            with _trace.span("data.fetch", "wide"):
                for i in range(N):
                    with _trace.span("data.collate", f"item {i}"):
                        pass


def _row_named(tree: CallTree, name: str) -> int:
    t = tree.model.trace
    return int(next(r for r in range(t.n) if t.name_of(r) == name))


@contextlib.asynccontextmanager
async def _app_on_wide(path: str) -> AsyncIterator[tuple[TorchscopeApp, Any, CallTree, int]]:
    """The viewer on ``path``, ready: (app, pilot, its call tree, the row of "wide")."""
    app = TorchscopeApp(path)
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        tree = app.screen.query_one("#calltree", CallTree)
        yield app, pilot, tree, _row_named(tree, "wide")


def _open(tree: CallTree, row: int) -> TreeNode:
    """Reveals span ``row`` and opens it; returns its node."""
    assert tree.reveal(row)
    node = tree.cursor_node
    tree.ensure_loaded(node)
    node.expand()
    return node


async def test_huge_node_pages_and_reveals(tmp_path):
    path = str(tmp_path / "wide.tsdb")
    _wide_trace(path)
    async with _app_on_wide(path) as (_app, _pilot, tree, wide):
        t = tree.model.trace
        node = _open(tree, wide)
        kids = [c for c in node.children if c.data.kind == "span"]
        assert len(kids) == PAGE and node.children[-1].data.kind == "more"
        tree.page(node.children[-1])
        assert len([c for c in node.children if c.data.kind == "span"]) == 2 * PAGE
        assert tree.cursor_row == t.children(wide)[PAGE]  # the first new row
        for _ in range(4):  # past the cap: the window slides instead of growing
            tree.page(node.children[-1])
        spans = [c for c in node.children if c.data.kind == "span"]
        assert len(spans) == MAX_WINDOW and node.children[0].data.kind == "earlier"
        assert node.data.lo == 6 * PAGE - MAX_WINDOW
        assert tree.cursor_row == t.children(wide)[5 * PAGE]
        target = int(t.children(wide)[N - 3])
        assert tree.reveal(target) and tree.cursor_row == target
        spans = [c for c in node.children if c.data.kind == "span"]
        assert len(spans) <= MAX_WINDOW
        assert node.children[0].data.kind == "earlier"
        first_shown = node.data.lo
        tree.page(node.children[0])
        assert node.data.lo == first_shown - PAGE
        assert tree.cursor_row == t.children(wide)[first_shown - 1]


async def test_lines_are_drawn_as_tree_draws_them():
    """CallTree draws its lines for less (labels reused, styles read once per
    paint): the segments, styles and click metadata stay Tree's own."""
    from textual.widgets import Tree
    from tui_helpers import SAMPLE

    app = TorchscopeApp(str(SAMPLE))
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        tree = app.screen.query_one("#calltree", CallTree)
        for node in list(tree.root.children[0].children[0].children)[:6]:
            tree.ensure_loaded(node)
            node.expand()
            for child in list(node.children)[:2]:
                tree.ensure_loaded(child)
                child.expand()
        await pilot.pause()
        compared = 0
        for look in ("cursor", "hover", "unfocused"):
            if look == "cursor":
                tree.cursor_line = 5  # the guides under the cursor's node light up
            elif look == "hover":
                tree.hover_line = 7
            else:
                app.screen.set_focus(None)
            await pilot.pause()
            style = tree.rich_style
            for y in range(len(tree._tree_lines)):
                tree._line_cache.clear()
                tree.render_lines(tree.size.region)  # a paint: labels and styles kept
                tree._line_cache.clear()
                tree._line_style = style
                try:
                    ours = list(tree._render_line(y, 0, 500, style))
                finally:
                    tree._line_style = None
                tree._line_cache.clear()
                theirs = list(Tree._render_line(tree, y, 0, 500, style))
                assert ours == theirs, f"line {y} ({look})"
                compared += 1
        assert compared > 60


async def test_scrollbar_follows_the_lines_without_a_layout_per_open():
    """Opening a node changes only the tree's scrollable size: the scrollbar
    still appears when the lines outgrow the tree and goes when they fit."""
    from tui_helpers import SAMPLE

    app = TorchscopeApp(str(SAMPLE))
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        tree = app.screen.query_one("#calltree", CallTree)
        thread = tree.root.children[0].children[0]
        thread.collapse()
        await pilot.pause()
        assert len(tree._tree_lines) < tree.size.height
        assert not tree.show_vertical_scrollbar
        thread.expand()
        for node in list(thread.children)[:6]:
            tree.ensure_loaded(node)
            node.expand()
        await pilot.pause()
        assert len(tree._tree_lines) > tree.size.height
        assert tree.show_vertical_scrollbar and tree.vertical_scrollbar.display
        assert tree.vertical_scrollbar.window_virtual_size == len(tree._tree_lines)
        assert tree.max_scroll_y == len(tree._tree_lines) - tree.scrollable_content_region.height
        tree.scroll_end(animate=False)
        await pilot.pause()
        last = tree._tree_lines[-1].node._label.plain
        text = "\n".join(s.text for s in app.screen._compositor.render_strips())
        assert last[:20] in text  # the last line can be scrolled to and is drawn
        thread.collapse()
        await pilot.pause()
        assert not tree.show_vertical_scrollbar and tree.scroll_y == 0


async def test_lines_follow_a_resize_and_stand_when_shown_again(sample):
    """Shown again at its size (its tab reopened) the tree keeps its lines; at
    another size every line is drawn again to the new width."""
    app = TorchscopeApp(sample)
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        tree = app.screen.query_one("#calltree", CallTree)
        await pilot.press("down", "down", "down", "right")
        await pilot.pause()
        width = tree.size.width
        assert {tree.render_line(y).cell_length for y in range(5)} == {width}
        await pilot.press("2", "1")
        await ready(pilot)
        assert tree.size.width == width and tree.render_line(0).cell_length == width
        await pilot.resize_terminal(140, 30)
        await ready(pilot)
        assert tree.size.width > width
        assert {tree.render_line(y).cell_length for y in range(5)} == {tree.size.width}


async def test_span_labels_are_made_when_drawn_and_measured_without_them(tmp_path):
    """Opening a span lists a page of children, but only the lines on screen
    make their labels; the others are measured from their text alone, to the
    cell Tree would measure (a step's number, a finding's mark, a name on two
    lines whose first line is shown)."""
    from textual.widgets import Tree

    path = str(tmp_path / "labels.tsdb")
    with tracer.record(path):
        with _trace.step(3):
            with _trace.span("data.fetch", "wide"):
                for i in range(PAGE + 50):
                    name = "two\nlines" if i == 7 else f"item {i}"
                    with _trace.span("data.collate", name):
                        pass
    async with _app_on_wide(path) as (app, pilot, tree, wide):
        t = tree.model.trace
        tree.model.finding_marks[int(t.children(wide)[3])] = ("warning", "slow_fetch")
        node = _open(tree, wide)
        await pilot.pause()
        kids = [c for c in node.children if c.data.kind == "span"]
        assert len(kids) == PAGE
        top, height = tree.scroll_offset.y, tree.size.height
        on_screen = {line.node for line in tree._tree_lines[top : top + height]}
        made = [k for k in kids if k._text is not None]
        assert made and set(made) <= on_screen  # none made off screen
        assert kids[-1]._text is None
        lines = [line.node for line in tree._tree_lines]
        widths = [tree.get_label_width(n) for n in lines]  # measured before any label is made
        assert kids[-1]._text is None
        assert widths == [Tree.get_label_width(tree, n) for n in lines]  # Tree makes each label
        assert kids[3].label.plain.startswith("⚠ data.collate item 3")
        assert kids[3].label.plain.endswith("[slow_fetch]")
        assert (
            kids[7].label.plain.startswith("data.collate two") and "\n" not in kids[7].label.plain
        )
        step = tree.root.children[0].children[0].children[0]
        assert step.label.plain.startswith("#3 step")
        tree.scroll_end(animate=False)
        await pilot.pause()
        assert kids[-1]._text is not None  # scrolled to: drawn, so made
        text = "\n".join(s.text for s in app.screen._compositor.render_strips())
        assert "item 199" in text


async def test_a_focus_change_redraws_the_lines_without_counting_them_again(sample):
    """The focus changes the tree's styles (a view switch blurs it, then focuses
    it): the lines it lists stay as they are, and each is drawn again in the new
    look, as Tree draws it (the cursor and the guides under it light up only
    when focused)."""
    from textual.widgets import Tree

    app = TorchscopeApp(sample)
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        tree = app.screen.query_one("#calltree", CallTree)
        await pilot.press("down", "down", "down", "right", "down")
        await pilot.pause()
        lines = tree._tree_lines
        width = tree.size.width

        def drawn() -> list[list]:
            return [list(tree.render_line(y)) for y in range(len(lines))]

        def trees() -> list[list]:
            return [
                list(Tree._render_line(tree, y, 0, width, tree.rich_style))
                for y in range(len(lines))
            ]

        focused = drawn()
        assert focused == trees()
        await pilot.press("2")  # away: blurred, hidden
        await ready(pilot)
        assert not tree.has_focus and tree._tree_lines is lines  # not counted again
        await pilot.press("1")  # back: focused
        await ready(pilot)
        assert tree.has_focus and tree._tree_lines is lines
        tree.render_lines(tree.size.region)  # a paint, as the screen does
        assert drawn() == trees() == focused
        app.screen.set_focus(None)
        await pilot.pause()
        tree.render_lines(tree.size.region)
        assert drawn() != focused and drawn() == trees()  # the unfocused look


async def test_the_scrollbar_is_repainted_when_it_changes_and_only_then(sample):
    """Every layout updates the tree's scrollbar (a view switch, a resize): it
    is drawn again when its sizes change (fewer lines: a longer thumb), not
    when they stay (Widget's repainted it each time, a paint after the view's)."""
    app = TorchscopeApp(sample)
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        tree = app.screen.query_one("#calltree", CallTree)
        thread = tree.root.children[0].children[0]
        for node in list(thread.children)[:6]:
            tree.ensure_loaded(node)
            node.expand()
        await ready(pilot)
        bar = tree.vertical_scrollbar
        assert tree.show_vertical_scrollbar and bar.display
        assert not bar._repaint_required
        tree._scroll_update(tree.virtual_size)  # as a layout does, nothing changed
        assert not bar._repaint_required

        def column() -> list[list]:  # the thumb is a background colour
            x = bar.region.x
            return [list(s.crop(x, x + 1)) for s in app.screen._compositor.render_strips()]

        before, lines = column(), len(tree._tree_lines)
        max(thread.children, key=lambda n: len(n.children) if n.is_expanded else 0).collapse()
        await ready(pilot)
        assert tree.size.height < len(tree._tree_lines) < lines  # the scrollbar stays
        assert bar.window_virtual_size == len(tree._tree_lines)
        assert column() != before  # the thumb follows the lines
