"""The Modules view: each root module's tree from the recorded structure snapshots.

Every module shows its class, parameters, buffers and registered hooks (the
hooks are where the DeOldify bug lives), and the time its ``module.forward``
spans took: those spans are named by the module's path.
"""

from __future__ import annotations

import numpy as np
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Static, Tree
from textual.widgets.tree import TreeNode

from tui.messages import JumpToSpan
from tui.model import TraceModel, fmt_ns
from tui.views.base import View


def _shape(item: dict) -> str:
    return f"{tuple(item.get('shape', []))} {item.get('dtype', '')}".strip()


class ModulesView(View):
    """Module tree on the left, the selected module's parts on the right."""

    ID = "modules"
    TITLE = "Modules"
    EMPTY = (
        "No module snapshots in this trace.\n\n"
        "reimpl records a model's structure the first time one of its modules runs."
    )
    BINDINGS = [Binding("j", "jump", "Show in Calls")]

    @classmethod
    def is_empty(cls, model: TraceModel) -> bool:
        return not model.module_snapshots()

    def compose_view(self) -> ComposeResult:
        with Horizontal():
            yield Tree("modules", id="module-tree")
            with VerticalScroll(id="module-side"):
                yield Static("Select a module.", id="module-detail")

    def on_mount(self) -> None:
        if self.is_empty(self.model):
            return
        self.times = self.model.module_times()
        tree = self.query_one("#module-tree", Tree)
        tree.show_root = False
        multi = len({s["part"] for s in self.model.module_snapshots()}) > 1
        for snap in self.model.module_snapshots():
            payload = snap["payload"]
            by_path = {m["path"]: m for m in payload.get("modules", [])}
            root_path = payload.get("root", "")
            suffix = f" in {self.model.process_label(snap['part'])}" if multi else ""
            node = tree.root.add(self._label(by_path.get(root_path, {}), suffix), data=None)
            self._add(node, by_path, root_path, root_path)
            node.expand_all()
        tree.root.expand()

    def _add(self, node: TreeNode, by_path: dict, path: str, root: str) -> None:
        module = by_path.get(path)
        if module is None:
            return
        node.data = module
        for child in module.get("children", []):
            child_path = child if path == root else f"{path}.{child}"
            sub = by_path.get(child_path, {"path": child_path, "cls": "?"})
            leaf = not by_path.get(child_path, {}).get("children")
            kid = node.add(self._label(sub), data=sub, allow_expand=not leaf)
            self._add(kid, by_path, child_path, root)

    def _label(self, module: dict, suffix: str = "") -> Text:
        path = module.get("path", "?")
        calls, total = self.times.get(path, (0, 0))
        hooks = sum(len(v) for v in module.get("hooks", {}).values())
        text = Text.assemble(
            (path.rsplit(".", 1)[-1], "bold"), " ", (module.get("cls", "?"), "cyan")
        )
        if calls:
            text.append(f"  {fmt_ns(total)} ({calls} calls)", style="dim")
        if hooks:
            text.append(f"  {hooks} hook(s)", style="magenta")
        return text + Text(suffix, style="dim")

    def on_tree_node_highlighted(self, event: Tree.NodeHighlighted) -> None:
        module = event.node.data
        if module:
            self.query_one("#module-detail", Static).update(self._detail(module))

    def _detail(self, module: dict) -> Table:
        table = Table.grid(padding=(0, 1))
        table.add_column(style="bold", no_wrap=True)
        table.add_column()
        calls, total = self.times.get(module["path"], (0, 0))
        table.add_row("path", module["path"])
        table.add_row("class", module.get("cls", "?"))
        table.add_row("forward", f"{calls} call(s), {fmt_ns(total)} in all" if calls else "-")
        for p in module.get("parameters", []):
            grad = "" if p.get("requires_grad", True) else " (frozen)"
            table.add_row(Text("param", style="green"), f"{p['name']} {_shape(p)}{grad}")
        for b in module.get("buffers", []):
            keep = "" if b.get("persistent", True) else " (not persistent)"
            table.add_row(Text("buffer", style="yellow"), f"{b['name']} {_shape(b)}{keep}")
        for kind, hooks in module.get("hooks", {}).items():
            for h in hooks:
                table.add_row(Text(f"hook {kind}", style="magenta"), f"{h['name']} (id {h['id']})")
        return table

    def action_jump(self) -> None:
        """Shows the longest forward of the selected module in the call tree."""
        node = self.query_one("#module-tree", Tree).cursor_node
        if node is None or not node.data:
            return
        t = self.model.trace
        code, kind = t.code(node.data["path"]), t.code("module.forward")
        rows = np.flatnonzero((t.name == code) & (t.kind == kind)) if code >= 0 else []
        if len(rows):
            self.post_message(JumpToSpan(int(rows[np.argmax(t.dur_ns[rows])])))
        else:
            self.notify("No forward span of this module in the trace.", severity="warning")
