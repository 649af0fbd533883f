"""Fixtures for every test: global hook registries and flags restored after each one."""

from __future__ import annotations

from collections.abc import Iterator

import global_state
import pytest


@pytest.fixture(autouse=True)
def _restore_global_state() -> Iterator[None]:
    """No test sees global module or optimizer hooks, flags or a sink left by another
    (tests/global_state.py lists them), in reimpl or in torch."""
    saved = global_state.snapshot()
    yield
    global_state.restore(saved)
