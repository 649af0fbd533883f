"""The errors torchscope raises for bad input, each naming the file and the fix."""

from __future__ import annotations


class TraceError(Exception):
    """A trace file cannot be read (missing, empty, garbage, truncated, too new)."""
