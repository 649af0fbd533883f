"""The Calls view sets imports and compilations aside, as summary does; ``i`` brings
them in and takes them out again."""

from __future__ import annotations

import numpy as np
from textual.widgets.tree import TreeNode
from tui_helpers import ready

from tui.app import TorchscopeApp
from tui.views.calls import CallsView
from tui.widgets.calltree import CallTree, NodeInfo

SIZE = (120, 40)


def _listed(tree: CallTree) -> set[int]:
    """Rows of every span node the tree holds now."""
    out: set[int] = set()

    def walk(node: TreeNode[NodeInfo]) -> None:
        if node.data is not None and node.data.kind == "span":
            out.add(node.data.row)
        for child in node.children:
            walk(child)

    walk(tree.root)
    return out


async def test_i_brings_the_imports_in_and_takes_them_out(sample) -> None:
    app = TorchscopeApp(sample)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        calls = app.screen.query_one(CallsView)
        tree, model = calls.tree, calls.model
        t = model.trace
        imports = set(np.flatnonzero(t.kind == t.code("import")).tolist())
        top_imports = {r for r in imports if model.is_top[r]}
        assert top_imports  # the sample's main thread opens with `import torch`
        assert not _listed(tree) & imports  # set aside by default
        assert "set aside (i shows them)" in str(calls.status)
        first = _listed(tree)

        await pilot.press("i")
        await ready(pilot)
        assert top_imports <= _listed(tree)
        assert "imports and compilations shown" in str(calls.status)
        main = next(iter(top_imports))
        assert tree.reveal(main) and tree.cursor_row == main  # and their subtrees open

        await pilot.press("i")
        await ready(pilot)
        assert not _listed(tree) & imports
        assert _listed(tree) == first


async def test_showing_an_import_from_the_imports_view_brings_them_in(sample) -> None:
    app = TorchscopeApp(sample)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        calls = app.screen.query_one(CallsView)
        t = calls.model.trace
        row = int(calls.model.import_roots()[0])
        assert calls.show_span(row)
        assert calls.model.show_imports and calls.tree.cursor_row == row
        assert t.kind_of(row) == "import"


def test_the_key_is_in_the_footer_and_help() -> None:
    from tui.keys import all_bindings

    calls = dict(all_bindings())["Calls view"]
    toggle = [b for b in calls if getattr(b, "key", None) == "i"]
    assert toggle and toggle[0].show and toggle[0].action == "toggle_imports"
