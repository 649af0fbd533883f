"""Fixtures for the TUI tests: the committed sample trace, async tests, no leaked sink."""

from __future__ import annotations

import asyncio
import inspect

import pytest
from tui_helpers import SAMPLE

from reimpl import _trace


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Runs ``async def`` tests with asyncio.run (no async plugin is installed)."""
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    names = pyfuncitem._fixtureinfo.argnames
    asyncio.run(pyfuncitem.obj(**{n: pyfuncitem.funcargs[n] for n in names}))
    return True


@pytest.fixture(autouse=True)
def _detached():
    """No test leaks an attached sink into the next one."""
    yield
    _trace.detach()


@pytest.fixture
def sample() -> str:
    """The fixed sample trace written by tests/data/make_sample_trace.py."""
    return str(SAMPLE)
