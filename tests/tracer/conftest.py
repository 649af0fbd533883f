"""Fixtures for tracer tests: fresh trace paths and a recorder that always detaches."""

from __future__ import annotations

import pytest

from reimpl import _trace


@pytest.fixture(autouse=True)
def _detached():
    """No test leaks an attached sink into the next one."""
    yield
    _trace.detach()


@pytest.fixture
def trace_path(tmp_path):
    return str(tmp_path / "t.tsdb")
