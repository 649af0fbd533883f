"""The call tree on a span with many children: pages, never a node per child."""

from __future__ import annotations

from tui_helpers import ready

import tracer
from reimpl import _trace
from tui.app import TorchscopeApp
from tui.widgets.calltree import MAX_WINDOW, PAGE, CallTree

N = 1_500


def _wide_trace(path: str) -> None:
    with tracer.record(path):
        with _trace.step(0):
            with _trace.span("data.fetch", "wide"):
                for i in range(N):
                    with _trace.span("data.collate", f"item {i}"):
                        pass


async def test_huge_node_pages_and_reveals(tmp_path):
    path = str(tmp_path / "wide.tsdb")
    _wide_trace(path)
    app = TorchscopeApp(path)
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        tree = app.screen.query_one("#calltree", CallTree)
        t = tree.model.trace
        wide = int(next(r for r in range(t.n) if t.name_of(r) == "wide"))
        assert tree.reveal(wide)
        node = tree.cursor_node
        tree.ensure_loaded(node)
        node.expand()
        kids = [c for c in node.children if c.data.kind == "span"]
        assert len(kids) == PAGE and node.children[-1].data.kind == "more"
        tree.page(node.children[-1])
        assert len([c for c in node.children if c.data.kind == "span"]) == 2 * PAGE
        assert tree.cursor_row == t.children(wide)[PAGE]  # the first new row
        for _ in range(4):  # past the cap: the window slides instead of growing
            tree.page(node.children[-1])
        spans = [c for c in node.children if c.data.kind == "span"]
        assert len(spans) == MAX_WINDOW and node.children[0].data.kind == "earlier"
        assert node.data.lo == 6 * PAGE - MAX_WINDOW
        assert tree.cursor_row == t.children(wide)[5 * PAGE]
        target = int(t.children(wide)[N - 3])
        assert tree.reveal(target) and tree.cursor_row == target
        spans = [c for c in node.children if c.data.kind == "span"]
        assert len(spans) <= MAX_WINDOW
        assert node.children[0].data.kind == "earlier"
        first_shown = node.data.lo
        tree.page(node.children[0])
        assert node.data.lo == first_shown - PAGE
        assert tree.cursor_row == t.children(wide)[first_shown - 1]
