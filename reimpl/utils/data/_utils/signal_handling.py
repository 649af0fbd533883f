"""Noticing dead workers, mirroring ``torch/utils/data/_utils/signal_handling.py``.

A worker killed by a signal (out of shared memory, a segfault, the OOM
killer, ``kill -9``) sends no message; the main process would wait forever for
its batch. So, as torch does, every iterator registers its workers' pids, and
a SIGCHLD handler checks them the moment any child changes state: a worker
that exited with an error or died of a signal raises a ``RuntimeError`` in the
main thread right away. (The iterator also checks liveness every time a
queue read times out, ``MP_STATUS_CHECK_INTERVAL``.)

torch keeps the pid registry and the check in C (``DataLoader.cpp``); here
they are Python, with the same messages. ``os.waitid(..., WNOWAIT)`` peeks at
a child's status without reaping it, so ``multiprocessing`` still collects
its exit code. The workers' own fatal-signal handlers (print a message on
SIGSEGV/SIGBUS/SIGFPE, then die) are torch's C ones, reused as they are.

Left out: Windows, which has no SIGCHLD.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterable
from typing import Any

from torch._C import _set_worker_signal_handlers

from reimpl._trace import mirrors

from . import IS_WINDOWS

__all__ = [
    "_error_if_any_worker_fails",
    "_remove_worker_pids",
    "_set_SIGCHLD_handler",
    "_set_worker_pids",
    "_set_worker_signal_handlers",
]

_worker_pids: dict[int, set[int]] = {}
"""id(iterator) -> the pids of its live workers (torch's ``worker_pids`` map in C)."""


def _set_worker_pids(key: int, pids: Iterable[int]) -> None:
    """Registers an iterator's workers; a key is registered once."""
    if key in _worker_pids:
        raise RuntimeError(
            "_set_worker_pids should be called only once for each _BaseDataLoaderIter."
        )
    _worker_pids[key] = set(pids)


def _remove_worker_pids(key: int) -> None:
    """Forgets an iterator's workers once they have been shut down on purpose."""
    if _worker_pids.pop(key, None) is None:
        raise RuntimeError(f"Cannot find worker information for _BaseDataLoaderIter with id {key}")


def _error_if_any_worker_fails() -> None:
    """Raises if a registered worker exited with an error or was killed by a signal."""
    for pid_set in list(_worker_pids.values()):
        for pid in list(pid_set):
            try:
                info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                continue  # already reaped, or not our child
            if info is None or info.si_pid == 0:
                continue  # still running
            if info.si_code == os.CLD_EXITED and info.si_status != 0:
                message = (
                    f"DataLoader worker (pid {pid}) exited unexpectedly with exit code "
                    f"{info.si_status}. Details are lost due to multiprocessing. "
                    "Rerunning with num_workers=0 may give better error trace."
                )
            elif info.si_code in (os.CLD_KILLED, os.CLD_DUMPED):
                message = (
                    f"DataLoader worker (pid {pid}) is killed by signal: "
                    f"{signal.strsignal(info.si_status)}. "
                )
                if info.si_status == signal.SIGBUS:
                    message += (
                        "It is possible that dataloader's workers are out of shared memory. "
                        "Please try to raise your shared memory limit."
                    )
            else:
                continue
            # Forget the set first: the error will make the other workers exit
            # too, and their SIGCHLDs must not raise again over this one.
            pid_set.clear()
            raise RuntimeError(message)


_SIGCHLD_handler_set = False
"""One handler serves every DataLoader of the process."""


@mirrors("torch.utils.data._utils.signal_handling._set_SIGCHLD_handler")
def _set_SIGCHLD_handler() -> None:
    """Installs (once, from the main thread) the handler that checks workers on SIGCHLD."""
    if IS_WINDOWS:
        return
    # signal handlers can only be set from the main thread
    if not isinstance(threading.current_thread(), threading._MainThread):  # type: ignore[attr-defined]
        return
    global _SIGCHLD_handler_set
    if _SIGCHLD_handler_set:
        return
    previous_handler = signal.getsignal(signal.SIGCHLD)
    if not callable(previous_handler):
        previous_handler = None  # SIG_DFL for SIGCHLD does nothing anyway

    def handler(signum: int, frame: Any) -> None:
        _error_if_any_worker_fails()
        if previous_handler is not None:
            previous_handler(signum, frame)

    signal.signal(signal.SIGCHLD, handler)
    _SIGCHLD_handler_set = True
