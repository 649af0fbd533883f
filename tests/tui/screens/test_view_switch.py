"""Switching views on the main screen: each view shows its content, and a view
opened again is the one left (views stay mounted; the tab only hides them)."""

from __future__ import annotations

from textual.widgets import DataTable, TabbedContent, Tree
from tui_helpers import SIZE, ready

from tui.app import TorchscopeApp
from tui.views import VIEWS, CallsView
from tui.widgets.calltree import CallTree


def _on_screen(app: TorchscopeApp, view_id: str) -> bool:
    """The view's tab is open, the view is laid out on screen and holds the focus
    (or nothing does, for a view with nothing to focus)."""
    screen = app.screen
    view = screen.query_one(f"#{view_id}-view")
    focused = screen.focused
    return (
        screen.query_one(TabbedContent).active == view_id
        and view in screen._compositor.visible_widgets
        and bool(view.region)
        and (focused is None or view in focused.ancestors_with_self)
    )


def _content(app: TorchscopeApp, view_id: str) -> str:
    """What the view shows, in words, to compare a first visit with a revisit."""
    view = app.screen.query_one(f"#{view_id}-view")
    empty = view.query(".empty-state")
    if empty:
        return str(empty.first().render())
    if view_id == "stats":
        tables = list(view.query(DataTable))
        assert all(t.row_count for t in tables), "Stats shows its tables"
        return f"{[t.row_count for t in tables]}"
    tree = view.query(Tree).first()
    assert tree.root.children, f"{view_id} shows its tree"
    return f"{tree.cursor_line} {tree.cursor_node and tree.cursor_node.label}"


async def test_every_view_shows_its_content_and_is_kept_when_opened_again(sample):
    app = TorchscopeApp(sample)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        calls = app.screen.query_one(CallsView)
        tree = calls.query_one("#calltree", CallTree)
        await pilot.press("down", "down", "down", "right", "down")  # into step 0
        await pilot.pause()
        step = tree.cursor_node.parent
        line, row = tree.cursor_line, tree.cursor_row
        assert step.is_expanded and row is not None and calls.shows(row)

        seen: dict[str, str] = {}
        for round_ in range(2):
            for view in [*VIEWS[1:], VIEWS[0]]:
                await pilot.press(str(VIEWS.index(view) + 1))
                await ready(pilot)  # Stats computes its tables the first time
                assert _on_screen(app, view.ID), view.ID
                for other in VIEWS:
                    if other is not view:
                        assert not app.screen.query_one(f"#{other.ID}-view").region
                if view is CallsView:
                    assert (tree.cursor_line, tree.cursor_row) == (line, row)
                    assert step.is_expanded and tree.cursor_node.parent is step
                    assert calls.shows(row)  # details, sources, timeline: the same span
                    assert app.screen.focused is tree
                    continue
                shown = _content(app, view.ID)
                if round_ == 0:
                    seen[view.ID] = shown
                    focused = app.screen.focused
                    if isinstance(focused, Tree | DataTable):
                        await pilot.press("down")  # leave the view somewhere else
                        await pilot.pause()
                        seen[view.ID] = _content(app, view.ID)
                else:
                    assert shown == seen[view.ID], f"{view.ID} kept its place"
