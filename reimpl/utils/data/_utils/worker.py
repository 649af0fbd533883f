"""The worker process, mirroring ``torch/utils/data/_utils/worker.py``.

Each worker seeds ``random``, torch and NumPy from ``base_seed + worker_id``
(so ``torch.initial_seed()`` inside a worker equals torch's), builds its own
fetcher over its own copy of the dataset, then serves ``(task index, batch
indices)`` from its index queue until it receives ``None``. Results, errors
(as ``ExceptionWrapper``) and the end of an iterable dataset go back on the
one shared result queue. A watchdog ends the loop if the main process dies.

Tracing: the worker declares itself (role ``worker``, thread ``worker k``) so
a recorder forked into it writes its own lane, and every task is a
``data.worker`` span with the fetch and collate nested inside. The ``init``
span carries digests of the worker's random states after ``worker_init_fn``
(``_rng_fingerprints``), the evidence of ``torchscope check``'s
``worker-seed-duplicate``.

An ``IterDataPipe`` is seeded from the epoch's shared seed (the main process
draws it; every worker seeds its copy alike, at start and at each
``_ResumeIteration``), so random pipes such as shufflers agree across workers.

Left out: thread workers (``WorkerInfo.rng``), the Windows watchdog.
"""

from __future__ import annotations

import array
import hashlib
import os
import queue
import random
from dataclasses import dataclass
from typing import Any

import torch
from torch._utils import ExceptionWrapper

from reimpl import _trace
from reimpl._trace import mirrors

from . import HAS_NUMPY, MP_STATUS_CHECK_INTERVAL, signal_handling


@mirrors("torch.utils.data._utils.worker.ManagerWatchdog")
class ManagerWatchdog:
    """Tells a worker its main process is gone: a dead parent re-parents the child."""

    def __init__(self) -> None:
        self.manager_pid = os.getppid()
        self.manager_dead = False

    def is_alive(self) -> bool:
        if not self.manager_dead:
            self.manager_dead = os.getppid() != self.manager_pid
        return not self.manager_dead


_worker_info: WorkerInfo | None = None


@mirrors("torch.utils.data._utils.worker.WorkerInfo")
@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """What a worker knows about itself: id, how many, its seed, its dataset copy."""

    id: int
    num_workers: int
    seed: int
    dataset: Any
    rng: Any = None
    worker_method: str | None = "multiprocessing"


@mirrors("torch.utils.data._utils.worker.get_worker_info")
def get_worker_info() -> WorkerInfo | None:
    """The current worker's info; None in the main process.

    A dataset or ``worker_init_fn`` uses it to configure each worker's copy
    differently (which shard of an iterable dataset to read, for instance).
    """
    return _worker_info


@mirrors("torch.utils.data._utils.worker._IterableDatasetStopIteration")
@dataclass(frozen=True)
class _IterableDatasetStopIteration:
    """A worker's iterable dataset is exhausted: send it no more tasks."""

    worker_id: int


@mirrors("torch.utils.data._utils.worker._ResumeIteration")
@dataclass(frozen=True)
class _ResumeIteration:
    """A persistent worker starts a new epoch: rebuild the fetcher."""

    seed: int | None = None


@mirrors("torch.utils.data._utils.worker._generate_state")
def _generate_state(base_seed: int, worker_id: int) -> list[int]:
    """NumPy's seed for a worker, a 4-word state hashed like ``numpy.random.SeedSequence``.

    A plain ``base_seed + worker_id`` would give NumPy and ``random`` the same
    stream; hashing keeps them apart. (Adapted by torch from NumPy, MIT.)
    """
    INIT_A = 0x43B0D7E5
    MULT_A = 0x931E8875
    INIT_B = 0x8B51F9DD
    MULT_B = 0x58F38DED
    MIX_MULT_L = 0xCA01F9DD
    MIX_MULT_R = 0x4973F715
    XSHIFT = 4 * 8 // 2
    MASK32 = 0xFFFFFFFF

    entropy = [worker_id, base_seed & MASK32, base_seed >> 32, 0]
    pool = [0] * 4
    hash_const_A = INIT_A

    def hash(value: int) -> int:
        nonlocal hash_const_A
        value = (value ^ hash_const_A) & MASK32
        hash_const_A = (hash_const_A * MULT_A) & MASK32
        value = (value * hash_const_A) & MASK32
        return (value ^ (value >> XSHIFT)) & MASK32

    def mix(x: int, y: int) -> int:
        result = ((MIX_MULT_L * x) & MASK32) - ((MIX_MULT_R * y) & MASK32)
        result &= MASK32
        return (result ^ (result >> XSHIFT)) & MASK32

    for i in range(len(pool)):  # add the entropy to the pool
        pool[i] = hash(entropy[i])
    for i_src in range(len(pool)):  # mix every bit into every word
        for i_dst in range(len(pool)):
            if i_src != i_dst:
                pool[i_dst] = mix(pool[i_dst], hash(pool[i_src]))

    hash_const_B = INIT_B
    state = []
    for i_dst in range(4):
        data_val = pool[i_dst]
        data_val = (data_val ^ hash_const_B) & MASK32
        hash_const_B = (hash_const_B * MULT_B) & MASK32
        data_val = (data_val * hash_const_B) & MASK32
        data_val = (data_val ^ (data_val >> XSHIFT)) & MASK32
        state.append(data_val)
    return state


def _rng_fingerprints() -> dict[str, str]:
    """Short digests of the global random states, as the worker starts serving.

    Not in torch. ``torchscope check``'s ``worker-seed-duplicate`` compares
    them between the workers of one iterator: equal digests mean those workers
    draw the same "random" augmentations (a ``worker_init_fn`` that seeds with
    a constant, say). Only digests are recorded, never the states.
    """

    def digest(data: bytes) -> str:
        return hashlib.blake2b(data, digest_size=8).hexdigest()

    _, words, gauss = random.getstate()
    out = {"py_rng": digest(array.array("Q", words).tobytes() + repr(gauss).encode())}
    out["torch_rng"] = digest(torch.random.get_rng_state().numpy().tobytes())
    if HAS_NUMPY:
        import numpy as np

        _, keys, pos, has_gauss, cached = np.random.get_state()
        out["np_rng"] = digest(keys.tobytes() + repr((pos, has_gauss, cached)).encode())
    return out


def _fetch_task(fetcher: Any, idx: int, index: Any, worker_id: int, iterable: bool) -> Any:
    """One task, as a ``data.worker`` span when traced (the fetch nests inside).

    An iterable dataset's ``StopIteration`` is its normal end: the span says
    ``end`` and the exception leaves after it, so it is recorded as no error.
    """
    if _trace.sink is None:
        return fetcher.fetch(index)
    # one name for every worker's tasks, so views merge them; the lane says which worker
    with _trace.span("data.worker", "task", func=_TASK_FUNC, task=idx, worker=worker_id) as sp:
        try:
            return fetcher.fetch(index)
        except StopIteration:
            if not iterable:
                raise  # a map-style dataset's StopIteration is an error like any other
            sp.set(end=True)
    raise StopIteration


_TASK_FUNC = f"{__name__}._worker_loop"


@mirrors("torch.utils.data._utils.worker._worker_loop")
def _worker_loop(
    dataset_kind: int,
    dataset: Any,
    index_queue: Any,
    data_queue: Any,
    done_event: Any,
    auto_collation: bool,
    collate_fn: Any,
    drop_last: bool,
    base_seed: int,
    init_fn: Any,
    worker_id: int,
    num_workers: int,
    persistent_workers: bool,
    shared_seed: int | None,
) -> None:
    """Serves tasks until told to stop. See torch's NOTE [ Data Loader
    Multiprocessing Shutdown Logic ] for why every step is where it is."""
    try:
        # C-level handlers: Python's own would run only after the fatal signal repeats
        signal_handling._set_worker_signal_handlers()
        torch.multiprocessing._set_thread_name("pt_data_worker")
        _trace.set_process_role("worker", worker_id)
        _trace.set_thread_info(f"worker {worker_id}", None)

        torch.set_num_threads(1)
        seed = base_seed + worker_id
        random.seed(seed)
        torch.manual_seed(seed)
        if HAS_NUMPY:
            import numpy as np

            np.random.seed(_generate_state(base_seed, worker_id))

        from torch.utils.data import IterDataPipe
        from torch.utils.data.graph_settings import apply_random_seed

        shared_rng = torch.Generator()
        if isinstance(dataset, IterDataPipe):
            if shared_seed is None:
                raise AssertionError("shared_seed must be provided for IterDataPipe workers")
            shared_rng.manual_seed(shared_seed)
            dataset = apply_random_seed(dataset, shared_rng)

        global _worker_info
        _worker_info = WorkerInfo(id=worker_id, num_workers=num_workers, seed=seed, dataset=dataset)

        from ..dataloader import _DatasetKind

        init_exception = None
        try:
            with _trace.span("data.worker", "init", func=_TASK_FUNC, seed=seed) as span:
                if init_fn is not None:
                    init_fn(worker_id)
                if _trace.sink is not None:  # torchscope: after worker_init_fn, see below
                    span.set(**_rng_fingerprints())
                fetcher = _DatasetKind.create_fetcher(
                    dataset_kind, dataset, auto_collation, collate_fn, drop_last
                )
        except Exception:
            # reported with the first task, where the main process waits for it
            init_exception = ExceptionWrapper(where=f"in DataLoader worker process {worker_id}")

        # An iterable dataset may end in one worker before the others: the worker
        # says so once (_IterableDatasetStopIteration), then only waits for None.
        iteration_end = False
        watchdog = ManagerWatchdog()

        while watchdog.is_alive():
            try:
                r = index_queue.get(timeout=MP_STATUS_CHECK_INTERVAL)
            except queue.Empty:
                continue
            if isinstance(r, _ResumeIteration):
                data_queue.put((r, None))  # acknowledge, then start the new epoch
                iteration_end = False
                if isinstance(dataset, IterDataPipe):  # the new epoch's shared seed
                    if r.seed is None:
                        raise AssertionError("resume iteration seed is None for IterDataPipe")
                    shared_rng.manual_seed(r.seed)
                    dataset = apply_random_seed(dataset, shared_rng)
                fetcher = _DatasetKind.create_fetcher(
                    dataset_kind, dataset, auto_collation, collate_fn, drop_last
                )
                continue
            elif r is None:  # the final signal
                if not done_event.is_set() and not iteration_end:
                    raise AssertionError(
                        "Received final signal but neither done_event nor iteration_end is set"
                    )
                break
            elif done_event.is_set() or iteration_end:
                continue  # shutting down: skip work until the None arrives
            idx, index = r
            data: Any
            if init_exception is not None:
                data = init_exception
                init_exception = None
            else:
                try:
                    iterable = dataset_kind == _DatasetKind.Iterable
                    data = _fetch_task(fetcher, idx, index, worker_id, iterable)
                except Exception as e:
                    if isinstance(e, StopIteration) and dataset_kind == _DatasetKind.Iterable:
                        data = _IterableDatasetStopIteration(worker_id)
                        iteration_end = True
                    else:
                        # ExceptionWrapper keeps the traceback as text: no reference cycle
                        data = ExceptionWrapper(where=f"in DataLoader worker process {worker_id}")
            data_queue.put((idx, data))
            del data, idx, index, r  # free the batch before blocking again
    except KeyboardInterrupt:
        pass  # the main process raises it anyway
    if done_event.is_set():
        data_queue.cancel_join_thread()
        data_queue.close()
