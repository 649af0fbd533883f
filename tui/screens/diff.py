"""The diff screen: one trace compared with another (``torchscope view A --diff B``)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.screen import Screen

from tui.views.diff import DiffView
from tui.widgets.footer import KeysFooter


class DiffScreen(Screen):
    """The Diff view full screen, with the keys in the footer."""

    def __init__(self, a: str, b: str, kinds: list[str] | None = None) -> None:
        super().__init__()
        self.a, self.b, self.kinds = a, b, kinds

    def compose(self) -> ComposeResult:
        yield DiffView(self.a, self.b, self.kinds)
        yield KeysFooter()

    def on_mount(self) -> None:
        self.sub_title = f"{self.a} vs {self.b}"
