"""The event seam: the only thing ``reimpl`` knows about tracing.

``reimpl`` code emits spans and instants here; a recorder (``tracer``) attaches
itself as the *sink* from outside. When nothing is attached, an
instrumentation point costs one attribute load and one comparison
(``if _trace.sink is not None``), so untraced reimpl code costs what torch
costs.

Two ways to emit, by how hot the path is:

* Hot paths (``Module._call_impl``, hooks, optimizer updates) test the sink
  inline and append one record when they finish::

      sink = _trace.sink
      if sink is not None:
          sid = sink.next_id()
          t0 = perf_counter_ns()
      ...  # the work
      if sink is not None:
          sink.append((sid, 0, get_ident(), t0, perf_counter_ns(),
                       "module.forward", name, FUNC, attrs))

* Cold paths use the context manager ``with span(kind, name, **attrs):``
  or ``instant(kind, name, **attrs)``.

A record is the tuple ``(id, link, tid, start_ns, end_ns, kind, name, func,
attrs)``: ``id`` comes from ``sink.next_id()`` when the span starts (so ids
are in start order within a process), ``link`` is the id of a parent span on
*another* thread (0 when the parent is simply the enclosing span on the same
thread: the reader rebuilds same-thread nesting from ids and close order),
``func`` names the reimpl function that produced the span, and ``attrs`` is
a small dict of JSON-friendly values or ``None``. Records are appended when a
span *closes*; an instant is a record whose end equals its start.

Hot paths may give ``attrs`` as a tuple of ``(key, value)`` pairs instead,
shared by all records of one site, with str/int/float/None values only. A
tuple of such things is one Python's cyclic GC stops tracking, and so is a
record holding it; a record holding a dict never is. Buffered records that
stay tracked get promoted to the oldest generation and trigger full
collections of the whole heap: over 600 traced steps of the 50-block
BatchNorm MLP, 2 of them, 300 ms, a quarter of the recording overhead.
Sinks turn such tuples into dicts.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from threading import get_ident
from time import perf_counter_ns
from typing import Any, Protocol, TypeVar

__all__ = [
    "MIRRORS",
    "Sink",
    "attach",
    "detach",
    "instant",
    "mirrors",
    "set_process_role",
    "set_thread_info",
    "snapshot",
    "span",
    "step",
]


class Sink(Protocol):
    """What a recorder offers to instrumentation points."""

    next_id: Callable[[], int]
    """Returns a fresh span id (start order within the process)."""
    append: Callable[[tuple], None]
    """Takes one finished record tuple; must be cheap and thread-safe."""

    def thread_info(self, tid: int, name: str, device: str | None) -> None:
        """Names the thread ``tid`` and the device it serves."""

    def process_role(self, role: str, index: int | None) -> None:
        """Says what this process is: main, worker k, rank r."""

    def snapshot(self, kind: str, key: str, payload: dict) -> None:
        """Stores a structured snapshot (a model's structure, for instance)."""


sink: Sink | None = None
"""The attached recorder, or None. Hot paths read this and compare to None."""

backward_spans: bool = True
"""Whether modules record ``module.backward`` spans while a sink is attached.
They cost one autograd hook per module boundary per step (see
benchmarks/bench_module.py); a recorder sets this from its options
(``torchscope record --no-backward-spans``) and forward spans stay."""

stamps: Any = None
"""The native boundary stamp (``reimpl._native.Stamps``) while the attached sink
drains it, else None: module boundaries then get a C++ autograd pre-hook instead
of a Python tensor hook. A sink opts in with a ``stamps`` attribute (and draws
its span ids from ``stamps.next_id``); the choice is made here, once per attach,
and announced to ``on_stamps`` listeners, which rebind their hot paths."""

on_stamps: list[Callable[[], None]] = []
"""Called after ``stamps`` changes (module.py picks its boundary hook there)."""

_role: tuple[str, int | None] = ("main", None)
_threads: dict[int, tuple[str, str | None]] = {}


def native_stamps() -> Any:
    """The native boundary stamp, loaded (or built) once; None: use Python hooks."""
    from reimpl import _native  # only when a recorder asks: reimpl imports torch alone

    return _native.load()


def _use_stamps(new: Any) -> None:
    global stamps
    if stamps is not None and stamps is not new:
        stamps.enable(False)
    stamps = new
    if new is not None:
        new.enable(True)
    for listener in on_stamps:
        listener()


def use_stamps(new: Any) -> None:
    """For an attached sink that takes the native stamp later (once torch is imported)."""
    _use_stamps(new)


def attach(new_sink: Sink) -> None:
    """Makes ``new_sink`` receive every event; replays roles and thread names."""
    global sink
    new_sink.process_role(*_role)
    alive = {thread.ident for thread in threading.enumerate()}
    for tid, (name, device) in list(_threads.items()):
        if tid in alive:  # a dead thread's id may already belong to another
            new_sink.thread_info(tid, name, device)
    sink = new_sink
    _use_stamps(getattr(new_sink, "stamps", None))


def detach() -> None:
    """Stops emitting; instrumentation points become no-ops again."""
    global sink
    sink = None
    _use_stamps(None)


def set_process_role(role: str, index: int | None = None) -> None:
    """Declares this process's role (``main``, ``worker``, ``rank``) for its lane."""
    global _role
    _role = (role, index)
    if sink is not None:
        sink.process_role(role, index)


def set_thread_info(name: str, device: str | None = None) -> None:
    """Names the current thread and the device it serves (a replica on sim:1)."""
    tid = get_ident()
    _threads[tid] = (name, device)
    if sink is not None:
        sink.thread_info(tid, name, device)


def snapshot(kind: str, key: str, payload: dict) -> None:
    """Stores a structured snapshot when a recorder is attached."""
    if sink is not None:
        sink.snapshot(kind, key, payload)


def _caller_func(depth: int = 2) -> str:
    """Qualified name of the function that called ``span``/``instant``."""
    frame = sys._getframe(depth)
    return f"{frame.f_globals.get('__name__', '?')}.{frame.f_code.co_qualname}"


class _NoSpan:
    """The shared do-nothing span handed out while detached."""

    __slots__ = ()
    id = 0

    def __enter__(self) -> _NoSpan:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def set(self, **attrs: Any) -> None:
        """Accepts attributes discovered during the span; ignored when detached."""


_NO_SPAN = _NoSpan()


class _Span:
    """A live span for cold paths; records itself when the block exits."""

    __slots__ = ("_sink", "attrs", "func", "id", "kind", "link", "name", "t0")

    def __init__(
        self, s: Sink, kind: str, name: str, func: str, link: int, attrs: dict | None
    ) -> None:
        self._sink = s
        self.kind = kind
        self.name = name
        self.func = func
        self.link = link
        self.attrs = attrs
        self.id = s.next_id()
        self.t0 = 0

    def __enter__(self) -> _Span:
        self.t0 = perf_counter_ns()
        return self

    def set(self, **attrs: Any) -> None:
        """Adds attributes learnt while the span runs (bytes moved, wait time)."""
        if self.attrs is None:
            self.attrs = attrs
        else:
            self.attrs.update(attrs)

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is not None:
            self.set(error=f"{getattr(exc_type, '__name__', exc_type)}: {exc}")
        self._sink.append(
            (
                self.id,
                self.link,
                get_ident(),
                self.t0,
                perf_counter_ns(),
                self.kind,
                self.name,
                self.func,
                self.attrs,
            )
        )


def span(
    kind: str, name: str, *, func: str | None = None, link: int = 0, **attrs: Any
) -> _Span | _NoSpan:
    """A context manager recording one span; a shared no-op when detached.

    ``func`` defaults to the calling function's qualified name; ``link`` is the
    id of a parent span on another thread (a replica's ``dp.parallel_apply``).
    """
    s = sink
    if s is None:
        return _NO_SPAN
    return _Span(s, kind, name, func or _caller_func(), link, attrs or None)


def instant(kind: str, name: str, *, func: str | None = None, link: int = 0, **attrs: Any) -> None:
    """Records a zero-length event (a warning, a learning-rate change)."""
    s = sink
    if s is None:
        return
    t = perf_counter_ns()
    s.append(
        (s.next_id(), link, get_ident(), t, t, kind, name, func or _caller_func(), attrs or None)
    )


def step(index: int, name: str = "step") -> _Span | _NoSpan:
    """A user's own annotation of one training step: ``with step(i): ...``.

    Every step has the same name, so the views can fold fifty steps into one
    call path; the index is an attribute.
    """
    return span("step", name, func=_caller_func(), index=index)


MIRRORS: dict[str, str] = {}
"""reimpl qualified name -> the upstream torch qualified name it mirrors."""

_T = TypeVar("_T")


def mirrors(upstream: str) -> Callable[[_T], _T]:
    """Declares the torch function or class a reimpl one mirrors.

    The TUI shows both sources side by side; a test imports every declared
    target from the installed torch, so a typo or an upstream rename fails CI.
    """

    def mark(obj: _T) -> _T:
        qualname = f"{obj.__module__}.{obj.__qualname__}"  # type: ignore[attr-defined]
        MIRRORS[qualname] = upstream
        obj.__mirrors__ = upstream  # type: ignore[attr-defined]
        return obj

    return mark
