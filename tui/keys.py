"""Every binding of the app, grouped by where it works (for the help screen and docs)."""

from __future__ import annotations

from textual.binding import Binding, BindingType


def all_bindings() -> list[tuple[str, list[BindingType]]]:
    """(place, bindings) pairs read from the classes themselves, so help never lies."""
    from textual.widgets import Tree

    from tui.app import TorchscopeApp
    from tui.screens.main import MainScreen
    from tui.views import CallsView, ImportsView, ModulesView
    from tui.widgets.calltree import CallTree
    from tui.widgets.timeline import Timeline

    tree_keys = [b for b in Tree.BINDINGS if isinstance(b, Binding) and b.key != "space"]
    return [
        ("Anywhere", list(TorchscopeApp.BINDINGS) + list(MainScreen.BINDINGS)),
        ("Calls view", list(CallsView.BINDINGS) + list(CallTree.BINDINGS)),
        ("Call tree", tree_keys),
        ("Timeline (when focused: t)", list(Timeline.BINDINGS)),
        ("Modules view", list(ModulesView.BINDINGS)),
        ("Imports view", list(ImportsView.BINDINGS)),
    ]
