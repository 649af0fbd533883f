"""numba compilations as ``numba.compile`` spans, through numba's event API.

reimpl compiles kernels (BatchNorm, the fused Adam update) on first use or
loads them from numba's cache; a trace should say which, and how long it took,
instead of showing a mysteriously slow first step.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from numba.core import event as numba_event

FUNC = "numba.core.dispatcher.Dispatcher.compile"


class NumbaCompileListener(numba_event.Listener):
    """Turns numba:compile start/end events into spans on the compiling thread."""

    def __init__(self, sink: Any) -> None:
        self.sink = sink
        self._open = threading.local()

    def on_start(self, event: Any) -> None:
        """Remembers when and under which id the compilation began."""
        stack = getattr(self._open, "stack", None)
        if stack is None:
            stack = self._open.stack = []
        stack.append((self.sink.next_id(), time.perf_counter_ns()))

    def on_end(self, event: Any) -> None:
        """Appends the finished span with the function and its signature."""
        stack = getattr(self._open, "stack", None)
        if not stack:
            return
        sid, t0 = stack.pop()
        data = event.data or {}
        dispatcher = data.get("dispatcher")
        name = getattr(getattr(dispatcher, "py_func", None), "__qualname__", str(dispatcher))
        module = getattr(getattr(dispatcher, "py_func", None), "__module__", "")
        attrs = {"function": f"{module}.{name}", "signature": str(data.get("args", ""))}
        self.sink.append(
            (
                sid,
                0,
                threading.get_ident(),
                t0,
                time.perf_counter_ns(),
                "numba.compile",
                name,
                FUNC,
                attrs,
            )
        )


def install(sink: Any) -> NumbaCompileListener:
    """Starts reporting numba compilations to ``sink``."""
    listener = NumbaCompileListener(sink)
    numba_event.register("numba:compile", listener)
    return listener


def uninstall(listener: NumbaCompileListener) -> None:
    """Stops reporting."""
    numba_event.unregister("numba:compile", listener)
