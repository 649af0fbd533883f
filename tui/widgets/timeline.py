"""The timeline: one lane per process and thread over the selected span's time.

Each lane shows its outermost spans inside the window, descending through any
span that covers the whole window (the step around the selection is context,
not news), so replicas overlapping, workers prefetching and a rank waiting in
a collective all line up under the selected span. Ranks' lanes come in rank
order, and a selected collective is drawn on every rank's lane at once (its
peers, matched by group and sequence number).
"""

from __future__ import annotations

import numpy as np
from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.widget import Widget

from tracer.distributed.peers import peers, rank_of_part
from tui.model import Lane, TraceModel, fmt_ns, kind_style

LABEL = 24  # columns for the lane names


def fit_label(text: str, width: int) -> str:
    """``text`` in ``width`` cells, its last cell kept blank so that neighbouring
    labels never run into each other; cut with an ellipsis when it does not fit,
    and left out of a bar too narrow for a letter and the ellipsis."""
    if len(text) < width:
        return text.ljust(width)
    if width < 3:
        return " " * width
    return text[: width - 2] + "… "


def rank_order(model: TraceModel, lanes: list[Lane]) -> list[Lane]:
    """Distributed ranks' lanes in rank order, after the other processes' lanes
    (a merged trace lists its parts host by host)."""
    ranks = rank_of_part(model.trace)
    return sorted(lanes, key=lambda lane: (ranks.get(lane.part, -1), lane.part))


class Timeline(Widget, can_focus=True):
    """Bars of spans per lane over ``window``; zoom and pan with keys or the wheel."""

    BINDINGS = [
        Binding("left", "pan(-0.2)", "Pan left"),
        Binding("right", "pan(0.2)", "Pan right"),
        Binding("plus,equals_sign", "zoom(0.5)", "Zoom in"),
        Binding("minus", "zoom(2)", "Zoom out"),
        Binding("0", "reset", "Fit span"),
        Binding("up", "lanes(-1)", "Lanes up", show=False),
        Binding("down", "lanes(1)", "Lanes down", show=False),
    ]

    row: reactive[int | None] = reactive(None)
    """The selected span: the window fits it, its bar is highlighted."""
    window: reactive[tuple[int, int]] = reactive((0, 1))
    """The time range drawn, in trace nanoseconds."""
    first_lane: reactive[int] = reactive(0)
    """The first lane drawn when they do not all fit."""

    class SpanClicked(Message):
        """A bar was clicked: show its span."""

        def __init__(self, row: int) -> None:
            super().__init__()
            self.row = row

    def __init__(self, model: TraceModel, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.model = model
        self._hits: list[np.ndarray] = []  # rows drawn on each lane line
        self._peers: set[int] = set()  # the selected collective on every rank
        self.set_reactive(Timeline.window, (model.t0, max(model.t1, model.t0 + 1)))

    def watch_first_lane(self) -> None:
        self.refresh()

    def watch_row(self, row: int | None) -> None:
        # a collective's peers on the other ranks are drawn with it
        self._peers = set(peers(self.model.trace, row)) if row is not None else set()
        self.action_reset()

    def action_reset(self) -> None:
        """Fits the window to the selected span (the whole trace when none)."""
        t = self.model.trace
        if self.row is None:
            lo, hi = self.model.t0, self.model.t1
        else:
            lo, hi = int(t.start_ns[self.row]), int(t.end_ns[self.row])
        margin = max((hi - lo) // 50, 1)
        self.window = (lo - margin, hi + margin)

    def action_zoom(self, factor: float) -> None:
        """Zooms around the middle of the window."""
        lo, hi = self.window
        mid, half = (lo + hi) / 2, max((hi - lo) * factor / 2, 50)
        self.window = (int(mid - half), int(mid + half))

    def action_pan(self, fraction: float) -> None:
        """Moves the window by a fraction of its width."""
        lo, hi = self.window
        shift = int((hi - lo) * fraction)
        self.window = (lo + shift, hi + shift)

    def action_lanes(self, delta: int) -> None:
        """Scrolls the lanes when there are more than fit."""
        hidden = len(self.model.visible_lanes()) - (self.size.height - 1)
        self.first_lane = min(max(self.first_lane + delta, 0), max(hidden, 0))

    def on_mouse_scroll_up(self, event: events.MouseScrollUp) -> None:
        self.action_zoom(0.8)
        event.stop()

    def on_mouse_scroll_down(self, event: events.MouseScrollDown) -> None:
        self.action_zoom(1.25)
        event.stop()

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return len(self.model.visible_lanes()) + 1

    def _bars_width(self) -> int:
        return max(self.size.width - LABEL, 10)

    def render(self) -> Text:
        model = self.model
        lo, hi = self.window
        width = self._bars_width()
        scale = width / max(hi - lo, 1)
        offset = lo - model.t0
        left = f"{'+' if offset >= 0 else '-'}{fmt_ns(abs(offset))}"
        right = f"{fmt_ns(hi - lo)} shown"
        lanes = rank_order(model, model.visible_lanes())
        focus = None
        if self.row is not None:
            t = model.trace
            a, b = max(int(t.start_ns[self.row]), lo), min(int(t.end_ns[self.row]), hi)
            focus = (a, b) if a < b else None
        fit = max(self.size.height - 1, 1)
        first = min(self.first_lane, max(len(lanes) - fit, 0))
        more = len(lanes) - fit
        head = f"{len(lanes)} lanes, t: ↑↓" if more > 0 else "lanes"
        ruler = Text(head[: LABEL - 1].ljust(LABEL) + left.ljust(width - len(right)) + right)
        ruler.stylize("dim")
        lines = [ruler]
        self._hits = []
        for lane in lanes[first : first + fit]:
            rows = model.lane_spans(lane.thread, lo, hi, focus)
            self._hits.append(rows)
            line = Text(fit_label(model.lane_names[lane.thread], LABEL), style="bold")
            line.append_text(self._lane_bars(rows, lo, scale, width))
            lines.append(line)
        return Text("\n").join(lines)

    def _lane_bars(self, rows: np.ndarray, lo: int, scale: float, width: int) -> Text:
        """The bars of one lane, labelled with span names where they fit."""
        t = self.model.trace
        chars = ["·"] * width
        styles: list[tuple[int, int, str]] = []
        starts = ((t.start_ns[rows] - lo) * scale).astype(np.int64)
        # Many spans in one cell draw as one: keep the first per cell, so a
        # lane costs at most ``width`` labels however many spans it holds.
        _, first = np.unique(np.clip(starts, -1, width), return_index=True)
        rows, starts = rows[first], starts[first]
        ends = np.ceil((t.end_ns[rows] - lo) * scale).astype(np.int64)
        for row, x0, x1 in zip(rows.tolist(), starts.tolist(), ends.tolist()):
            x0, x1 = max(x0, 0), min(max(x1, x0 + 1), width)
            if x0 >= width or x1 <= 0:
                continue
            colour = kind_style(t.kind_of(row)).split()[-1]
            style = f"black on {colour}"
            if row == self.row:
                style = f"bold reverse {colour}"
            elif row in self._peers:
                style = f"bold reverse {colour} underline"
            chars[x0:x1] = list(fit_label(t.name_of(row), x1 - x0))
            styles.append((x0, x1, style))
        text = Text("".join(chars), style="dim")
        for x0, x1, style in styles:
            text.stylize(style, x0, x1)
        return text

    def on_click(self, event: events.Click) -> None:
        line = event.y - 1
        x = event.x - LABEL
        if not 0 <= line < len(self._hits) or x < 0:
            return
        lo, hi = self.window
        when = lo + (x + 0.5) * (hi - lo) / self._bars_width()
        t = self.model.trace
        rows = self._hits[line]
        inside = rows[(t.start_ns[rows] <= when) & (t.end_ns[rows] >= when)]
        if len(inside):
            self.post_message(self.SpanClicked(int(inside[0])))
