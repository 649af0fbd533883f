"""The errors torchscope raises for bad input, each naming the file and the fix."""

from __future__ import annotations


class TraceError(Exception):
    """A trace file cannot be read (missing, empty, garbage, truncated, too new)."""


_CONTROL = {c: " " for c in range(32)} | {127: " "}


def one_line(text: str) -> str:
    """A message for the terminal: text taken from a damaged file may hold
    newlines or escape codes, which must not break the one-line error or
    reach the terminal as control characters."""
    return text.translate(_CONTROL)
