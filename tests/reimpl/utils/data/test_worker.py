"""Worker processes: seeding like torch, errors carried home, deaths noticed, traces kept."""

from __future__ import annotations

import gc
import os
import signal
import time

import numpy as np
import pytest
import torch.utils.data._utils.worker as torch_worker
from data_parity import LIBS

import reimpl.utils.data as R
import tracer
from reimpl import _trace
from reimpl.utils.data._utils import worker


@pytest.fixture(autouse=True)
def _detached():
    yield
    _trace.detach()


@pytest.mark.parametrize("base_seed", [0, 1, 2**32 + 5, 2**63 - 1, 123456789012345])
@pytest.mark.parametrize("worker_id", [0, 1, 7])
def test_numpy_seed_state_matches_torch(base_seed: int, worker_id: int) -> None:
    assert worker._generate_state(base_seed, worker_id) == torch_worker._generate_state(
        base_seed, worker_id
    )


def test_no_worker_info_in_main_process() -> None:
    assert R.get_worker_info() is None


class _Failing:
    """Raises on one index; built per library below."""

    def __init__(self, bad: int) -> None:
        self.bad = bad

    def __len__(self) -> int:
        return 6

    def __getitem__(self, i: int) -> int:
        if i == self.bad:
            raise ValueError(f"bad index {i}")
        return i


def _first_line(exc: BaseException) -> tuple[str, str]:
    return type(exc).__name__, str(exc).splitlines()[0]


def _error_of(loader) -> BaseException | None:
    """What iterating ``loader`` raises; the workers are shut down either way.

    Shut down explicitly: torch's iterator, dropped inside a reference cycle
    (an exception's traceback), is collected after its queues' finalizers
    stopped their feeder threads, so its workers never hear ``None`` and are
    terminated only after ``MP_STATUS_CHECK_INTERVAL`` (5 s).
    """
    it = iter(loader)
    try:
        for _ in it:
            pass
    except Exception as exc:
        return exc
    finally:
        it._shutdown_workers()
    return None


@pytest.mark.multiprocess
def test_worker_errors_are_reraised_like_torch() -> None:
    got = {}
    for name, lib in LIBS.items():
        ds = type("Failing", (_Failing, lib.Dataset), {})(3)
        got[name] = _first_line(_error_of(lib.DataLoader(ds, batch_size=2, num_workers=2)))
    assert got["reimpl"] == got["torch"]
    assert got["torch"] == ("ValueError", "Caught ValueError in DataLoader worker process 1.")


@pytest.mark.multiprocess
def test_worker_init_fn_errors_are_reraised_like_torch() -> None:
    def init(worker_id: int) -> None:
        raise KeyError(worker_id)

    got = {}
    for name, lib in LIBS.items():
        ds = type("Failing", (_Failing, lib.Dataset), {})(-1)
        got[name] = _first_line(_error_of(lib.DataLoader(ds, num_workers=1, worker_init_fn=init)))
    assert got["reimpl"] == got["torch"]
    assert got["torch"][0] == "KeyError"


class _Sleepy(R.Dataset):
    """Slow samples; index ``die`` kills the worker that reads it."""

    def __init__(self, n: int, delay: float, die: int = -1) -> None:
        self.n, self.delay, self.die = n, delay, die

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        if i == self.die:
            os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(self.delay)
        return i


def _children(pid: int) -> list[tuple[int, str]]:
    """(pid, state) of every process whose parent is ``pid``, read from /proc."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append((int(entry), fields[0]))
    return found


def _assert_all_gone(pids: list[int]) -> None:
    """Every worker is reaped: not a child any more (no zombie left), not running."""
    gc.collect()
    deadline = time.monotonic() + 5
    while {p for p, _ in _children(os.getpid())} & set(pids) and time.monotonic() < deadline:
        time.sleep(0.02)
    left = [(p, s) for p, s in _children(os.getpid()) if p in pids]
    assert left == [], f"workers left behind: {left}"
    assert not [p for p, s in _children(os.getpid()) if s == "Z"]
    for pid in pids:
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


DEATH = r"DataLoader worker \(pid(\(s\))? \d+\) (exited unexpectedly|is killed by signal: Killed)"


@pytest.mark.multiprocess
def test_worker_killed_in_getitem_raises_promptly() -> None:
    it = iter(R.DataLoader(_Sleepy(40, 0.01, die=9), batch_size=2, num_workers=2))
    pids = [w.pid for w in it._workers]
    started = time.monotonic()
    with pytest.raises(RuntimeError, match=DEATH) as info:
        for _ in it:
            pass
    assert time.monotonic() - started < 3
    assert str(pids[0]) in str(info.value)  # index 9 is in batch 4: worker 0's
    del info, it
    _assert_all_gone(pids)


@pytest.mark.multiprocess
def test_worker_killed_from_outside_raises_promptly() -> None:
    it = iter(R.DataLoader(_Sleepy(40, 0.02), batch_size=2, num_workers=2))
    pids = [w.pid for w in it._workers]
    next(it)
    started = time.monotonic()
    with pytest.raises(RuntimeError, match=DEATH):
        os.kill(pids[1], signal.SIGKILL)  # the SIGCHLD handler may raise right here
        for _ in it:
            pass
    assert time.monotonic() - started < 3
    it._shutdown_workers()
    _assert_all_gone(pids)


@pytest.mark.multiprocess
def test_iterator_dropped_in_a_cycle_stops_its_workers_at_once() -> None:
    def init(worker_id: int) -> None:
        raise KeyError(worker_id)

    loader = R.DataLoader(_Sleepy(4, 0.0), num_workers=2, worker_init_fn=init)
    it = iter(loader)
    pids = [w.pid for w in it._workers]
    with pytest.raises(KeyError):
        list(it)  # the traceback ties the iterator into a cycle
    del it
    started = time.monotonic()
    _assert_all_gone(pids)
    assert time.monotonic() - started < 2


@pytest.mark.multiprocess
def test_timeout_names_the_timeout_like_torch() -> None:
    got = {}
    for name, lib in LIBS.items():
        ds = type("Sleepy", (_Sleepy, lib.Dataset), {})(2, 0.6)
        got[name] = str(_error_of(lib.DataLoader(ds, num_workers=1, timeout=0.2)))
    assert got["reimpl"] == got["torch"] == "DataLoader timed out after 0.2 seconds"


@pytest.mark.multiprocess
def test_clean_shutdown_leaves_no_process() -> None:
    loader = R.DataLoader(_Sleepy(6, 0.0), batch_size=2, num_workers=2, persistent_workers=True)
    it = iter(loader)
    pids = [w.pid for w in it._workers]
    assert [b.tolist() for b in it] == [[0, 1], [2, 3], [4, 5]]
    assert [b.tolist() for b in loader] == [[0, 1], [2, 3], [4, 5]]  # the same workers
    assert [w.pid for w in loader._iterator._workers] == pids
    it._shutdown_workers()
    _assert_all_gone(pids)
    # a half-consumed, non-persistent iterator shuts down when dropped
    it = iter(R.DataLoader(_Sleepy(20, 0.0), batch_size=2, num_workers=2))
    pids = [w.pid for w in it._workers]
    next(it)
    del it
    _assert_all_gone(pids)


@pytest.mark.multiprocess
def test_trace_of_a_killed_worker_keeps_what_was_recorded(tmp_path) -> None:
    path = str(tmp_path / "t.tsdb")
    # index 15 is in batch 7: worker 1's fourth task, after a few flushes
    loader = R.DataLoader(_Sleepy(40, 0.02, die=15), batch_size=2, num_workers=2)
    with tracer.record(path, flush_interval=0.05):
        it = iter(loader)
        pids = [w.pid for w in it._workers]
        try:
            for _ in it:
                pass
        except RuntimeError as exc:
            error = str(exc)
    assert "DataLoader worker" in error
    it._shutdown_workers()
    _assert_all_gone(pids)

    t = tracer.load(path)
    kinds = np.array([str(s) for s in t.strings])[t.kind]
    main = next(p for p in t.processes if p.role == "main")
    in_main = set(kinds[t.part == main.part])
    assert {"data.iter", "data.next", "data.sampler"} <= in_main
    batches = [t.attrs(int(r))["batch"] for r in np.flatnonzero(kinds == "data.next")]
    assert batches[:7] == list(range(7))
    workers = {p.pid: p for p in t.processes if p.role == "worker"}
    assert set(workers) == set(pids)
    survivor, killed = workers[pids[0]], workers[pids[1]]
    assert survivor.role_index == 0 and survivor.status == "ok"
    assert killed.role_index == 1 and killed.status != "ok"
    assert "data.worker" in set(kinds[t.part == survivor.part])
    assert "data.worker" in set(kinds[t.part == killed.part])  # flushed before the kill
