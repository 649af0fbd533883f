"""An exception inside a recorded span reaches the caller unchanged, and the trace
keeps it: on the span (``error``) and on the process (``status``).

(tests/tracer/recording/test_recorder.py has an older version of the first test
that catches the exception itself, so it passed even if the span swallowed it.)
"""

from __future__ import annotations

import pytest
import torch
from sinks import ListSink

import tracer
from reimpl import _trace, nn


def test_exception_inside_span_propagates_and_is_recorded(trace_path):
    with pytest.raises(ValueError, match=r"^boom$"):
        with tracer.record(trace_path):
            with _trace.span("step", "bad"):
                raise ValueError("boom")
    t = tracer.load(trace_path)
    assert t.n == 1 and t.kind_of(0) == "step"
    assert t.attrs(0)["error"] == "ValueError: boom"
    assert t.processes[0].status == "error: ValueError"


def test_span_passes_the_exception_through_and_still_closes() -> None:
    sink = ListSink()
    _trace.attach(sink)
    try:
        with pytest.raises(KeyError):
            with _trace.span("step", "outer"):
                with _trace.span("module.forward", "inner", shape=[2]):
                    raise KeyError("missing")
    finally:
        _trace.detach()
    assert [(r[6], r[8]) for r in sink.records] == [
        ("inner", {"shape": [2], "error": "KeyError: 'missing'"}),
        ("outer", {"error": "KeyError: 'missing'"}),
    ]


def test_failing_hook_propagates_and_is_recorded() -> None:
    """A forward hook that raises, under a recorder: the caller sees the error, and
    both the hook's span and the module's span carry it."""

    def bad_hook(module, args, output):
        raise RuntimeError("hook failed")

    m = nn.Linear(2, 2)
    m.register_forward_hook(bad_hook)
    sink = ListSink()
    _trace.attach(sink)
    try:
        with pytest.raises(RuntimeError, match="hook failed"):
            m(torch.ones(1, 2))
    finally:
        _trace.detach()
    (hook,) = sink.of_kind("hook.forward")
    (forward,) = sink.of_kind("module.forward")
    assert hook[8]["error"] == forward[8]["error"] == "RuntimeError: hook failed"
