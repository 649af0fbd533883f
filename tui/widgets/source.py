"""The source pane: the reimpl function behind a span and the torch one it mirrors."""

from __future__ import annotations

from rich.syntax import Syntax
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Container, VerticalScroll
from textual.reactive import reactive
from textual.widgets import Static

from tui.model import TraceModel
from tui.source import Source, script_of, source_of, upstream_name

WIDE = 120  # columns from which the two sources sit side by side


def render_source(src: Source) -> Syntax | Text:
    """Highlighted lines numbered as in their file, or why there are none."""
    if src.error is not None:
        return Text(src.error, style="dim italic")
    return Syntax(
        src.text.rstrip("\n"),
        "python",
        line_numbers=True,
        start_line=src.start,
        highlight_lines={src.start},
        theme="ansi_dark",
        word_wrap=False,
    )


class SourcePane(Container):
    """reimpl on the left (or top), upstream torch on the right (or bottom)."""

    row: reactive[int | None] = reactive(None, repaint=False)  # the two boxes repaint
    """The span whose function is shown."""
    show_mirror: reactive[bool] = reactive(True)
    """Whether the upstream torch source is shown beside the reimpl one."""
    wide: reactive[bool] = reactive(False)
    """Whether the pane is wide enough for the two sources side by side."""
    has_upstream: reactive[bool] = reactive(True)
    """Whether the function declares a torch function it mirrors (else one box)."""

    def __init__(self, model: TraceModel, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.model = model
        self.reimpl: Source | None = None
        self.upstream: Source | None = None

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="reimpl-box"):
            yield Static(Text("Select a span to see its source.", style="dim"), id="reimpl-src")
        with VerticalScroll(id="torch-box"):
            yield Static("", id="torch-src")

    def on_mount(self) -> None:
        self.watch_show_mirror(self.show_mirror)

    def on_resize(self) -> None:
        self.wide = self.size.width >= WIDE

    def watch_wide(self, wide: bool) -> None:
        self.set_class(wide, "-wide")

    def watch_show_mirror(self, show: bool) -> None:
        self.set_class(show, "-mirror")

    def watch_has_upstream(self, has: bool) -> None:
        self.set_class(has, "-has-upstream")

    def watch_row(self, row: int | None) -> None:
        reimpl_box = self.query_one("#reimpl-box", VerticalScroll)
        torch_box = self.query_one("#torch-box", VerticalScroll)
        if row is None:
            self.reimpl = self.upstream = None
            self.has_upstream = True  # show both empty boxes: says what will be there
            reimpl_box.border_title = "reimpl"
            torch_box.border_title = "torch"
            self.query_one("#reimpl-src", Static).update(
                Text("Select a span to see its source.", style="dim")
            )
            self.query_one("#torch-src", Static).update("")
            return
        t = self.model.trace
        func = t.func_of(row)
        if self.reimpl is not None and self.reimpl.qualname == func:
            return  # same function as before (siblings often share one): nothing to redo
        self.reimpl = source_of(func, script_of(t.process_of(row).argv))
        upstream = upstream_name(func, t.mirrors)
        self.upstream = source_of(upstream) if upstream else None
        self.has_upstream = self.upstream is not None
        side = "reimpl" if func.startswith("reimpl.") else "source"
        reimpl_box.border_title = f"{side} {self.reimpl.qualname}"
        where = self.reimpl.title if self.reimpl.file else ""
        mirror = "" if self.upstream is not None else "mirrors no torch function"
        reimpl_box.border_subtitle = " · ".join(x for x in (mirror, where) if x)
        self.query_one("#reimpl-src", Static).update(render_source(self.reimpl))
        if self.upstream is None:
            torch_box.border_title = "torch"
            torch_box.border_subtitle = ""
            note = Text(f"{func} declares no upstream torch function it mirrors.", style="dim")
            self.query_one("#torch-src", Static).update(note)
        else:
            torch_box.border_title = f"torch {self.upstream.qualname}"
            torch_box.border_subtitle = self.upstream.title if self.upstream.file else ""
            self.query_one("#torch-src", Static).update(render_source(self.upstream))
        reimpl_box.scroll_home(animate=False)
        torch_box.scroll_home(animate=False)
