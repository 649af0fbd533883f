"""Fixtures for every test: global hook registries and flags restored after each one."""

from __future__ import annotations

from collections.abc import Iterator

import global_state
import pytest


@pytest.fixture(scope="session", autouse=True)
def _pristine_global_state() -> global_state.Saved:
    """The globals as the session found them, before any test or fixture ran."""
    return global_state.snapshot()


@pytest.fixture(autouse=True)
def _restore_global_state(_pristine_global_state: global_state.Saved) -> Iterator[None]:
    """After every test, the globals of tests/global_state.py (global module and
    optimizer hooks and flags, in reimpl and in torch; the event seam's sink, role
    and thread names) are as the session found them: no test sees what another
    test, or a session fixture set up for another test, left there."""
    yield
    global_state.restore(_pristine_global_state)
