"""The Diff view: two traces' aligned tree, each span marked missing, extra or
reordered, with its time in A and B and the ratio (``torchscope view A --diff B``).

The alignment is ``tracer.analyze.diff`` (what ``torchscope diff`` prints);
this view only walks it: lanes, then steps, then spans, opened lazily.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Container
from textual.widgets import Static, Tree
from textual.widgets.tree import TreeNode

import tracer
from tracer.analyze.diff import diff
from tracer.analyze.diff_tree import DiffTree, SegmentInfo
from tracer.file.errors import TraceError
from tui.model import fmt_ns

MARKS = {
    "missing": ("- ", "bold red"),
    "extra": ("+ ", "bold green"),
    "reordered": ("~ ", "bold yellow"),
    None: ("  ", ""),
}
PAGE = 500  # children shown under one node at most
AUTO_OPEN = 300  # nodes opened at start, following the changes


@dataclass
class DiffNode:
    """What a tree node stands for: a lane, a segment (step), an aligned node, or
    "more" (the next page of its parent's children)."""

    what: str  # "lane", "segment", "node" or "more"
    key: int | str = -1  # lane label, segment code or node id
    shown: int = 0  # children added so far
    loaded: bool = False


def ratio_text(a: int | None, b: int | None) -> str:
    """``1.20 ms -> 1.50 ms  1.25x``; one side only when the span is on one side."""
    if a is None:
        return f"B {fmt_ns(b)}"
    if b is None:
        return f"A {fmt_ns(a)}"
    ratio = f"{b / a:.2f}x" if a else "-"
    return f"{fmt_ns(a)} -> {fmt_ns(b)}  {ratio}"


class DiffView(Container):
    """Computes the diff in a worker, then shows the aligned tree."""

    BINDINGS = [Binding("n", "next_change", "Next change")]

    def __init__(self, a: str, b: str, kinds: list[str] | None = None) -> None:
        super().__init__(id="diff-view")
        self.a, self.b, self.kinds = a, b, kinds
        self.tree_model: DiffTree | None = None  # once computed
        self.tree_nodes: dict[int, TreeNode[DiffNode]] = {}  # aligned node -> tree node
        self.segment_nodes: dict[int, TreeNode[DiffNode]] = {}  # segment code -> tree node
        self.segment_info: dict[int, SegmentInfo] = {}  # segment code -> its info
        self.lane_segments: dict[str, list[SegmentInfo]] = {}  # lane label -> its steps
        self.summary: dict | None = None

    def compose(self) -> ComposeResult:
        yield Static(f"comparing {self.a} (A) with {self.b} (B)...", id="diff-summary")
        yield Tree[DiffNode]("diff", id="diff-tree")

    def on_mount(self) -> None:
        self.query_one(Tree).show_root = False
        self.compute()

    @work(thread=True, exclusive=True, group="diff")
    def compute(self) -> None:
        """Loads both traces and aligns them off the UI thread."""
        try:
            d = diff(tracer.load(self.a), tracer.load(self.b), self.kinds)
        except (TraceError, OSError, ValueError) as exc:  # ValueError: --kinds match nothing
            self.app.call_from_thread(self._failed, str(exc))
            return
        # what the header says; the report's time tables are not shown here
        summary = {"counts": d.counts(), "structural": d.structural, "notes": d.notes}
        model = DiffTree(d)
        model.changed  # noqa: B018 -- the reading order of changes, ready for n
        self.app.call_from_thread(self._show, model, summary)

    def _failed(self, error: str) -> None:
        self.query_one("#diff-summary", Static).update(Text(error, style="bold red"))

    def _show(self, model: DiffTree, summary: dict) -> None:
        self.tree_model, self.summary = model, summary
        c = summary["counts"]
        if summary["structural"]:
            head = Text.assemble(
                ("structure differs: ", "bold red"),
                f"{c['missing']} missing (A only), {c['extra']} extra (B only), "
                f"{c['reordered']} reordered; {c['aligned']:,} spans aligned   (n: next change)",
            )
        else:
            head = Text.assemble(
                ("same structure", "bold green"), f": {c['aligned']:,} spans aligned; times differ"
            )
        for note in summary["notes"]:
            head.append(f"\nnote: {note}", style="dim")
        self.query_one("#diff-summary", Static).update(head)
        tree = self.query_one(Tree)
        for seg in model.segments():
            self.lane_segments.setdefault(seg.lane, []).append(seg)
        budget = [AUTO_OPEN]
        for lane in self.lane_segments:
            self._open(tree.root.add(Text(lane, style="bold"), DiffNode("lane", lane)), budget)
        if not summary["structural"] and tree.root.children:  # nothing to follow: show the top
            first = tree.root.children[0].children
            if first:
                self._load(first[0])
                first[0].expand()
        tree.root.expand()
        tree.focus()

    def _open(self, node: TreeNode[DiffNode], budget: list[int]) -> None:
        """Opens ``node`` and, following the changes, the nodes below it that hold one."""
        self._load(node)
        node.expand()
        budget[0] -= 1
        for child in node.children:
            if budget[0] <= 0:
                return
            if child.data is not None and self._holds_changes(child.data):
                self._open(child, budget)

    def _holds_changes(self, data: DiffNode) -> bool:
        model = self.tree_model
        if data.what == "segment":
            return self.segment_info[data.key].changes > 0
        if data.what == "node":
            return model.changes_below[data.key] > (model.change(data.key) is not None)
        return False

    def _kids(self, data: DiffNode) -> list:
        if data.what == "lane":
            return self.lane_segments[data.key]
        return self.tree_model.children(data.key).tolist()

    def _load(self, node: TreeNode[DiffNode]) -> None:
        """Adds the first page of a node's children (once)."""
        data = node.data
        if data is None or data.loaded or data.what not in ("lane", "segment", "node"):
            return
        data.loaded = True
        self._load_page(node)

    def _load_page(self, node: TreeNode[DiffNode]) -> None:
        """Adds the next ``PAGE`` children of ``node``, with a "more" leaf after them."""
        data = node.data
        kids = self._kids(data)
        for child in list(node.children):
            if child.data is not None and child.data.what == "more":
                child.remove()
        page = kids[data.shown : data.shown + PAGE]
        data.shown += len(page)
        for kid in page:
            if data.what == "lane":
                self.segment_info[kid.code] = kid
                label = Text(self.tree_model.segment_title(kid))
                if kid.changes:
                    label.append(f"  ({kid.changes} changes)", style="bold red")
                self.segment_nodes[kid.code] = node.add(label, DiffNode("segment", kid.code))
            else:
                has_kids = len(self.tree_model.children(kid)) > 0
                self.tree_nodes[kid] = node.add(
                    self.label(kid), DiffNode("node", kid), allow_expand=has_kids
                )
        if data.shown < len(kids):
            more = Text(f"... {len(kids) - data.shown:,} more (enter)", style="dim")
            node.add_leaf(more, DiffNode("more"))

    def label(self, node: int) -> Text:
        """Mark, kind and name, times in A and B, and changes below."""
        model = self.tree_model
        change = model.change(node)
        mark, style = MARKS[change]
        text = Text(mark, style=style)
        text.append(model.diff.label(node), style=style or None)
        text.append(f"  {ratio_text(*model.times(node))}", style="dim")
        below = int(model.changes_below[node]) - (change is not None)
        if below:
            text.append(f"  [{below} below]", style="red")
        return text

    def on_tree_node_selected(self, event: Tree.NodeSelected[DiffNode]) -> None:
        node = event.node
        if node.data is not None and node.data.what == "more" and node.parent is not None:
            self._load_page(node.parent)

    def on_tree_node_expanded(self, event: Tree.NodeExpanded[DiffNode]) -> None:
        self._load(event.node)

    def action_next_change(self) -> None:
        """Moves the cursor to the next span that is missing, extra or reordered."""
        model = self.tree_model
        if model is None:
            return
        tree = self.query_one(Tree)
        current = tree.cursor_node.data if tree.cursor_node is not None else None
        after = current.key if current is not None and current.what == "node" else None
        target = model.next_change(after)
        if target is None:
            self.notify("No structural difference: only times differ.")
            return
        node = self.show_node(target)
        if node is not None:
            _ = tree.last_line  # line numbers rebuilt after the nodes just added
            tree.move_cursor(node)
            tree.scroll_to_node(node)

    def show_node(self, target: int) -> TreeNode[DiffNode] | None:
        """Opens the tree down to aligned node ``target`` (paging on where the way
        passes a long list) and returns its tree node."""
        model = self.tree_model
        path = model.diff.path(target)
        code = int(model.diff.node_parent[path[0]])
        lane = next(
            (n for n in self.query_one(Tree).root.children
             if n.data is not None and any(s.code == code for s in self.lane_segments[n.data.key])),
            None,
        )  # fmt: skip
        if lane is None:
            return None
        node = self._reveal(lane, code, self.segment_nodes)
        for step in path:
            if node is None:
                return None
            node = self._reveal(node, step, self.tree_nodes)
        return node

    def _reveal(self, parent: TreeNode[DiffNode], key: int, index: dict) -> TreeNode | None:
        """Opens ``parent`` and pages on until the child ``key`` is shown."""
        self._load(parent)
        parent.expand()
        while key not in index and parent.data is not None:
            before = parent.data.shown
            self._load_page(parent)
            if parent.data.shown == before:
                return None
        return index.get(key)
