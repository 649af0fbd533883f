"""The main screen: one tab per view, the footer with the keys."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.lazy import Lazy
from textual.reactive import Reactive
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import TabbedContent, TabPane

from tui.messages import JumpToSpan
from tui.model import TraceModel
from tui.views import VIEWS, CallsView, View
from tui.widgets.footer import KeysFooter


def view_bindings() -> list[Binding]:
    """Keys 1..n open the views in tab order."""
    return [
        Binding(str(k), f"show_view('{v.ID}')", v.TITLE, show=False)
        for k, v in enumerate(VIEWS, start=1)
    ]


class MainScreen(Screen):
    """The views of one loaded trace."""

    BINDINGS = view_bindings()

    focused: Reactive[Widget | None] = Reactive(None, repaint=False)
    """As Screen's, less a repaint of the whole screen at each focus change (a
    view switch painted everything twice): the widgets gaining and losing the
    focus repaint themselves."""

    def __init__(self, model: TraceModel) -> None:
        super().__init__()
        self.model = model

    def compose(self) -> ComposeResult:
        with TabbedContent():  # the first pane opens first
            for k, view in enumerate(VIEWS, start=1):
                with TabPane(f"{k} {view.TITLE}", id=view.ID):
                    # Hidden views mount after the first paint: start-up shows Calls sooner.
                    yield view(self.model) if k == 1 else Lazy(view(self.model))
        yield KeysFooter()

    def on_mount(self) -> None:
        self.sub_title = self.model.trace.path
        self.query_one(CallsView).focus_main()

    def action_show_view(self, view_id: str) -> None:
        """Opens a view's tab and focuses its main widget."""
        self.query_one(TabbedContent).active = view_id
        self._focus_view(view_id)
        # The footer takes the new keys now, in this handler, with the tab: later
        # (the focus's watcher runs after it), its widths were laid out apart.
        self.query_one(KeysFooter).bindings_changed(self)

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        if event.pane.id:
            self._focus_view(event.pane.id)

    def _focus_view(self, view_id: str) -> None:
        views = self.query(f"#{view_id}-view").results(View)
        for view in views:  # none while a lazy view is not mounted yet
            view.focus_main()

    def on_jump_to_span(self, message: JumpToSpan) -> None:
        self.action_show_view(CallsView.ID)
        if not self.query_one(CallsView).show_span(message.row):
            self.notify(f"Span {message.row} cannot be shown.", severity="warning")
