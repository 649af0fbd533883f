"""The Stats view: where the time went, per kind and per (kind, name)."""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.widgets import DataTable, Static

from tui.messages import JumpToSpan
from tui.model import StatsRow, TraceModel, fmt_ns
from tui.views.base import View


class StatsView(View):
    """Two tables computed in a worker; enter jumps to the slowest span of a row."""

    ID = "stats"
    TITLE = "Stats"
    EMPTY = "This trace has no spans."

    @classmethod
    def is_empty(cls, model: TraceModel) -> bool:
        return model.trace.n == 0

    computing = False

    def compose_view(self) -> ComposeResult:
        yield Static("Per kind (enter: show the slowest in Calls)", classes="section")
        yield DataTable(id="stats-kinds", cursor_type="row", zebra_stripes=True)
        yield Static("Per kind and name, by self time", classes="section")
        yield DataTable(id="stats-spans", cursor_type="row", zebra_stripes=True)

    def focus_main(self) -> None:
        """Computes the tables the first time the tab opens (not at start-up)."""
        if not self.is_empty(self.model) and not self.computing:
            self.computing = True
            self.compute()
        super().focus_main()

    @work(thread=True, exclusive=True, group="stats")
    def compute(self) -> None:
        """np.unique over a million keys takes a moment: keep the UI responsive."""
        kinds = self.model.kind_totals()
        rows = self.model.stats()
        self.app.call_from_thread(self._fill, kinds, rows)

    def _fill(self, kinds: list[tuple[str, int, int]], rows: list[StatsRow]) -> None:
        total_self = sum(own for _, _, own in kinds) or 1
        kind_table = self.query_one("#stats-kinds", DataTable)
        kind_table.add_columns("kind", "spans", "self", "self %")
        for kind, count, own in kinds:
            share = f"{100 * own / total_self:.1f}"
            kind_table.add_row(kind, f"{count:,}", fmt_ns(own), share, key=kind)
        table = self.query_one("#stats-spans", DataTable)
        table.add_columns("kind", "name", "count", "total", "self", "self %", "mean")
        for r in rows:
            table.add_row(
                r.kind,
                r.name,
                f"{r.count:,}",
                fmt_ns(r.incl_ns),
                fmt_ns(r.self_ns),
                f"{100 * r.self_ns / total_self:.1f}",
                fmt_ns(r.incl_ns / max(r.count, 1)),
                key=str(r.key),
            )

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        key = event.row_key.value
        if key is None:
            return
        if event.data_table.id == "stats-kinds":
            row = self.model.slowest_of_kind(key)
        else:
            row = self.model.slowest(int(key))
        if row is not None:
            self.post_message(JumpToSpan(row))
