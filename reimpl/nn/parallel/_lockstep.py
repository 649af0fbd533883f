"""Lockstep: replica threads take turns at every instrumentation point.

No torch counterpart. A race between DataParallel replicas (the DeOldify hook
bug) depends on where the interpreter happens to switch threads, so it shows
up only sometimes. Under ``with lockstep():`` the replica threads of
``parallel_apply`` pass a baton round-robin, in replica order, at fixed
points, so one interleaving, the same on every run, is forced:

* every module forward entry (a global forward pre-hook, which runs before the
  module's own pre-hooks) and exit (a global forward hook, which runs before
  the module's own forward hooks), so each user hook call sits between two
  switch points;
* every write a replica thread makes to ``sys.stdout`` or ``sys.stderr``
  (a ``print``): that is where a real thread releases the GIL, and so where a
  dict shared by replicas can change under an iterator.

Only one replica thread runs at a time; a thread that finishes (or fails)
hands the baton on. No sleeps: a condition variable. Threads that are not
replicas (the main thread) never wait.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

from ..modules import module as _module

__all__ = ["lockstep"]

_active = 0  # how many lockstep() blocks are open
_local = threading.local()  # .baton and .index of a replica thread under lockstep


class Baton:
    """Turn-taking among the replica threads of one ``parallel_apply`` call."""

    def __init__(self, n: int) -> None:
        self._cond = threading.Condition()
        self._turn = 0
        self._live = list(range(n))  # replicas still running, in turn order
        self.switches = 0  # how many times the baton was passed (for tests)

    def _next(self, index: int) -> int:
        later = [i for i in self._live if i > index]
        return later[0] if later else self._live[0]

    def join(self, index: int) -> None:
        """Called first thing in replica ``index``'s thread: waits for its turn."""
        _local.baton, _local.index = self, index
        with self._cond:
            self._cond.wait_for(lambda: self._turn == index)

    def switch(self, index: int) -> None:
        """Hands the baton to the next live replica and waits to get it back."""
        with self._cond:
            nxt = self._next(index)
            if nxt == index:
                return
            self.switches += 1
            self._turn = nxt
            self._cond.notify_all()
            self._cond.wait_for(lambda: self._turn == index)

    def leave(self, index: int) -> None:
        """Called last in replica ``index``'s thread, even after an exception."""
        _local.baton = None
        with self._cond:
            self._live.remove(index)
            if self._live:
                self._turn = self._next(index)
            self._cond.notify_all()


def new_baton(n: int) -> Baton | None:
    """A baton for ``n`` replica threads when lockstep is on, else None."""
    return Baton(n) if _active else None


def switch_point() -> None:
    """Passes the baton if called on a replica thread under lockstep; else nothing."""
    baton = getattr(_local, "baton", None)
    if baton is not None:
        baton.switch(_local.index)


def _on_forward_pre(module: Any, args: Any) -> None:
    switch_point()


def _on_forward(module: Any, args: Any, output: Any) -> None:
    switch_point()


# torchscope's own machinery, not the user's hooks: recorded as internal, and
# hidden by the views unless TORCHSCOPE_SHOW_INTERNAL=1
_on_forward_pre._torchscope_internal = True  # type: ignore[attr-defined]
_on_forward._torchscope_internal = True  # type: ignore[attr-defined]


class _SwitchingStream:
    """``sys.stdout`` as replicas see it under lockstep: a write is a switch point."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        written = self._stream.write(text)
        switch_point()
        return written

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


@contextmanager
def lockstep() -> Iterator[None]:
    """Makes replica threads switch round-robin at every instrumentation point.

    A race between replicas then reproduces on every run::

        with lockstep():
            out = DataParallel(model, device_ids=["sim:0", "sim:1"])(x)
    """
    global _active
    _active += 1
    handles = []
    streams = None
    if _active == 1:
        handles = [
            _module.register_module_forward_pre_hook(_on_forward_pre),
            _module.register_module_forward_hook(_on_forward),
        ]
        streams = (sys.stdout, sys.stderr)
        sys.stdout = _SwitchingStream(sys.stdout)  # type: ignore[assignment]
        sys.stderr = _SwitchingStream(sys.stderr)  # type: ignore[assignment]
    try:
        yield
    finally:
        _active -= 1
        for handle in handles:
            handle.remove()
        if streams is not None:
            sys.stdout, sys.stderr = streams
