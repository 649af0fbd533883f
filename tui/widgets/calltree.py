"""The call tree: processes, their threads, then spans, built only when opened.

A node's children are a window over a numpy array of rows (a thread's tops, a
span's children); at most ``MAX_WINDOW`` of them exist as widgets at once,
with "N more" / "N earlier" nodes at the ends, so opening a span with a
million children costs one page of labels, not a million nodes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual._segment_tools import line_pad
from textual.binding import Binding
from textual.geometry import Region, Size
from textual.message import Message
from textual.strip import Strip
from textual.widgets import Tree
from textual.widgets._tree import _TreeLine
from textual.widgets.tree import TreeNode

from tui.model import TraceModel, fmt_ns, kind_style

PAGE = 200
MAX_WINDOW = 1000


@dataclass
class NodeInfo:
    """What a tree node stands for; ``lo:hi`` is the window of children shown."""

    kind: str  # "root", "process", "thread", "span", "more", "earlier" or "note"
    row: int = -1
    thread: int = -1
    part: int = -1
    loaded: bool = False
    lo: int = 0
    hi: int = 0
    width: int = -1  # cells of the node's label, measured once


FINDING_STYLES = {"error": "bold red", "warning": "bold yellow", "info": "bold cyan"}
MAX_LABELS = 8192  # rendered labels kept (a few looks per node shown)


class _PaintStyles:
    """The tree's component styles, read once per paint (``Tree._render_line``
    reads them for every line it draws)."""

    def __init__(self, tree: Tree[NodeInfo]) -> None:
        self.tree = tree
        self.guide_hidden = tree.get_component_styles("tree--guides").color.a == 0
        self.hover_hidden = tree.get_component_styles("tree--guides-hover").color.a == 0
        self.selected_hidden = tree.get_component_styles("tree--guides-selected").color.a == 0
        self.guide = tree.get_component_rich_style("tree--guides", partial=True)
        hover = tree.get_component_rich_style("tree--guides-hover", partial=True)
        self.hover = self.guide + hover
        selected = tree.get_component_rich_style("tree--guides-selected", partial=True)
        self.selected = self.guide + selected
        self.highlight_line = tree.get_component_rich_style("tree--highlight-line")
        self.label = tree.get_component_rich_style("tree--label", partial=True)
        self.label_hover = tree.get_component_rich_style("tree--highlight", partial=True)
        self.cursor = tree.get_component_rich_style("tree--cursor", partial=False)
        self._guides: dict[tuple[bool, bool, bool], tuple[str, str, str, str]] = {}

    def guides(self, style: Style, hidden: bool) -> tuple[str, str, str, str]:
        """Space, vertical, terminator and cross, as Tree's ``get_guides`` makes them."""
        key = (bool(style.bold), bool(style.underline2), hidden)
        found = self._guides.get(key)
        if found is None:
            tree = self.tree
            lines: tuple[str, ...] | tuple[tuple[str, str], ...]
            if tree.show_guides and not hidden:
                lines = tree.LINES["default"]
                if style.bold:
                    lines = tree.LINES["bold"]
                elif style.underline2:
                    lines = tree.LINES["double"]
            else:
                lines = ("  ", "  ", "  ", "  ")
            depth = max(0, tree.guide_depth - 2)
            found = self._guides[key] = tuple(  # type: ignore[assignment]
                f"{c[0]}{c[1] * depth} " for c in lines
            )
        return found  # type: ignore[return-value]


_LAZY = Text()  # the label given for a span's node: made when first drawn or read


class SpanNode(TreeNode[NodeInfo]):
    """A span's node, whose label is made when first drawn or read: opening a
    span lists a page of 200 children, and about 30 of them are on screen."""

    _text: Text | None = None

    @property  # type: ignore[override]
    def _label(self) -> Text:
        if self._text is None:
            tree = self._tree
            assert isinstance(tree, CallTree) and self.data is not None
            self._text = tree.process_label(tree.span_label(self.data.row))
        return self._text

    @_label.setter
    def _label(self, label: Text) -> None:
        self._text = None if label is _LAZY else label


class CallTree(Tree[NodeInfo]):
    """Spans grouped by process and thread (or under given roots), opened lazily."""

    BINDINGS = [
        Binding("right", "open", "Open", show=False),
        Binding("left", "close", "Close", show=False),
        Binding("right_square_bracket", "step(1)", "Next step"),
        Binding("left_square_bracket", "step(-1)", "Prev step", show=False),
    ]

    class SpanSelected(Message):
        """The cursor moved to a span (``row``) or to a group (``row`` is None)."""

        def __init__(self, tree: CallTree, row: int | None, lane: int | None) -> None:
            super().__init__()
            self.tree = tree
            self.row = row
            self.lane = lane

    on_span: Callable[[int | None, int | None], None] | None = None
    """Called at once with (row, lane) when the cursor moves to another node; when
    unset, a ``SpanSelected`` message says it."""
    _announced: TreeNode[NodeInfo] | None = None  # the node last said

    def __init__(
        self, model: TraceModel, roots: np.ndarray | None = None, **kwargs: object
    ) -> None:
        super().__init__("trace", data=NodeInfo("root"), **kwargs)  # type: ignore[arg-type]
        self.model = model
        self.roots = roots
        self.show_root = False
        self.guide_depth = 2
        # a node's label as segments, per look: see _render_line
        self._labels: dict[tuple[object, ...], tuple[list[Segment], int]] = {}
        self._placed: dict[tuple[object, ...], list[Segment]] = {}  # the same on line y
        self._line_metas: dict[int, Style] = {}  # a line's click metadata, by line number

    def on_mount(self) -> None:
        self.rebuild()

    _sized: Size | None = None  # the size Tree last drew its lines for

    def _on_resize(self, event: events.Resize) -> None:
        # Its tab opened again, the tree is shown at the size it had and its
        # lines stand; Tree would clear them and count its lines again (a view
        # switch drew the tree twice).
        if event.size == self._sized:
            event.prevent_default()
        self._sized = event.size

    # -- painting -------------------------------------------------------------------

    _line_style: Style | None = None  # the widget's style during one paint

    def render_lines(self, crop: Region) -> list[Strip]:
        # Tree asks for ``rich_style`` once per line, and each ask walks the
        # ancestors' CSS (about 0.1 ms): a scroll repaints every line, so ask once.
        self._line_style = self.rich_style
        self._paint = None
        try:
            return super().render_lines(crop)
        finally:
            self._line_style = None

    def render_line(self, y: int) -> Strip:
        if self._line_style is None:
            return super().render_line(y)
        scroll_x, scroll_y = self.scroll_offset
        width = self.size.width
        return self._render_line(y + scroll_y, scroll_x, scroll_x + width, self._line_style)

    _paint: _PaintStyles | None = None  # the component styles during one paint

    def _render_line(self, y: int, x1: int, x2: int, base_style: Style) -> Strip:
        # Tree's own line, drawn for less: the component styles are read once per
        # paint, and a node's label is rendered once per look (cursor, hover,
        # open) and reused on any line. Moving the cursor onto a node redraws
        # every line under it (their guides light up), and a scroll or an open
        # brings labels drawn before to other lines.
        tree_lines = self._tree_lines
        if self._line_style is None or y >= len(tree_lines):
            return super()._render_line(y, x1, x2, base_style)
        line = tree_lines[y]
        path = line.path
        is_hover = self.hover_line >= 0 and any(node._hover for node in path)
        width = self.size.width
        key = (y, is_hover, width, self._updates, self._pseudo_class_state)
        key += tuple(node._updates for node in path)
        strip = self._line_cache.get(key)
        if strip is None:
            strip = self._line_cache[key] = self._draw_line(line, y, is_hover, base_style, width)
        return strip.crop(x1, x2)

    def _draw_line(
        self, line: _TreeLine[NodeInfo], y: int, is_hover: bool, base_style: Style, width: int
    ) -> Strip:
        """What ``Tree._render_line`` draws for ``line`` (same segments and styles).

        Made from segments directly, as ``Text.render`` would make them: a guide
        or label piece is one segment in the line's style plus its own. A line's
        click metadata (a style with ``meta``, pickled when made or combined) is
        made once per line number, and a label's segments with it once per look
        and line: moving onto a node relights the guides of every line under it
        and leaves their labels as they were.
        """
        paint = self._paint
        if paint is None:
            paint = self._paint = _PaintStyles(self)
        path = line.path
        focus = self.has_focus
        line_style = paint.highlight_line if is_hover else base_style
        line_meta = self._line_metas.get(y)
        if line_meta is None:
            if len(self._line_metas) > MAX_LABELS:
                self._line_metas.clear()
            line_meta = self._line_metas[y] = Style(meta={"line": y})
        here = line_style + line_meta
        pieces: list[tuple[str, Style]] = []
        hover = path[0]._hover
        selected = path[0]._selected and focus
        guide_style, hidden = paint.guide, True
        for node in path[1:]:
            guide_style, hidden = paint.guide, paint.guide_hidden
            if hover:
                guide_style, hidden = paint.hover, paint.hover_hidden
            if selected:
                guide_style, hidden = paint.selected, paint.selected_hidden
            if node is not path[-1]:
                space, vertical, _, _ = paint.guides(guide_style, hidden)
                pieces.append((space if node.is_last else vertical, guide_style))
            hover = hover or node._hover
            selected = (selected or node._selected) and focus
        if len(path) > 1:
            _, _, terminator, cross = paint.guides(guide_style, hidden)
            pieces.append((terminator if line.last else cross, guide_style))
        out = [Segment(text, here + style) for text, style in pieces]
        guides_len = sum(cell_len(text) for text, _ in pieces)
        label_style = paint.label
        if self.hover_line == y:
            label_style += paint.label_hover
        if self.cursor_line == y:
            label_style += paint.cursor
        node = path[-1]
        look = (node._id, node._updates, node._expanded, node._allow_expand)
        look += (line_style, label_style)
        label = self._labels.get(look)
        if label is None:
            text = Text(style=line_style)
            text.append(self.render_label(node, line_style, label_style))
            text.stylize(Style(meta={"node": node._id}))
            if len(self._labels) > MAX_LABELS:
                self._labels.clear()
                self._placed.clear()
            label = self._labels[look] = (list(text.render(self.app.console)), text.cell_len)
        segments, label_len = label
        placed = self._placed.get((look, y))
        if placed is None:
            if len(self._placed) > MAX_LABELS:
                self._placed.clear()
            placed = self._placed[look, y] = [
                Segment(t, line_meta + style if style else line_meta) for t, style, _ in segments
            ]
        out += placed
        pad_width = max(self.virtual_size.width, width)
        return Strip(line_pad(out, 0, pad_width - guides_len - label_len, here))

    def process_label(self, label: str | Text) -> Text:
        # Tree keeps a label's first line, a copy even when it has one line: each
        # label here is made for its node, so one line is kept as it is.
        if label is _LAZY or (isinstance(label, Text) and "\n" not in label.plain):
            return label
        return super().process_label(label)

    def _add_node(
        self,
        parent: TreeNode[NodeInfo] | None,
        label: Text,
        data: NodeInfo | None,
        expand: bool = False,
    ) -> TreeNode[NodeInfo]:
        if label is not _LAZY:
            return super()._add_node(parent, label, data, expand)
        node = SpanNode(self, parent, self._new_id(), label, data, expanded=expand)
        self._tree_nodes[node._id] = node  # as Tree._add_node
        self._updates += 1
        return node

    def get_label_width(self, node: TreeNode[NodeInfo]) -> int:
        # Tree measures every line's label to size the scroll area, each time the
        # lines change (an open, a page): with Tree's render_label that is a new
        # Text per line, in proportion to the rows in the tree. A label never
        # changes, so measure it once.
        info = node.data
        if info is None:
            return super().get_label_width(node)
        if info.width < 0:
            info.width = node._label.cell_len
        if not node._allow_expand:
            return info.width
        return info.width + cell_len(self.ICON_NODE_EXPANDED if node._expanded else self.ICON_NODE)

    # -- building -------------------------------------------------------------------

    def clear(self) -> CallTree:
        self._labels.clear()  # node ids start again from 0
        self._placed.clear()
        return super().clear()

    def rebuild(self) -> None:
        """Builds the top levels again (after a filter change)."""
        self.clear()
        root = self.root
        root.data = NodeInfo("root", loaded=True)
        if self.roots is not None:
            self._load_window(root, 0, min(PAGE, len(self.roots)))
            root.expand()
            return
        lanes = self.model.visible_lanes()
        if not lanes:
            note = (
                "No spans in this trace."
                if self.model.trace.n == 0
                else "No lane passes the filter."
            )
            root.add_leaf(Text(note, style="dim italic"), NodeInfo("note"))
            return
        parts: dict[int, TreeNode[NodeInfo]] = {}
        for lane in lanes:
            pnode = parts.get(lane.part)
            if pnode is None:
                n_threads = sum(1 for x in lanes if x.part == lane.part)
                label = Text.assemble((lane.process, "bold"), (f"  {n_threads} thread(s)", "dim"))
                pnode = parts[lane.part] = root.add(
                    label, NodeInfo("process", part=lane.part, loaded=True)
                )
            rows = self.model.lane_rows(lane.thread)
            label = Text.assemble((lane.label, "bold"), (f"  {len(rows):,} spans", "dim"))
            pnode.add(
                label,
                NodeInfo("thread", thread=lane.thread, part=lane.part),
                allow_expand=len(rows) > 0,
            )
        for k, pnode in enumerate(parts.values()):
            pnode.expand()
            if k == 0 and pnode.children:
                self.ensure_loaded(pnode.children[0])
                pnode.children[0].expand()
        self.cursor_line = 0

    def rows_of(self, node: TreeNode[NodeInfo]) -> np.ndarray:
        """The rows a node's children are drawn from."""
        info = node.data
        assert info is not None
        if info.kind == "root" and self.roots is not None:
            return self.roots
        if info.kind == "thread":
            return self.model.lane_rows(info.thread)
        if info.kind == "span":
            return self.model.children(info.row)
        return np.empty(0, dtype=np.int64)

    def ensure_loaded(self, node: TreeNode[NodeInfo]) -> None:
        """Adds the first page of a node's children, once."""
        info = node.data
        if info is None or info.loaded:
            return
        n = len(self.rows_of(node))
        self._load_window(node, 0, min(PAGE, n))

    def _load_window(self, node: TreeNode[NodeInfo], lo: int, hi: int) -> None:
        """Replaces a node's children with rows[lo:hi] and the paging nodes."""
        info = node.data
        assert info is not None
        rows = self.rows_of(node)
        node.remove_children()
        info.loaded, info.lo, info.hi = True, lo, hi
        if lo > 0:
            node.add_leaf(
                Text(f"… {lo:,} earlier", style="italic dim"), NodeInfo("earlier", row=info.row)
            )
        self._add_spans(node, rows[lo:hi])
        self._add_more(node, len(rows) - hi)

    def _add_more(self, node: TreeNode[NodeInfo], left: int) -> None:
        if left > 0:
            label = Text(f"… {left:,} more (enter to show)", style="italic dim")
            node.add_leaf(label, NodeInfo("more"))

    def _add_spans(
        self, node: TreeNode[NodeInfo], rows: np.ndarray, before: TreeNode | None = None
    ) -> None:
        counts = self.model.child_counts(rows)
        self._adding = True
        try:
            for row, count in zip(rows.tolist(), counts.tolist()):
                node.add(
                    _LAZY,
                    NodeInfo("span", row=row, width=self.label_width(row)),
                    before=before,
                    allow_expand=count > 0,
                )
        finally:
            self._adding = False
            self._invalidate()

    _adding = False  # while a page of nodes is added

    def _invalidate(self) -> None:
        # Tree clears its line cache and asks for a layout at every node added;
        # once for a page of 200 is enough.
        if not self._adding:
            self._sizing = True  # see refresh
            try:
                super()._invalidate()
            finally:
                self._sizing = False

    def notify_style_update(self) -> None:
        # Tree counts all its lines again at any change of its styles, and the
        # focus changes them (a view switch: blurred when its tab closes, focused
        # when it opens), in proportion to the rows in the tree. Styles change how
        # lines look, never which lines there are or their labels' widths: only
        # the drawn lines go.
        super(Tree, self).notify_style_update()  # Tree's own adds the recount
        self._line_cache.clear()
        self._updates += 1
        self.refresh()

    _sizing = False  # while Tree re-counts its lines: its size on screen stays

    def refresh(
        self, *regions: Region, repaint: bool = True, layout: bool = False, recompose: bool = False
    ) -> CallTree:
        # New lines change only the tree's scrollable (virtual) size; Tree asks
        # for a layout of the whole screen for it (twice: when the lines change
        # and when they are counted). The tree's own size is fixed by the CSS,
        # so its scrollbars are all that follows (``_build``); a scrollbar that
        # appears or goes still lays the screen out.
        if self._sizing:
            layout = False
        super().refresh(*regions, repaint=repaint, layout=layout, recompose=recompose)
        return self

    def _build(self) -> None:
        self._sizing = True
        try:
            super()._build()
        finally:
            self._sizing = False
        if self.is_mounted and self.container_size:
            self._scroll_update(self.virtual_size)

    def _scroll_update(self, virtual_size: Size) -> None:
        # Widget's, less its repaint of the scrollbars each time, changed or not:
        # every layout calls it (a view switch painted the scrollbar again after
        # the view). A scrollbar's sizes and position repaint it when they change,
        # and one that appears, goes or moves is laid out and painted anyway.
        self._refresh_scrollbars()
        width, height = self.container_size
        if self.show_vertical_scrollbar and self.styles.scrollbar_size_vertical:
            bar = self.vertical_scrollbar
            bar.window_virtual_size = virtual_size.height
            bar.window_size = height - self.scrollbar_size_horizontal
        if self.show_horizontal_scrollbar and self.styles.scrollbar_size_horizontal:
            bar = self.horizontal_scrollbar
            bar.window_virtual_size = virtual_size.width
            bar.window_size = width - self.scrollbar_size_vertical
        self.scroll_x = self.validate_scroll_x(self.scroll_x)
        self.scroll_y = self.validate_scroll_y(self.scroll_y)

    def _label_pieces(
        self, row: int
    ) -> tuple[list[str | tuple[str, str]], str | None, tuple[str, str] | None]:
        """What a span's label says: its pieces, the step's number, a finding's mark."""
        t = self.model.trace
        kind = t.kind_of(row)
        pieces: list[str | tuple[str, str]] = [
            (kind, kind_style(kind)),
            " ",
            t.name_of(row),
            "  ",
            (fmt_ns(t.dur_ns[row]), "bold"),
            (f"  self {fmt_ns(t.self_ns[row])}", "dim"),
            (f"  {100 * self.model.share(row):.0f}%", "dim italic"),
        ]
        step = None
        if kind == "step":  # landmarks: say which step (one attribute read per step)
            index = t.attrs(row).get("index")
            step = "" if index is None else f"#{index} "
        mark = self.model.finding_marks.get(row)
        if mark is not None:  # evidence of a finding (torchscope check): say which
            mark = (FINDING_STYLES.get(mark[0], "bold"), mark[1])
        return pieces, step, mark

    def span_label(self, row: int) -> Text:
        """kind, name, inclusive and self time, share of the parent."""
        pieces, step, mark = self._label_pieces(row)
        text = Text.assemble(*pieces)
        if step is not None:
            if step:
                text = Text.assemble((step, "bold"), text)
            text.stylize("bold")
        if mark is not None:
            style, detector = mark
            text = Text.assemble(("⚠ ", style), text, (f"  [{detector}]", style))
        return text

    def label_width(self, row: int) -> int:
        """Cells of ``span_label(row)``'s first line, without making the label."""
        pieces, step, mark = self._label_pieces(row)
        plain = "".join(p if isinstance(p, str) else p[0] for p in pieces)
        if step:
            plain = step + plain
        if mark is not None:
            plain = f"⚠ {plain}  [{mark[1]}]"
        return cell_len(plain.split("\n", 1)[0])

    # -- events ---------------------------------------------------------------------

    def on_tree_node_expanded(self, event: Tree.NodeExpanded[NodeInfo]) -> None:
        event.stop()
        self.ensure_loaded(event.node)

    def on_tree_node_selected(self, event: Tree.NodeSelected[NodeInfo]) -> None:
        info = event.node.data
        if info is not None and info.kind in ("more", "earlier"):
            event.stop()
            self.page(event.node)

    def watch_cursor_line(self, previous_line: int, line: int) -> None:
        super().watch_cursor_line(previous_line, line)
        # Said here rather than from Tree's NodeHighlighted message: the panes then
        # change in the same frame as the tree, one paint per key instead of two.
        node = self._cursor_node
        if node is not None and node is not self._announced and previous_line != line:
            self._announce(node)

    def on_tree_node_highlighted(self, event: Tree.NodeHighlighted[NodeInfo]) -> None:
        event.stop()
        if event.node is not self._announced and event.node is self._cursor_node:
            self._announce(event.node)

    def _announce(self, node: TreeNode[NodeInfo]) -> None:
        """Tells the view which span (or lane) the cursor is on."""
        info = node.data
        if info is None:
            return
        self._announced = node
        if info.kind == "span":
            row, lane = info.row, int(self.model.trace.thread[info.row])
        else:
            row, lane = None, (info.thread if info.thread >= 0 else None)
        if self.on_span is not None:
            self.on_span(row, lane)
        else:
            self.post_message(self.SpanSelected(self, row, lane))

    def page(self, pager: TreeNode[NodeInfo]) -> None:
        """Shows the next (or previous) page of the pager's parent."""
        parent = pager.parent
        if parent is None or parent.data is None:
            return
        info = parent.data
        n = len(self.rows_of(parent))
        old_lo, old_hi = info.lo, info.hi
        if pager.data is not None and pager.data.kind == "earlier":
            lo = max(0, old_lo - PAGE)
            self._load_window(parent, lo, min(old_hi, lo + MAX_WINDOW))
            # the cursor goes to the row just before those shown until now
            self._cursor_to(parent.children[old_lo - 1 - lo + (1 if lo > 0 else 0)])
            return
        hi = min(n, old_hi + PAGE)
        if hi - old_lo > MAX_WINDOW:
            lo = hi - MAX_WINDOW
            self._load_window(parent, lo, hi)
            self._cursor_to(parent.children[old_hi - lo + (1 if lo > 0 else 0)])
            return
        rows = self.rows_of(parent)[info.hi : hi]
        self._add_spans(parent, rows, before=pager)
        first_new = parent.children.index(pager) - len(rows)
        pager.remove()
        info.hi = hi
        self._add_more(parent, n - hi)
        self._cursor_to(parent.children[first_new])

    def _cursor_to(self, node: TreeNode[NodeInfo]) -> None:
        _ = self.last_line  # rebuilds line numbers after changes
        self.move_cursor(node)
        # Tree only announces a new cursor *line*; after nodes were inserted the
        # same line can hold another node, so say it ourselves.
        if node is not self._announced:
            self._announce(node)

    # -- revealing a span -------------------------------------------------------------

    def _child_for(self, node: TreeNode[NodeInfo], target: int) -> TreeNode[NodeInfo] | None:
        """Opens ``node`` and returns the child standing for row ``target``."""
        self.ensure_loaded(node)
        info = node.data
        assert info is not None
        rows = self.rows_of(node)
        found = np.flatnonzero(rows == target)
        if not len(found):
            return None
        k = int(found[0])
        if not info.lo <= k < info.hi:
            lo = max(0, k - PAGE // 2)
            self._load_window(node, lo, min(len(rows), lo + PAGE))
        node.expand()
        return next((c for c in node.children if c.data and c.data.row == target), None)

    def reveal(self, row: int) -> bool:
        """Opens the path to span ``row`` and puts the cursor on it."""
        model = self.model
        path = model.path_to(row)
        node: TreeNode[NodeInfo] | None
        if self.roots is not None:
            inside = np.isin(np.array(path), self.roots)
            if not inside.any():
                return False
            start = int(np.argmax(inside))
            node = self.root
        else:
            visible = {lane.thread for lane in model.visible_lanes()}
            thread = model.trace.thread
            starts = [
                i for i, p in enumerate(path) if int(thread[p]) in visible and model.in_lane_rows(p)
            ]
            if not starts:
                return False
            start = starts[0]
            node = self._thread_node(int(thread[path[start]]))
            if node is None:
                return False
        for p in path[start:]:
            node = self._child_for(node, p)
            if node is None:
                return False
        self._cursor_to(node)
        return True

    def _thread_node(self, thread: int) -> TreeNode[NodeInfo] | None:
        for pnode in self.root.children:
            for tnode in pnode.children:
                if tnode.data is not None and tnode.data.thread == thread:
                    pnode.expand()
                    return tnode
        return None

    # -- actions ----------------------------------------------------------------------

    @property
    def cursor_row(self) -> int | None:
        """The span under the cursor, if the cursor is on a span."""
        node = self.cursor_node
        if node is None or node.data is None or node.data.kind != "span":
            return None
        return node.data.row

    def action_open(self) -> None:
        """Opens the node under the cursor, or moves into it when already open."""
        node = self.cursor_node
        if node is None:
            return
        if node.allow_expand and not node.is_expanded:
            self.ensure_loaded(node)
            node.expand()
        elif node.children:
            self.action_cursor_down()

    def action_close(self) -> None:
        """Closes the node under the cursor, or moves to its parent."""
        node = self.cursor_node
        if node is None:
            return
        if node.is_expanded and node.children:
            node.collapse()
        else:
            self.action_cursor_parent()

    def action_step(self, delta: int) -> None:
        """Jumps to the next (1) or previous (-1) training step of the cursor's thread."""
        model = self.model
        t = model.trace
        steps = model.steps
        row = self.cursor_row
        if row is None:
            node = self.cursor_node
            thread = node.data.thread if node is not None and node.data is not None else -1
        else:
            thread = int(t.thread[row])
        mine = steps[t.thread[steps] == thread]
        steps = mine if len(mine) else steps
        if not len(steps):
            self.notify("This trace has no training steps (kind 'step').", severity="warning")
            return
        if row is None:
            target = steps[0] if delta > 0 else steps[-1]
        else:
            inside = [p for p in model.path_to(row) if t.kind[p] == t.kind[steps[0]]]
            here = np.flatnonzero(steps == inside[0]) if inside else []
            if len(here):
                target = steps[(int(here[0]) + delta) % len(steps)]
            else:
                k = int(np.searchsorted(t.start_ns[steps], t.start_ns[row], side="right"))
                target = steps[k % len(steps)] if delta > 0 else steps[(k - 1) % len(steps)]
        self.reveal(int(target))

    def goto_step(self, index: int) -> bool:
        """Jumps to the step whose ``index`` attribute (or position) is ``index``."""
        steps = self.model.steps
        t = self.model.trace
        for row in steps.tolist():
            if t.attrs(row).get("index") == index:
                return self.reveal(row)
        if 0 <= index < len(steps):
            return self.reveal(int(steps[index]))
        return False
