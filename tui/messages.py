"""App-wide messages: small dataclasses that cross screens and views.

Messages that only one widget posts are nested classes on that widget
(``CallTree.SpanSelected``); these are the ones several parts of the app send
or answer.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.message import Message

from tui.model import TraceModel


@dataclass
class LoadProgress(Message):
    """The loading worker finished one stage out of ``total``."""

    label: str
    done: int
    total: int


@dataclass
class TraceLoaded(Message):
    """The trace is loaded and indexed: the main screen can be shown."""

    model: TraceModel


@dataclass
class LoadFailed(Message):
    """The trace could not be opened; ``error`` says why and what to do."""

    error: str


@dataclass
class JumpToSpan(Message):
    """Show span ``row`` in the call tree (from Stats, Findings, Modules, Imports)."""

    row: int
