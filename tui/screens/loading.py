"""The loading screen: reads and indexes the trace in a worker thread."""

from __future__ import annotations

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import ProgressBar, Static
from textual.worker import get_current_worker

import tracer
from tracer.file.errors import TraceError
from tui.messages import LoadFailed, LoadProgress, TraceLoaded
from tui.model import TraceModel

STAGES = 5  # reading the file, then TraceModel.stages()


class LoadingScreen(Screen):
    """A progress bar while the trace loads; the error and what to do if it fails."""

    BINDINGS = [("q", "app.quit", "Quit")]

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path

    def compose(self) -> ComposeResult:
        with Vertical(id="loading"):
            yield Static(f"torchscope: opening {self.path}", id="loading-title")
            # A determinate bar: an animated one would redraw at 60 fps and take
            # the GIL from the loading thread (measured: loading 3x slower).
            yield ProgressBar(total=STAGES, show_eta=False, id="loading-bar")
            yield Static("reading the file", id="loading-stage")

    def on_mount(self) -> None:
        self.load()

    @work(thread=True, exclusive=True, group="load")
    def load(self) -> None:
        """Loads and indexes off the UI thread; stops between stages when cancelled."""
        worker = get_current_worker()
        try:
            trace = tracer.load(self.path)
        except (TraceError, OSError) as exc:
            self.post_message(LoadFailed(str(exc)))
            return
        model = TraceModel(trace)
        stages = model.stages()
        for done, stage in enumerate(stages):
            if worker.is_cancelled:
                return
            self.post_message(LoadProgress(stage.label, done + 1, len(stages) + 1))
            stage.run()
        if not worker.is_cancelled:
            self.post_message(TraceLoaded(model))

    def on_load_progress(self, message: LoadProgress) -> None:
        bar = self.query_one(ProgressBar)
        bar.update(total=message.total, progress=message.done)
        self.query_one("#loading-stage", Static).update(message.label)

    def on_load_failed(self, message: LoadFailed) -> None:
        self.query_one(ProgressBar).display = False
        error = Text.assemble((message.error, "bold red"), "\n\nPress q to quit.")
        self.query_one("#loading-stage", Static).update(error)
