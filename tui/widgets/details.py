"""The details pane: every fact the trace holds about the selected span."""

from __future__ import annotations

import json

from rich.console import Console, ConsoleOptions, RenderResult
from rich.measure import Measurement
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.reactive import reactive
from textual.widgets import Static

from tracer.distributed.peers import peers, rank_of_part
from tui.model import TraceModel, fmt_ns, kind_style

LABEL = Style.parse("bold")  # the label column, as the table's column style was
MAX_PEERS = 16  # a collective's peers listed one by one


class Facts:
    """Label and value columns, drawn as ``Table.grid(padding=(0, 1))`` draws them.

    The same cells, wrapping and styles (bold labels, values wrapped in their
    column with an ellipsis for a word too long), at a quarter of the cost: Rich
    measures and lays out every cell of a table, and the details pane redraws
    at every move of the cursor.
    """

    def __init__(self) -> None:
        self.rows: list[tuple[Text, Text]] = []

    @property
    def row_count(self) -> int:
        """How many facts (the pane relays out only when this changes)."""
        return len(self.rows)

    def add_row(self, label: str | Text, value: str | Text) -> None:
        """Appends one fact."""
        label = Text(label) if isinstance(label, str) else label
        self.rows.append((label, Text(value) if isinstance(value, str) else value))

    def pad_to(self, rows: int) -> None:
        """Adds blank rows up to ``rows``."""
        while len(self.rows) < rows:
            self.add_row("", "")

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        width = max((x.cell_len for x, _ in self.rows), default=0)
        value = max((v.cell_len for _, v in self.rows), default=0)
        word = max((len(w) for _, v in self.rows for w in v.plain.split()), default=0)
        measure = Measurement(width + 1 + word, width + 1 + value)
        return measure.clamp(max_width=options.max_width)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        width = max((x.cell_len for x, _ in self.rows), default=0)
        room = max(options.max_width - width - 1, 1)
        value_width = min(max((v.cell_len for _, v in self.rows), default=0), room)
        for label, value in self.rows:
            lines = value.wrap(console, value_width, justify="left", overflow="ellipsis")
            for k, part in enumerate(lines):
                line = Text()
                if k == 0:
                    cell = label.copy()
                    cell.pad_right(width - label.cell_len)  # in the label's own style
                    line.append_text(cell)
                    line.append(" ")
                else:
                    line.append(" " * (width + 1))
                line.stylize_before(LABEL, 0, width + 1)
                line.append_text(part)
                yield from line.render(console)
                yield Segment.line()


class DetailsPane(Static):
    """Kind, name, func, process, thread, device, times and all attributes of a span."""

    row: reactive[int | None] = reactive(None)
    """The span shown; None shows the lane (or a hint)."""
    lane: reactive[int | None] = reactive(None)
    """The thread row shown when no span is selected."""

    def __init__(self, model: TraceModel, **kwargs: object) -> None:
        super().__init__("", **kwargs)  # type: ignore[arg-type]
        self.model = model

    _shape: tuple[int, int] = (-1, -1)  # rows and widest value of what is shown

    def watch_row(self) -> None:
        self._show()

    def watch_lane(self) -> None:
        self._show()

    def _show(self) -> None:
        content = self._render_row()
        # A layout pass repaints the whole screen. The facts keep the most rows
        # they have had, so moving to a span with fewer attributes needs none
        # (and the sources below stay put); only a taller span relays out.
        if isinstance(content, Facts):
            content.pad_to(self._shape[0])
        shape = (content.row_count, 2) if isinstance(content, Facts) else (-1, content.cell_len)
        self.update(content, layout=shape != self._shape)
        self._shape = shape

    def _render_row(self) -> Facts | Text:
        model, row = self.model, self.row
        t = model.trace
        table = Facts()
        if row is None:
            if self.lane is None or self.lane not in model.lanes_by_thread:
                return Text("Select a span to see its details.", style="dim")
            lane = model.lanes_by_thread[self.lane]
            th = t.threads[lane.thread]
            table.add_row("process", lane.process)
            table.add_row("thread", f"{th.name} (tid {th.tid})")
            table.add_row("device", th.device or "-")
            table.add_row("spans", f"{len(model.lane_rows(lane.thread)):,} at top level")
            return table
        kind = t.kind_of(row)
        th = t.threads[t.thread[row]] if t.thread[row] >= 0 else None
        table.add_row("kind", Text(kind, style=kind_style(kind)))
        table.add_row("name", t.name_of(row))
        table.add_row("func", t.func_of(row))
        table.add_row("process", t.process_of(row).label)
        table.add_row("thread", "?" if th is None else f"{th.name} (tid {th.tid})")
        table.add_row("device", (th.device if th is not None else None) or "-")
        table.add_row("start", f"+{fmt_ns(t.start_ns[row] - model.t0)}")
        table.add_row("duration", fmt_ns(t.dur_ns[row]))
        table.add_row("self", fmt_ns(t.self_ns[row]))
        table.add_row("share", f"{100 * model.share(row):.1f}% of parent")
        table.add_row("depth", str(int(t.depth[row])))
        table.add_row("children", f"{len(t.children(row)):,}")
        table.add_row("span", f"row {row}, id {int(t.seq[row])}")
        for key, value in sorted(t.attrs(row).items()):
            text = value if isinstance(value, str) else json.dumps(value)
            table.add_row(Text(key, style="cyan"), text)
        if kind.startswith("collective."):
            self._add_peers(table, row)
        return table

    def _add_peers(self, table: Facts, row: int) -> None:
        """The same collective on the other ranks (``tracer/distributed/peers.py``):
        when each arrived and how long it waited for the last one."""
        t = self.model.trace
        rows = peers(t, row)
        if not rows:
            return
        ranks = rank_of_part(t)
        attrs = t.attrs(row)
        expected = attrs.get("expected", len(rows))
        summary = f"{len(rows)} of {expected} ranks"
        if "last_rank" in attrs:
            summary += f"; the last to arrive: rank {attrs['last_rank']}"
        if attrs.get("missing"):
            summary += f"; missing: {json.dumps(attrs['missing'])}"
        table.add_row(Text("matched", style="bold magenta"), summary)
        first = min(int(t.start_ns[r]) for r in rows)
        for peer in rows[:MAX_PEERS]:
            a = t.attrs(peer)
            wait = a.get("wait_ns", int(t.dur_ns[peer]))
            late = fmt_ns(int(t.start_ns[peer]) - first)
            text = f"arrived +{late} after the first, waited {fmt_ns(wait)}"
            if peer == row:
                text += " (this span)"
            if a.get("interrupted"):
                text += f", cut by {a['interrupted']}"
            rank = ranks.get(int(t.part[peer]), "?")
            table.add_row(Text(f"  rank {rank}", style="magenta"), text)
        if len(rows) > MAX_PEERS:
            table.add_row("", f"... and {len(rows) - MAX_PEERS} more ranks")
