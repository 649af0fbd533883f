"""The Findings view: what the detectors reported, each linked to its span."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.widgets import DataTable

from tui.messages import JumpToSpan
from tui.model import TraceModel
from tui.views.base import View


class FindingsView(View):
    """One row per finding; enter shows its span in Calls."""

    ID = "findings"
    TITLE = "Findings"
    EMPTY = (
        "No findings in this trace.\n\n"
        "Detectors (hook, thread and device bugs) write findings when they run: "
        "`torchscope check FILE`."
    )

    @classmethod
    def is_empty(cls, model: TraceModel) -> bool:
        return not model.trace.findings

    def compose_view(self) -> ComposeResult:
        yield DataTable(id="findings-table", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        if self.is_empty(self.model):
            return
        table = self.query_one(DataTable)
        table.add_columns("severity", "detector", "message", "span")
        for f in self.model.trace.findings:
            span = f.get("span")
            table.add_row(
                f["severity"],
                f["detector"],
                f["message"],
                "-" if span is None else str(span),
                key=str(f["id"]),
            )

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        finding = next(
            (f for f in self.model.trace.findings if str(f["id"]) == event.row_key.value), None
        )
        span = finding.get("span") if finding else None
        if span is not None and 0 <= span < self.model.trace.n:
            self.post_message(JumpToSpan(int(span)))
