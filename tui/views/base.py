"""The view framework: each view is a tab of the main screen.

A view names its tab and key, says when the trace gives it nothing to show,
and then composes an empty-state message instead of its widgets, so a trace
without imports, findings or snapshots opens just as well as a full one.
"""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.containers import Container
from textual.widgets import Static

from tui.model import TraceModel


class View(Container):
    """A tab of the main screen."""

    ID: ClassVar[str] = "view"
    TITLE: ClassVar[str] = "View"
    EMPTY: ClassVar[str] = "Nothing to show."

    def __init__(self, model: TraceModel, **kwargs: object) -> None:
        super().__init__(id=f"{self.ID}-view", **kwargs)  # type: ignore[arg-type]
        self.model = model

    @classmethod
    def is_empty(cls, model: TraceModel) -> bool:
        """Whether the trace holds nothing for this view."""
        return False

    def compose(self) -> ComposeResult:
        if self.is_empty(self.model):
            yield Static(self.EMPTY, classes="empty-state")
        else:
            yield from self.compose_view()

    def compose_view(self) -> ComposeResult:
        """The view's widgets when there is something to show."""
        yield from ()

    def focus_main(self) -> None:
        """Puts the focus on the view's main widget when its tab opens."""
        focusable = self.query("Tree, DataTable")
        if focusable:
            # At once, not as Widget.focus does (a callback later): the focus, its
            # styles and the footer's keys then change in the same paint as the tab.
            self.screen.set_focus(focusable.first())
        else:  # a focused widget left in a hidden tab would pull its tab back
            self.screen.set_focus(None)
