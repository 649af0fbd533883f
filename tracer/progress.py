"""Progress bars on stderr for long commands, and nothing anywhere else.

A command that can take seconds on a large trace (load, export, graph, check,
merge, ``imports --deep``) wraps its work in ``shown()``; the code doing the
work opens ``task(...)`` (or iterates through ``track(...)``) wherever it is.
Bars are drawn (with rich, transient: they vanish when done) only inside
``shown()`` *and* when stderr is a terminal, so pipes, files, tests and the
TUI (whose loads run outside any ``shown()``) see no change. Outside, every
call is a no-op costing one global load.

    with progress.shown():
        with progress.task("writing events", total=n) as bar:
            for chunk in chunks:
                ...
                bar.advance(len(chunk))
        for ev in progress.track(events, "exporting", total=n):
            ...
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")

_lock = threading.Lock()
_enabled = 0  # depth of shown() scopes that may draw
_display: Any = None  # the rich Progress while a task is open
_open_tasks = 0
_STEP = 4096  # track(): most items between two updates of the bar


class Task:
    """One bar (a spinner when its total is unknown); inert when not drawn."""

    def __init__(self, task_id: int | None = None) -> None:
        self._id = task_id

    def advance(self, n: float = 1) -> None:
        """Moves the bar ``n`` units on."""
        if self._id is not None and _display is not None:
            _display.advance(self._id, n)

    def update(
        self,
        completed: float | None = None,
        total: float | None = None,
        description: str | None = None,
    ) -> None:
        """Sets where the bar stands, its total or its text."""
        if self._id is not None and _display is not None:
            _display.update(self._id, completed=completed, total=total, description=description)


_INERT = Task()


def is_shown() -> bool:
    """Whether bars are drawn now (inside ``shown()`` with stderr a terminal)."""
    return _enabled > 0


@contextmanager
def shown() -> Iterator[None]:
    """Within this block, ``task`` and ``track`` draw on stderr if it is a terminal."""
    global _enabled
    draw = _stderr_is_terminal()
    if draw:
        with _lock:
            _enabled += 1
    try:
        yield
    finally:
        if draw:
            with _lock:
                _enabled -= 1


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr is not None and sys.stderr.isatty()
    except (AttributeError, ValueError):  # a replaced or closed stderr
        return False


def _new_display() -> Any:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    return Progress(
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(file=sys.stderr),
        transient=True,
    )


@contextmanager
def task(description: str, total: float | None = None) -> Iterator[Task]:
    """A bar for one piece of work (``total=None``: a spinner), removed at the end."""
    global _display, _open_tasks
    if not _enabled:
        yield _INERT
        return
    with _lock:
        if _display is None:
            _display = _new_display()
            _display.start()
        _open_tasks += 1
        task_id = _display.add_task(description, total=total)
    try:
        yield Task(task_id)
    finally:
        with _lock:
            _display.remove_task(task_id)
            _open_tasks -= 1
            if _open_tasks == 0:
                _display.stop()
                _display = None


def track(items: Iterable[T], description: str, total: float | None = None) -> Iterator[T]:
    """Yields ``items`` while a bar counts them (updated every few thousand items)."""
    if not _enabled:
        yield from items
        return
    step = max(1, min(_STEP, int(total) // 200)) if total else _STEP
    with task(description, total) as bar:
        pending = 0
        for item in items:
            yield item
            pending += 1
            if pending == step:
                bar.advance(pending)
                pending = 0
        bar.advance(pending)
