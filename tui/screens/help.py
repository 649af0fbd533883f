"""The help screen: every key, read from the bindings so it never goes stale."""

from __future__ import annotations

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from tui import keys


def _key_text(key: str) -> str:
    names = {
        "question_mark": "?",
        "slash": "/",
        "left_square_bracket": "[",
        "right_square_bracket": "]",
        "equals_sign": "=",
        "plus": "+",
        "minus": "-",
        "less_than_sign": "<",
        "greater_than_sign": ">",
    }
    return " ".join(names.get(k.strip(), k.strip()) for k in key.split(","))


def keys_table() -> Table:
    """One row per binding, grouped by where it works."""
    table = Table(box=None, show_header=False, padding=(0, 2))
    table.add_column(style="bold cyan", no_wrap=True)
    table.add_column()
    for place, bindings in keys.all_bindings():
        table.add_row(f"[bold]{place}[/]", "")
        for b in bindings:
            binding = b if isinstance(b, Binding) else Binding(*b)
            table.add_row(_key_text(binding.key), binding.description or binding.action)
        table.add_row("", "")
    table.add_row("[bold]Mouse[/]", "")
    table.add_row("click", "tabs, tree nodes, timeline bars (select the span)")
    table.add_row("wheel", "scroll; on the timeline, zoom")
    return table


class HelpScreen(ModalScreen[None]):
    """Lists the keys of every view; any of escape, q or ? closes it."""

    BINDINGS = [("escape,q,question_mark", "dismiss", "Close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help", classes="dialog"):
            yield Static("[b]torchscope keys[/b]\n")
            yield Static(keys_table())

    def action_dismiss(self, result: None = None) -> None:  # type: ignore[override]
        self.dismiss(None)
