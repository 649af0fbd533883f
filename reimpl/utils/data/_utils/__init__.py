"""Helpers of the DataLoader, mirroring ``torch/utils/data/_utils/__init__.py``.

Worker processes can only run functions defined at module level, so torch
keeps the worker loop, fetchers, collation and pinning in this folder; so do
we. Left out: Windows (``IS_WINDOWS`` stays for the signal code's guard).
"""

from __future__ import annotations

import atexit
import sys

from torch._utils import ExceptionWrapper  # torch keeps it importable from here

IS_WINDOWS = sys.platform == "win32"

MP_STATUS_CHECK_INTERVAL = 5.0
"""Seconds between liveness checks while waiting on another process, so a dead
sender never hangs the receiver."""

python_exit_status = False
"""True once the interpreter is shutting down: then ``_shutdown_workers`` must
not touch queues whose machinery may already be torn down."""

try:
    import numpy  # noqa: F401

    HAS_NUMPY = True
except ModuleNotFoundError:
    HAS_NUMPY = False


def _set_python_exit_flag() -> None:
    global python_exit_status
    python_exit_status = True


atexit.register(_set_python_exit_flag)

from . import collate, fetch, pin_memory, signal_handling, worker  # noqa: E402

__all__ = [
    "HAS_NUMPY",
    "IS_WINDOWS",
    "MP_STATUS_CHECK_INTERVAL",
    "ExceptionWrapper",
    "collate",
    "fetch",
    "pin_memory",
    "signal_handling",
    "worker",
]
