"""The Calls view: call tree, details, source and timeline of one selected span."""

from __future__ import annotations

import importlib
import os
import time

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.reactive import reactive
from textual.timer import Timer
from textual.widgets import Static

from tui.model import Filter, SearchState
from tui.screens.prompt import FilterScreen, PromptScreen
from tui.views.base import View
from tui.widgets.calltree import CallTree
from tui.widgets.details import DetailsPane
from tui.widgets.source import SourcePane
from tui.widgets.timeline import Timeline

# A held key repeats about every 33 ms, and a busy app handles those keys in
# bunches: highlights closer than RUN_S are one run, and the panes beside the
# tree show its last span FOLLOW_S after it.
RUN_S = 0.1
FOLLOW_S = 0.05


def graph_exporter() -> object | None:
    """``tracer.graphs.render_subtree`` when that module provides it."""
    try:
        graphs = importlib.import_module("tracer.graphs")
    except ImportError:
        return None
    return getattr(graphs, "render_subtree", None)


class CallsView(View):
    """Tree on the left; details and sources on the right; lanes below."""

    ID = "calls"
    TITLE = "Calls"

    BINDINGS = [
        Binding("slash", "search", "Search"),
        Binding("n", "next_hit(True)", "Next hit", show=False),
        Binding("N", "next_hit(False)", "Prev hit", show=False),
        Binding("g", "goto_step", "Go to step", show=False),
        Binding("f", "filter", "Filter"),
        Binding("m", "toggle_mirror", "torch source"),
        Binding("s", "toggle_source", "Source only"),
        Binding("t", "focus_timeline", "Timeline", show=False),
        Binding("plus", "timeline('zoom', 0.5)", "Zoom in", show=False),
        Binding("minus", "timeline('zoom', 2)", "Zoom out", show=False),
        Binding("less_than_sign", "timeline('pan', -0.2)", "Pan left", show=False),
        Binding("greater_than_sign", "timeline('pan', 0.2)", "Pan right", show=False),
        Binding("e", "export", "Export graph"),
        Binding("i", "toggle_imports", "Imports in/out"),
    ]

    source_only: reactive[bool] = reactive(False)
    """Whether the source pane takes the whole view (tree and details hidden)."""
    status: reactive[str] = reactive("")
    """The line under the panes: filter and search state."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.search_state = SearchState()
        self._following: tuple[int | None, int | None] = (None, None)  # row, lane to show
        self._follow_timer: Timer | None = None  # pending while keys come in a run
        self._last_selected = -RUN_S  # when the tree last highlighted something

    def compose_view(self) -> ComposeResult:
        with Horizontal(id="calls-main"):
            yield CallTree(self.model, id="calltree")
            with Vertical(id="calls-side"):
                with VerticalScroll(id="details-box"):
                    yield DetailsPane(self.model, id="details")
                yield SourcePane(self.model, id="source")
        yield Timeline(self.model, id="timeline")
        yield Static("", id="calls-status")

    def on_mount(self) -> None:
        self.tree.on_span = self._span_selected  # at once, in the tree's frame
        self.status = self._status_text()
        # the watcher skips updates before the view is mounted: draw the first line here
        self.query_one("#calls-status", Static).update(self.status)

    @property
    def tree(self) -> CallTree:
        """The call tree."""
        return self.query_one("#calltree", CallTree)

    def watch_source_only(self, value: bool) -> None:
        self.set_class(value, "-source-only")
        if self.is_mounted:  # keep the focus inside the view so its keys still work
            self.query_one("#reimpl-box" if value else "#calltree").focus()

    def watch_status(self, value: str) -> None:
        if self.is_mounted:
            self.query_one("#calls-status", Static).update(value)

    def _status_text(self, extra: str = "") -> str:
        text = f"showing {self.model.filter.describe(self.model)}"
        aside = self.model.aside_text()
        if aside:
            text += f" · {aside}"
        if self.search_state.query:
            text += f" · search {self.search_state.query!r}: {len(self.search_state.hits):,} hits"
        return text + (f" · {extra}" if extra else "")

    def on_call_tree_span_selected(self, message: CallTree.SpanSelected) -> None:
        self._span_selected(message.row, message.lane)

    def _span_selected(self, row: int | None, lane: int | None) -> None:
        # A single highlight shows in every pane at once. In a run of them (a
        # held key) only the tree moves: drawing the other panes for rows the
        # cursor only passes over would make each key cost several frames, and
        # the keys would pile up. They show the last one FOLLOW_S after it.
        now = time.monotonic()
        in_run = now - self._last_selected < RUN_S
        self._last_selected = now
        self._following = (row, lane)
        if self._follow_timer is not None:
            self._follow_timer.stop()
            self._follow_timer = None
        if in_run:
            self._follow_timer = self.set_timer(FOLLOW_S, self._follow)
        else:
            self._follow()

    def _follow(self) -> None:
        """Shows the highlighted span (or lane) in details, sources and timeline."""
        self._follow_timer = None
        row, lane = self._following
        details = self.query_one("#details", DetailsPane)
        details.row, details.lane = row, lane
        self.query_one(SourcePane).row = row
        self.query_one(Timeline).row = row

    def shows(self, row: int | None) -> bool:
        """Whether details, sources and timeline all show span ``row`` (none waits)."""
        return (
            self._follow_timer is None
            and self.query_one("#details", DetailsPane).row == row
            and self.query_one(SourcePane).row == row
            and self.query_one(Timeline).row == row
        )

    def on_timeline_span_clicked(self, message: Timeline.SpanClicked) -> None:
        self.show_span(message.row)

    def show_span(self, row: int) -> bool:
        """Reveals ``row`` in the tree, clearing a filter that hides it."""
        tree = self.tree
        if tree.reveal(row):
            tree.focus()
            return True
        if self.model.filter != Filter():
            self.apply_filter(Filter())
            return self.show_span(row)
        if not self.model.show_imports and self.model.aside[row]:  # an import, set aside
            self.action_toggle_imports()
            return self.show_span(row)
        return False

    # -- search, steps, filter ---------------------------------------------------------

    # The prompts are awaited in async workers so that the panes change after
    # the modal is gone: changes made under a closing modal were not repainted.

    @work(exclusive=True, group="prompt")
    async def action_search(self) -> None:
        """Asks for text to find in kinds, names and functions."""
        query = await self.app.push_screen_wait(
            PromptScreen("Search kinds, names and functions", "bn.stats", self.search_state.query)
        )
        if not query:
            return
        self.search_state.query = query
        self.search_state.hits = self.model.search(query)
        self.status = self._status_text()
        self.action_next_hit(True)

    def action_next_hit(self, forward: bool) -> None:
        """Moves to the next (or previous) search hit that the tree can show."""
        hits = self.search_state.hits
        if not len(hits):
            query = self.search_state.query
            text = f"Nothing matches {query!r}." if query else "Press / to search first."
            self.notify(text, severity="warning")
            return
        row = self.tree.cursor_row
        for _ in range(min(len(hits), 50)):
            row = self.model.next_hit(hits, row, forward)
            if row is not None and self.tree.reveal(row):
                return
        self.notify("No hit is visible with the current filter.", severity="warning")

    @work(exclusive=True, group="prompt")
    async def action_goto_step(self) -> None:
        """Asks for a step index and jumps to that step."""
        value = await self.app.push_screen_wait(PromptScreen("Go to step", "0"))
        if value is None or not value.strip():
            return
        try:
            index = int(value)
        except ValueError:
            self.notify(f"{value!r} is not a step number.", severity="error")
            return
        if not self.tree.goto_step(index):
            self.notify(f"No step {index} in this trace.", severity="warning")

    @work(exclusive=True, group="prompt")
    async def action_filter(self) -> None:
        """Lets the user pick one process, thread or kind to show."""
        value = await self.app.push_screen_wait(FilterScreen(self.model))
        if value is not None:
            self.apply_filter(value)

    def apply_filter(self, value: Filter) -> None:
        """Shows only what ``value`` selects in the tree and the timeline."""
        self.model.filter = value
        self.tree.rebuild()
        self.query_one(Timeline).refresh(layout=True)
        self.status = self._status_text()

    def action_toggle_imports(self) -> None:
        """Brings imports and numba compilations into the tree, or sets them aside again;
        the cursor stays on its span when that span is still listed."""
        model = self.model
        row = self.tree.cursor_row
        model.show_imports = not model.show_imports
        self.tree.rebuild()
        if row is not None and (model.show_imports or not model.aside[row]):
            self.tree.reveal(row)
        self.status = self._status_text()

    # -- panes ---------------------------------------------------------------------------

    def action_toggle_mirror(self) -> None:
        """Shows or hides the upstream torch source."""
        pane = self.query_one(SourcePane)
        pane.show_mirror = not pane.show_mirror

    def action_toggle_source(self) -> None:
        """Gives the whole view to the sources (side by side when wide)."""
        self.source_only = not self.source_only

    def action_focus_timeline(self) -> None:
        """Focuses the timeline so the arrow keys pan it."""
        self.query_one(Timeline).focus()

    def action_timeline(self, action: str, amount: float) -> None:
        """Zooms or pans the timeline from anywhere in the view."""
        timeline = self.query_one(Timeline)
        if action == "zoom":
            timeline.action_zoom(amount)
        else:
            timeline.action_pan(amount)

    def action_export(self) -> None:
        """Writes the selected subtree's call graph with tracer.graphs, if available."""
        row = self.tree.cursor_row
        if row is None:
            self.notify("Select a span to export its subtree.", severity="warning")
            return
        if graph_exporter() is None:
            self.notify("Graph export needs tracer.graphs.render_subtree.", severity="warning")
            return
        self.export(row)

    @work(thread=True, exclusive=True, group="export")
    def export(self, row: int) -> None:
        """Renders off the UI thread: Graphviz can take a while on big subtrees."""
        render = graph_exporter()
        out = os.path.join(os.getcwd(), f"torchscope-span-{row}.svg")
        try:
            path = render(self.model.trace, row, out)  # type: ignore[misc,operator]
        except Exception as exc:  # Graphviz missing, bad subtree: tell, don't crash
            self.app.call_from_thread(self.notify, f"Export failed: {exc}", severity="error")
            return
        self.app.call_from_thread(self.notify, f"Graph written to {path}")
