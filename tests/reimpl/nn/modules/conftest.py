"""The nn.Module trace tests record into an in-memory sink attached for the test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sinks import ListSink

from reimpl import _trace


@pytest.fixture
def sink() -> Iterator[ListSink]:
    """A ListSink attached to reimpl's seam for one test, detached after it."""
    s = ListSink()
    _trace.attach(s)
    try:
        yield s
    finally:
        _trace.detach()
