"""The ``sink`` fixture of the DataParallel tests: a ListSink attached for one test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sinks import ListSink

from reimpl import _trace


@pytest.fixture
def sink() -> Iterator[ListSink]:
    """Records everything reimpl emits during the test; detached after it."""
    s = ListSink()
    _trace.attach(s)
    yield s
    _trace.detach()
