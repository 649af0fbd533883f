"""Following spawned processes: a spawned child records into the same trace.

A forked child inherits the recorder (``tracer.recording.recorder``'s fork handlers give
it its own part). A *spawned* one (``torch.multiprocessing.spawn``, a
DataLoader with ``multiprocessing_context="spawn"``) starts a fresh
interpreter that knows nothing of it. While a recorder is active,
``Process.start`` is wrapped: a spawn or forkserver process gets its target
wrapped in ``run_recorded``, a module-level function that pickles by name,
and that in the child opens a recorder on the same file (a new part) around
the real target.
"""

from __future__ import annotations

import functools
import multiprocessing.process
import os
import sys
from collections.abc import Callable
from typing import Any

from reimpl import _trace
from tracer.file.errors import TraceError

_original_start: Callable | None = None
_trace_path: str | None = None
_run_id: str | None = None


def run_recorded(
    path: str, run_id: str, backward_spans: bool, target: Callable, *args: Any, **kwargs: Any
) -> Any:
    """Runs in the spawned child: the real target, recorded into ``path`` as a
    part of run ``run_id`` (never replacing the trace it joins)."""
    from tracer.recording import terminate
    from tracer.recording.recorder import Recorder

    recorder = Recorder(
        path,
        argv=[f"{getattr(target, '__module__', '?')}.{getattr(target, '__qualname__', target)}"],
        backward_spans=backward_spans,
        run_id=run_id,
        mode="join",
    )
    recorder._role = ("child", None)
    try:
        recorder.start()
    except TraceError as exc:  # the program runs on, unrecorded, rather than fail
        print(f"torchscope: this process is not recorded: {exc}", file=sys.stderr)
        return target(*args, **kwargs)
    status = "ok"
    uninstall_sigterm = terminate.install(recorder)  # a launcher's SIGTERM flushes first
    detach_target = _attach_target()
    try:
        return target(*args, **kwargs)
    except SystemExit as exc:
        if exc.code not in (0, None):
            # torch.multiprocessing's _wrap turns the rank's error into sys.exit(1)
            # inside its except block: the error itself is the exit's context.
            cause = exc.__context__ or exc
            status = f"error: {type(cause).__name__}: {cause}"
        raise
    except BaseException as exc:
        status = f"error: {type(exc).__name__}: {exc}"
        raise
    finally:
        detach_target()
        recorder.stop(status)
        uninstall_sigterm()


def _attach_target() -> Callable[[], None]:
    """The parent's recording target, attached in this spawned child too (the torch
    adapter says so in ``TORCHSCOPE_TARGET`` while attached)."""
    from tracer.targets import attach_target

    target = os.environ.get("TORCHSCOPE_TARGET", "reimpl")
    return attach_target(target, backward_spans=_trace.backward_spans)


def _start(self: multiprocessing.process.BaseProcess) -> None:
    """``Process.start`` while recording: spawned targets record themselves."""
    method = getattr(self, "_start_method", None)
    if _trace_path is not None and method in ("spawn", "forkserver") and self._target:
        # the parent recorder's options travel with the target
        self._target = functools.partial(
            run_recorded, _trace_path, _run_id, _trace.backward_spans, self._target
        )
    _original_start(self)  # type: ignore[misc]


def follow(path: str, run_id: str) -> None:
    """Starts wrapping spawned processes' targets (idempotent)."""
    global _original_start, _trace_path, _run_id
    _trace_path, _run_id = path, run_id
    if _original_start is None:
        _original_start = multiprocessing.process.BaseProcess.start
        multiprocessing.process.BaseProcess.start = _start  # type: ignore[method-assign]


def unfollow() -> None:
    """Stops wrapping."""
    global _original_start, _trace_path
    _trace_path = None
    if _original_start is not None:
        multiprocessing.process.BaseProcess.start = _original_start  # type: ignore[method-assign]
        _original_start = None
