"""Small modal screens: a one-line prompt (search, step number) and the filter picker."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, OptionList
from textual.widgets.option_list import Option

from tui.model import Filter, TraceModel


class PromptScreen(ModalScreen[str | None]):
    """Asks for one line of text; escape cancels."""

    BINDINGS = [("escape", "cancel", "Cancel")]

    def __init__(self, title: str, placeholder: str = "", value: str = "") -> None:
        super().__init__()
        self.title_text = title
        self.placeholder = placeholder
        self.value = value

    def compose(self) -> ComposeResult:
        with Vertical(id="prompt", classes="dialog"):
            yield Label(self.title_text)
            yield Input(value=self.value, placeholder=self.placeholder, id="prompt-input")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.dismiss(event.value)

    def action_cancel(self) -> None:
        self.dismiss(None)


class FilterScreen(ModalScreen[Filter | None]):
    """Picks what the call tree and timeline show: one process, thread or kind."""

    BINDINGS = [("escape", "cancel", "Cancel")]

    def __init__(self, model: TraceModel) -> None:
        super().__init__()
        self.model = model
        self.choices: list[Filter] = []

    def compose(self) -> ComposeResult:
        model = self.model
        options: list[Option] = [Option("Show everything", id="all")]
        self.choices = [Filter()]
        parts = sorted({lane.part for lane in model.lanes})
        for part in parts:
            options.append(Option(f"process  {model.process_label(part)}"))
            self.choices.append(Filter(part=part))
        for lane in model.lanes:
            options.append(Option(f"thread   {lane.process} / {lane.label}"))
            self.choices.append(Filter(thread=lane.thread))
        for code, kind, count in model.kind_counts():
            options.append(Option(f"kind     {kind} ({count:,})"))
            self.choices.append(Filter(kind=code))
        with Vertical(id="filter", classes="dialog"):
            yield Label("Show only (escape cancels)")
            yield OptionList(*options, id="filter-options")

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.dismiss(self.choices[event.option_index])

    def action_cancel(self) -> None:
        self.dismiss(None)
