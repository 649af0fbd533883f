"""SVG snapshots of the main views on the committed sample trace, at 100x30.

The sample's times are fixed (tests/data/make_sample_trace.py), and the spans
shown have sources that do not change with reimpl edits (the stdlib import
machinery), so the pictures change only when the UI does. Update them with
``pytest tests/tui/test_snapshots.py --snapshot-update`` and look at the diff.
"""

from __future__ import annotations

from textual.pilot import Pilot
from tui_helpers import SAMPLE, SIZE, ready

from tui.app import TorchscopeApp


def _app() -> TorchscopeApp:
    return TorchscopeApp(str(SAMPLE))


async def _settle(pilot: Pilot) -> None:
    await ready(pilot)
    await pilot.pause(0.1)


async def _open_view(pilot: Pilot, key: str) -> None:
    await ready(pilot)
    await pilot.press(key)
    await ready(pilot)
    await pilot.pause(0.1)


def test_calls_view(snap_compare):
    assert snap_compare(_app(), terminal_size=SIZE, run_before=_settle)


def test_calls_view_import_span_selected(snap_compare):
    async def select_import(pilot: Pilot) -> None:
        await ready(pilot)
        # imports stand aside until `i`; then main > MainThread > import torch
        await pilot.press("i", "down", "down")
        await _settle(pilot)

    assert snap_compare(_app(), terminal_size=SIZE, run_before=select_import)


def test_calls_view_small_terminal(snap_compare):
    assert snap_compare(_app(), terminal_size=(80, 24), run_before=_settle)


def test_modules_view(snap_compare):
    async def open_modules(pilot: Pilot) -> None:
        await _open_view(pilot, "2")
        await pilot.press("down", "down", "down")  # SmallCNN > features > 0 > 1 (BatchNorm)
        await _settle(pilot)

    assert snap_compare(_app(), terminal_size=SIZE, run_before=open_modules)


def test_stats_view(snap_compare):
    async def open_stats(pilot: Pilot) -> None:
        await _open_view(pilot, "3")

    assert snap_compare(_app(), terminal_size=SIZE, run_before=open_stats)


def test_findings_view_empty(snap_compare):
    async def open_findings(pilot: Pilot) -> None:
        await _open_view(pilot, "4")

    assert snap_compare(_app(), terminal_size=SIZE, run_before=open_findings)


def test_imports_view(snap_compare):
    async def open_imports(pilot: Pilot) -> None:
        await _open_view(pilot, "5")
        await pilot.press("space")
        await _settle(pilot)

    assert snap_compare(_app(), terminal_size=SIZE, run_before=open_imports)


def test_help_screen(snap_compare):
    async def open_help(pilot: Pilot) -> None:
        await ready(pilot)
        await pilot.press("question_mark")
        await _settle(pilot)

    assert snap_compare(_app(), terminal_size=SIZE, run_before=open_help)


def test_calls_view_marks_the_evidence_of_a_finding(snap_compare):
    """tests/data/sample_findings.tsdb: the sample with one stored finding whose
    evidence is the first step and the import span; both rows carry its mark
    (the import once `i` brings the imports into the tree)."""

    async def with_imports(pilot: Pilot) -> None:
        await ready(pilot)
        await pilot.press("i")
        await _settle(pilot)

    app = TorchscopeApp(str(SAMPLE.with_name("sample_findings.tsdb")))
    assert snap_compare(app, terminal_size=SIZE, run_before=with_imports)
