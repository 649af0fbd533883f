"""The Imports view: what ``import torch`` (or any traced import) did, as a tree."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal

from tui.messages import JumpToSpan
from tui.model import TraceModel
from tui.views.base import View
from tui.widgets.calltree import CallTree
from tui.widgets.details import DetailsPane


class ImportsView(View):
    """Outermost ``import`` spans and what they imported in turn."""

    ID = "imports"
    TITLE = "Imports"
    EMPTY = (
        "No imports in this trace.\n\n"
        "Record what `import torch` does with `torchscope imports torch`."
    )
    BINDINGS = [Binding("j", "jump", "Show in Calls")]

    @classmethod
    def is_empty(cls, model: TraceModel) -> bool:
        return len(model.import_roots()) == 0

    def compose_view(self) -> ComposeResult:
        with Horizontal():
            yield CallTree(self.model, roots=self.model.import_roots(), id="imports-tree")
            yield DetailsPane(self.model, id="imports-details")

    def on_call_tree_span_selected(self, message: CallTree.SpanSelected) -> None:
        message.stop()
        self.query_one(DetailsPane).row = message.row

    def action_jump(self) -> None:
        """Shows the selected import in the call tree."""
        row = self.query_one(CallTree).cursor_row
        if row is not None:
            self.post_message(JumpToSpan(row))
