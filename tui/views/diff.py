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
    """What a tree node stands for: a lane, a segment (step) or an aligned node."""

    what: str  # "lane", "segment", "node" or "note"
    key: int = -1  # segment code or node id
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
        self.tree_model = None  # a tracer.analyze.diff_tree.DiffTree once computed
        self.tree_nodes: dict[int, TreeNode[DiffNode]] = {}
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
        import tracer
        from tracer.analyze.diff import diff
        from tracer.analyze.diff_report import report
        from tracer.analyze.diff_tree import DiffTree
        from tracer.file.errors import TraceError

        try:
            d = diff(tracer.load(self.a), tracer.load(self.b), self.kinds)
        except (TraceError, OSError) as exc:
            self.app.call_from_thread(self._failed, str(exc))
            return
        summary = report(d, limit=0)
        self.app.call_from_thread(self._show, DiffTree(d), summary)

    def _failed(self, error: str) -> None:
        self.query_one("#diff-summary", Static).update(Text(error, style="bold red"))

    def _show(self, model, summary: dict) -> None:
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
        lanes: dict[str, TreeNode[DiffNode]] = {}
        budget = [AUTO_OPEN]
        for seg in model.segments():
            lane = lanes.get(seg.lane)
            if lane is None:
                lane = lanes[seg.lane] = tree.root.add(
                    Text(seg.lane, style="bold"), DiffNode("lane"), expand=True
                )
            label = Text(seg.title)
            if seg.changes:
                label.append(f"  ({seg.changes} changes)", style="bold red")
            node = lane.add(label, DiffNode("segment", seg.code))
            if seg.changes:
                self._open(node, budget)
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
        model = self.tree_model
        for child in node.children:
            data = child.data
            if budget[0] <= 0 or data is None or data.what != "node":
                continue
            if model.changes_below[data.key] > (model.change(data.key) is not None):
                self._open(child, budget)

    def _load(self, node: TreeNode[DiffNode]) -> None:
        data = node.data
        if data is None or data.loaded or data.what not in ("segment", "node"):
            return
        data.loaded = True
        kids = self.tree_model.children(data.key)
        for k in kids[:PAGE].tolist():
            self.tree_nodes[k] = node.add(
                self.label(k),
                DiffNode("node", k),
                allow_expand=len(self.tree_model.children(k)) > 0,
            )
        if len(kids) > PAGE:
            node.add_leaf(Text(f"... {len(kids) - PAGE:,} more", style="dim"), DiffNode("note"))

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
            tree.move_cursor(node)
            tree.scroll_to_node(node)

    def show_node(self, target: int) -> TreeNode[DiffNode] | None:
        """Opens the tree down to aligned node ``target`` and returns its tree node."""
        model = self.tree_model
        path = model.diff.path(target)
        top_parent = int(model.diff.node_parent[path[0]])
        segment = next(
            (n for lane in self.query_one(Tree).root.children for n in lane.children
             if n.data is not None and n.data.key == top_parent),
            None,
        )  # fmt: skip
        if segment is None:
            return None
        for node in [segment] + [self.tree_nodes.get(p) for p in path[:-1]]:
            if node is None:
                return None
            self._load(node)
            node.expand()
        return self.tree_nodes.get(target)
