"""The dead-worker check: torch's messages for a worker that failed or was killed."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time

import pytest

from reimpl.utils.data._utils import signal_handling


def _exit_with(code: int) -> None:
    os._exit(code)


def _dead_child(how: str) -> multiprocessing.Process:
    """A forked child that exited with code 3, or was killed with SIGKILL."""
    ctx = multiprocessing.get_context("fork")
    if how == "exit":
        proc = ctx.Process(target=_exit_with, args=(3,))
        proc.start()
    else:
        proc = ctx.Process(target=time.sleep, args=(30,))
        proc.start()
        os.kill(proc.pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # wait for it to die, without reaping it
        info = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        if info is not None:
            break
        time.sleep(0.01)
    return proc


@pytest.mark.multiprocess
@pytest.mark.parametrize(
    "how, message",
    [
        ("exit", r"exited unexpectedly with exit code 3\. Details are lost"),
        ("kill", r"is killed by signal: Killed\. $"),
    ],
)
def test_dead_worker_is_reported_once(how: str, message: str) -> None:
    proc = _dead_child(how)
    key = id(proc)
    signal_handling._set_worker_pids(key, [proc.pid])
    try:
        with pytest.raises(RuntimeError, match=rf"DataLoader worker \(pid {proc.pid}\) " + message):
            signal_handling._error_if_any_worker_fails()
        signal_handling._error_if_any_worker_fails()  # forgotten after the first report
    finally:
        signal_handling._remove_worker_pids(key)
    proc.join()  # WNOWAIT left the status for multiprocessing to collect
    assert proc.exitcode == (3 if how == "exit" else -signal.SIGKILL)


def test_registry_errors() -> None:
    signal_handling._set_worker_pids(1, [])
    with pytest.raises(RuntimeError, match="only once"):
        signal_handling._set_worker_pids(1, [])
    signal_handling._remove_worker_pids(1)
    with pytest.raises(RuntimeError, match="Cannot find worker information"):
        signal_handling._remove_worker_pids(1)


def test_sigchld_handler_is_installed_once_and_chains() -> None:
    signal_handling._set_SIGCHLD_handler()
    handler = signal.getsignal(signal.SIGCHLD)
    assert callable(handler)
    signal_handling._set_SIGCHLD_handler()
    assert signal.getsignal(signal.SIGCHLD) is handler
