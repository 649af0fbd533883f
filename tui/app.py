"""torchscope's terminal UI: ``torchscope view FILE`` and ``torchscope demo`` open it.

Thin on purpose: the app knows its stylesheets, its global keys and which
screen comes next; screens own layout and widgets own behaviour.
"""

from __future__ import annotations

import gc

from textual.app import App
from textual.binding import Binding

from tracer.file.errors import one_line
from tui.messages import LoadFailed, TraceLoaded
from tui.screens.diff import DiffScreen
from tui.screens.help import HelpScreen
from tui.screens.loading import LoadingScreen
from tui.screens.main import MainScreen


class TorchscopeApp(App[int]):
    """Explores one trace file."""

    CSS_PATH = ["app.tcss", "views.tcss"]
    TITLE = "torchscope"
    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("question_mark", "help", "Help"),
    ]

    def __init__(self, path: str, diff: str | None = None, kinds: list[str] | None = None) -> None:
        super().__init__()
        self.path = path
        self.diff_path = diff  # a second trace: the app shows the Diff view of path against it
        self.kinds = kinds
        self.failed = False

    def on_mount(self) -> None:
        # What is loaded by now (modules) and by on_trace_loaded (the trace) lives as
        # long as the app: frozen, a full collection skips it instead of rescanning
        # a few hundred thousand objects (0.1-0.3 s, a stall in the middle of a key).
        gc.freeze()
        if self.diff_path is not None:
            self.push_screen(DiffScreen(self.path, self.diff_path, self.kinds))
        else:
            self.push_screen(LoadingScreen(self.path))

    def on_unmount(self) -> None:
        gc.unfreeze()  # collectable again once the app is gone (tests run many apps)

    def on_trace_loaded(self, message: TraceLoaded) -> None:
        gc.freeze()
        self.switch_screen(MainScreen(message.model))
        for warning in message.model.trace.warnings:  # a damaged block left out, a recovery
            self.notify(one_line(warning), title="trace", severity="warning", timeout=20)

    def on_load_failed(self, message: LoadFailed) -> None:
        self.failed = True

    def action_help(self) -> None:
        """Shows every key."""
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_quit(self) -> None:  # type: ignore[override]
        """Quits; the exit status says whether the trace could be opened."""
        self.exit(return_code=1 if self.failed else 0)


def run_app(path: str, diff: str | None = None, kinds: list[str] | None = None) -> int:
    """Opens ``path`` in the terminal UI (compared with ``diff`` when given);
    returns the process exit status."""
    app = TorchscopeApp(str(path), diff, kinds)
    app.run()
    return app.return_code or 0
