"""Runs the ``torchscope`` command in a fresh interpreter, as a user would."""

from __future__ import annotations

import subprocess
import sys


def torchscope(*args: str, cwd=None) -> subprocess.CompletedProcess:
    """``torchscope ARGS`` with its exit code, stdout and stderr captured."""
    return subprocess.run(
        [sys.executable, "-m", "tracer.cli", *args], capture_output=True, text=True, cwd=cwd
    )
