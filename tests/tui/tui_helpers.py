"""Shared helpers of the TUI tests (conftest.py holds only fixtures and hooks)."""

from __future__ import annotations

from pathlib import Path

from textual.pilot import Pilot

SAMPLE = Path(__file__).parents[1] / "data" / "sample.tsdb"
SIZE = (100, 30)


async def ready(pilot: Pilot) -> None:
    """Waits until the trace is loaded and the main screen has settled."""
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


async def type_text(pilot: Pilot, text: str) -> None:
    """Types ``text`` one key at a time."""
    await pilot.press(*text)
