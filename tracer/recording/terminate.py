"""SIGTERM: a recorded process writes what it has before it goes.

Launchers end the survivors of a failed run with SIGTERM (torchrun's agent,
``torch.multiprocessing.spawn``), then SIGKILL the ones still there a grace
period later. Python runs a signal handler only in the main thread, between
bytecodes: a rank blocked inside a collective (its peer died) would never run
it, and lose up to a flush interval of spans.

So the handler is two-sided. ``signal.set_wakeup_fd`` makes the C-level
handler write the signal number into a pipe, which a watcher thread reads at
once, whatever the main thread is doing: it flushes every unflushed span,
writes the collective the process is blocked in (``reimpl._collectives``)
as a span cut at the signal, and marks the part ``terminated: SIGTERM``.
Meanwhile the Python handler raises ``SystemExit`` in the main thread, so the
program's ``finally`` blocks run and the recorder closes normally. A main
thread still stuck ``GRACE_S`` later (in C) is not waited for: the watcher
closes the part and ends the process with status 143, as SIGTERM would have.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

GRACE_S = 1.0
EXIT_CODE = 128 + signal.SIGTERM


def _sigterm_to_exit(recorder: Any) -> Callable[[int, FrameType | None], None]:
    """SIGTERM becomes SystemExit, so ``finally`` blocks run and the trace closes;
    not once the recorder is closing the trace (that would cut its last flush)."""

    def handler(signum: int, frame: FrameType | None) -> None:
        if recorder.active and not recorder._stopping.locked():
            recorder._terminated = "SIGTERM"  # the part says so, whoever closes it first
            raise SystemExit(128 + signum)

    return handler


def _watch(read_fd: int, recorder: Any, done: threading.Event) -> None:
    """The watcher thread: on SIGTERM, flush at once; end a main thread stuck in C."""
    while True:
        try:
            data = os.read(read_fd, 64)
        except OSError:
            return
        if not data:  # the write end was closed: uninstalled
            os.close(read_fd)
            return
        if signal.SIGTERM not in data:
            continue  # another signal with a Python handler (SIGINT): not ours
        try:
            recorder.terminated("SIGTERM")
        except Exception as exc:  # never let the watcher hide the signal
            print(f"torchscope: flushing on SIGTERM failed: {exc}", file=sys.stderr)
        if done.wait(GRACE_S):
            return  # the main thread took the SystemExit and closed the trace
        try:
            recorder.stop()  # waits for a stop the main thread began; else closes the part
        finally:
            if not done.is_set():
                os._exit(EXIT_CODE)


def install(recorder: Any) -> Callable[[], None]:
    """Makes SIGTERM flush ``recorder`` and end the program; returns the undo.

    Main thread only (``signal`` requires it); elsewhere, or when the program
    already uses a wakeup fd, only the Python handler is installed.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = signal.signal(signal.SIGTERM, _sigterm_to_exit(recorder))
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    old_fd = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    if old_fd != -1:  # someone else's (an event loop): leave theirs in place
        signal.set_wakeup_fd(old_fd)
        os.close(read_fd)
        os.close(write_fd)
        read_fd = write_fd = -1
    done = threading.Event()
    if read_fd != -1:
        threading.Thread(
            target=_watch, args=(read_fd, recorder, done), name="torchscope-sigterm", daemon=True
        ).start()

    def uninstall() -> None:
        done.set()
        if write_fd != -1:
            signal.set_wakeup_fd(-1)
            os.close(write_fd)  # the watcher reads b"", closes its end and ends
        signal.signal(signal.SIGTERM, previous)

    return uninstall
