"""The multi-process iterator: the second half of ``torch/utils/data/dataloader.py``.

Kept apart from ``dataloader.py`` only for length; the class, its methods
and its attributes are torch's ``_MultiProcessingDataLoaderIter``.

How it works, as in torch::

    sampler ──indices──▶ index_queue[k] ──▶ worker k ──(task, batch)──┐
                          (round-robin)                              ▼
    __next__ ◀── reorder buffer (_task_info) ◀── [pin thread] ◀── result queue

* ``_send_idx`` counts tasks sent, ``_rcvd_idx`` the next task to return;
  ``_task_info[i]`` is ``(worker,)`` while task ``i`` is in flight and
  ``(worker, data)`` once it arrived early. At most ``prefetch_factor *
  num_workers`` tasks are outstanding; each returned batch sends one more.
* A worker that ends its iterable dataset answers
  ``_IterableDatasetStopIteration`` and gets no more tasks.
* Waiting on the result queue times out every ``MP_STATUS_CHECK_INTERVAL``
  to check that the workers live; the SIGCHLD handler notices deaths sooner.
* Shutdown: set the done event, send every worker ``None``, join them, close
  the queues; whatever still lives after that is terminated.

Two small departures from torch, both about dying well:

* The queues of a live iterator are also held by a module-level registry
  until it shuts down. An iterator dropped inside a reference cycle (an
  exception's traceback holds it) is collected *after* its queues' own
  finalizers have stopped their feeder threads, so in torch the workers never
  hear ``None`` and are terminated after a 5 s join; here they exit at once.
* When reading the result queue fails with a broken connection, the iterator
  gives the workers a moment to be reported dead before checking them: a
  worker killed mid-send resets the connection a little before the OS marks
  it exited, and torch then raises ``ConnectionResetError`` instead of its
  clear "DataLoader worker ... exited unexpectedly".

DataPipes: each worker seeds its copy of the graph from the epoch's shared
seed (``_worker_loop``), then ``_sharding_worker_init_fn`` gives it its shard
(one of ``num_workers * world_size``) before the user's ``worker_init_fn``.

Left out: the "Too many open files" diagnosis torch adds when a queue read
fails with EMFILE.
"""

from __future__ import annotations

import functools
import itertools
import multiprocessing.connection
import queue
import threading
import warnings
from time import perf_counter_ns
from typing import Any

import torch
import torch.utils.data.graph_settings
from torch._utils import ExceptionWrapper
from torch.utils.data.datapipes.datapipe import IterDataPipe, MapDataPipe

from reimpl._trace import mirrors

from . import _utils
from . import dataloader as _dl
from .dataloader import _BaseDataLoaderIter, _DatasetKind

_queues_in_use: dict[int, list[Any]] = {}
"""id(iterator) -> its queues, kept reachable until the iterator shuts down."""

DYING_WORKER_GRACE = 1.0
"""Seconds a broken connection waits for a worker to be reported dead."""


@mirrors("torch.utils.data.dataloader._sharding_worker_init_fn")
def _sharding_worker_init_fn(
    worker_init_fn: Any, world_size: int, rank_id: int, worker_id: int
) -> None:
    """Gives a worker's DataPipe graph its shard, then runs the user's init function.

    Ranks are sharded first, then workers within a rank, so that the data is
    spread evenly over every worker of every process.
    """
    global_worker_id = worker_id
    info = _utils.worker.get_worker_info()
    if info is None:
        raise AssertionError("Worker info is None in sharding worker init function")
    total_workers = info.num_workers
    datapipe = info.dataset
    if not isinstance(datapipe, (IterDataPipe, MapDataPipe)):
        raise AssertionError("datapipe must be an instance of IterDataPipe or MapDataPipe")
    total_workers *= world_size
    global_worker_id = global_worker_id * world_size + rank_id
    torch.utils.data.graph_settings.apply_sharding(datapipe, total_workers, global_worker_id)
    if worker_init_fn is not None:
        worker_init_fn(worker_id)


@mirrors("torch.utils.data.dataloader._MultiProcessingDataLoaderIter")
class _MultiProcessingDataLoaderIter(_BaseDataLoaderIter):
    """Iterates once over the dataset with worker processes (or once per epoch, persistent)."""

    def __init__(self, loader: Any) -> None:
        super().__init__(loader)
        self._prefetch_factor = loader.prefetch_factor
        self._in_order = loader.in_order
        if self._num_workers <= 0:
            raise AssertionError(
                "num_workers must be greater than 0 for MultiProcessingDataLoaderIter"
            )
        if self._prefetch_factor <= 0:
            raise AssertionError(
                "prefetch_factor must be greater than 0 for MultiProcessingDataLoaderIter"
            )
        if loader.multiprocessing_context is None:
            multiprocessing_context = torch.multiprocessing  # fork on Linux
        else:
            multiprocessing_context = loader.multiprocessing_context

        self._worker_init_fn = loader.worker_init_fn
        # DataPipes: shard each worker's graph (across ranks too) before the user's init
        if isinstance(self._dataset, (IterDataPipe, MapDataPipe)):
            self._worker_init_fn = functools.partial(
                _sharding_worker_init_fn, self._worker_init_fn, self._world_size, self._rank
            )
        self._worker_result_queue = multiprocessing_context.Queue()
        self._worker_pids_set = False
        self._shutdown = False
        self._workers_done_event = multiprocessing_context.Event()

        self._index_queues: list[Any] = []
        self._workers: list[Any] = []
        for i in range(self._num_workers):
            index_queue = multiprocessing_context.Queue()
            # no flush of unsent indices at exit: a dead worker would block it
            index_queue.cancel_join_thread()
            w = multiprocessing_context.Process(
                target=_utils.worker._worker_loop,
                args=(
                    self._dataset_kind,
                    self._dataset,
                    index_queue,
                    self._worker_result_queue,
                    self._workers_done_event,
                    self._auto_collation,
                    self._collate_fn,
                    self._drop_last,
                    self._base_seed,
                    self._worker_init_fn,
                    i,
                    self._num_workers,
                    self._persistent_workers,
                    self._shared_seed,
                ),
            )
            w.daemon = True  # never outlive the main process
            from pickle import PicklingError

            try:
                w.start()
            except (TypeError, AttributeError, PicklingError):
                warnings.warn(
                    "Got pickle error when attempting to start a worker Process. "
                    "This might be because the worker Process arguments are not picklable. "
                    "Python 3.14+ changed the multiprocessing start method in non-Mac POSIX "
                    "platforms to 'forkserver', which requires the worker Process arguments to be "
                    "picklable. You can also try multiprocessing.set_start_method('fork').",
                    stacklevel=2,
                )
                raise
            self._index_queues.append(index_queue)
            self._workers.append(w)

        if self._pin_memory:
            self._pin_memory_thread_done_event = threading.Event()
            self._data_queue: Any = queue.Queue()
            current_device_id = torch.accelerator.current_device_index()
            pin_memory_thread = threading.Thread(
                target=_utils.pin_memory._pin_memory_loop,
                args=(
                    self._worker_result_queue,
                    self._data_queue,
                    current_device_id,
                    self._pin_memory_thread_done_event,
                    self._pin_memory_device,
                ),
            )
            pin_memory_thread.daemon = True
            pin_memory_thread.start()
            self._pin_memory_thread = pin_memory_thread
        else:
            self._data_queue = self._worker_result_queue

        if self._persistent_workers and self._pin_memory:
            self._register_persistent_workers_atexit()

        _queues_in_use[id(self)] = [self._worker_result_queue, *self._index_queues]
        _utils.signal_handling._set_worker_pids(id(self), tuple(w.pid for w in self._workers))
        _utils.signal_handling._set_SIGCHLD_handler()
        self._worker_pids_set = True
        self._reset(loader, first_iter=True)

    @mirrors("torch.utils.data.dataloader._MultiProcessingDataLoaderIter._reset")
    def _reset(self, loader: Any, first_iter: bool = False) -> None:
        super()._reset(loader, first_iter)
        self._send_idx = 0  # index of the next task to send
        self._rcvd_idx = 0  # index of the next task to return from __next__
        self._task_info: dict[int, tuple] = {}
        self._tasks_outstanding = 0  # tasks whose data has not arrived
        self._workers_status = [True for _ in range(self._num_workers)]
        self._workers_num_tasks = [0 for _ in range(self._num_workers)]
        self._worker_queue_idx_cycle = itertools.cycle(range(self._num_workers))
        if not first_iter:
            # persistent workers: tell each to start over and wait for every ack
            for idx in range(self._num_workers):
                self._index_queues[idx].put(_utils.worker._ResumeIteration(self._shared_seed))
            resume_iteration_cnt = self._num_workers
            while resume_iteration_cnt > 0:
                return_idx, return_data = self._get_data()
                if isinstance(return_idx, _utils.worker._ResumeIteration):
                    if return_data is not None:
                        raise AssertionError(
                            "Expected return_data to be None when resuming iteration"
                        )
                    resume_iteration_cnt -= 1
        for _ in range(self._prefetch_factor * self._num_workers):
            self._try_put_index()  # prime the pipeline

    @mirrors("torch.utils.data.dataloader._MultiProcessingDataLoaderIter._try_get_data")
    def _try_get_data(self, timeout: float = _utils.MP_STATUS_CHECK_INTERVAL) -> tuple[bool, Any]:
        """One read of the data queue; on a timeout or error, check the workers live."""
        try:
            data = self._data_queue.get(timeout=timeout)
            return (True, data)
        except Exception as e:
            # A dead worker may be why nothing came (a SIGCHLD error lands here too)
            if not isinstance(e, queue.Empty):
                self._wait_for_a_dying_worker()
            failed_workers = []
            for worker_id, w in enumerate(self._workers):
                if self._workers_status[worker_id] and not w.is_alive():
                    failed_workers.append(w)
                    self._mark_worker_as_unavailable(worker_id)
            if len(failed_workers) > 0:
                pids_str = ", ".join(str(w.pid) for w in failed_workers)
                raise RuntimeError(
                    f"DataLoader worker (pid(s) {pids_str}) exited unexpectedly"
                ) from e
            if isinstance(e, queue.Empty):
                return (False, None)
            raise

    def _wait_for_a_dying_worker(self) -> None:
        """Blocks until some active worker has exited, at most ``DYING_WORKER_GRACE`` s.

        A killed worker's sentinel pipe closes while the kernel is still tearing
        the process down, before ``waitpid`` can see it exit; so a worker whose
        sentinel fired is joined (reaped) too, or ``is_alive()`` would still say yes.
        """
        active = {w.sentinel: w for i, w in enumerate(self._workers) if self._workers_status[i]}
        if not active:
            return
        for sentinel in multiprocessing.connection.wait(list(active), timeout=DYING_WORKER_GRACE):
            active[sentinel].join(DYING_WORKER_GRACE)

    @mirrors("torch.utils.data.dataloader._MultiProcessingDataLoaderIter._get_data")
    def _get_data(self) -> Any:
        """Blocks for the next item from the workers, under the loader's timeout."""
        t0 = perf_counter_ns()
        try:
            if self._timeout > 0:
                success, data = self._try_get_data(self._timeout)
                if success:
                    return data
                raise RuntimeError(f"DataLoader timed out after {self._timeout} seconds")
            elif self._pin_memory:
                while self._pin_memory_thread.is_alive():
                    success, data = self._try_get_data()
                    if success:
                        return data
                raise RuntimeError("Pin memory thread exited unexpectedly")
            else:
                while True:
                    success, data = self._try_get_data()
                    if success:
                        return data
        finally:
            self._wait_ns += perf_counter_ns() - t0

    @mirrors("torch.utils.data.dataloader._MultiProcessingDataLoaderIter._next_data")
    def _next_data(self) -> Any:
        while True:
            # Skip tasks whose worker ended (an iterable dataset ran out) unless
            # their data already arrived.
            while self._rcvd_idx < self._send_idx:
                info = self._task_info.get(self._rcvd_idx, None)
                if info:
                    worker_id = info[0]
                    if len(info) == 2 or self._workers_status[worker_id]:
                        break
                    del self._task_info[self._rcvd_idx]
                self._rcvd_idx += 1
            else:
                # nothing in flight and nothing to send: the epoch is over
                if not self._persistent_workers:
                    self._shutdown_workers()
                raise StopIteration

            if len(self._task_info[self._rcvd_idx]) == 2:  # it arrived early
                worker_id, data = self._task_info.pop(self._rcvd_idx)
                self._rcvd_idx += 1
                return self._process_data(data, worker_id)

            if self._shutdown or self._tasks_outstanding <= 0:
                raise AssertionError(
                    "Invalid iterator state: shutdown or no outstanding tasks "
                    "when fetching next data"
                )
            idx, data = self._get_data()
            self._tasks_outstanding -= 1
            if self._dataset_kind == _DatasetKind.Iterable and isinstance(
                data, _utils.worker._IterableDatasetStopIteration
            ):
                if self._persistent_workers:
                    self._workers_status[data.worker_id] = False
                else:
                    self._mark_worker_as_unavailable(data.worker_id)
                self._try_put_index()
                continue

            if idx != self._rcvd_idx:
                if not self._in_order:  # hand it out now, order be damned
                    worker_id = self._task_info.pop(idx)[0]
                    return self._process_data(data, worker_id)
                self._task_info[idx] += (data,)  # keep it until its turn
            else:
                worker_id = self._task_info.pop(idx)[0]
                self._rcvd_idx += 1
                return self._process_data(data, worker_id)

    @mirrors("torch.utils.data.dataloader._MultiProcessingDataLoaderIter._try_put_index")
    def _try_put_index(self) -> None:
        """Sends the next indices to the next active worker in turn."""
        max_tasks = self._prefetch_factor * self._num_workers
        if self._tasks_outstanding >= max_tasks:
            raise AssertionError("Number of outstanding tasks exceeded maximum allowed tasks")
        try:
            index = self._next_index()
        except StopIteration:
            return
        for _ in range(self._num_workers):  # find the next active worker, if any
            worker_queue_idx = next(self._worker_queue_idx_cycle)
            if self._workers_status[worker_queue_idx]:
                # out of order, no worker may hold more than its share of the tasks
                share = max_tasks // sum(self._workers_status)
                if self._in_order or self._workers_num_tasks[worker_queue_idx] < share:
                    break
        else:
            return  # every worker has ended

        self._index_queues[worker_queue_idx].put((self._send_idx, index))
        self._task_info[self._send_idx] = (worker_queue_idx,)
        self._workers_num_tasks[worker_queue_idx] += 1
        self._tasks_outstanding += 1
        self._send_idx += 1

    @mirrors("torch.utils.data.dataloader._MultiProcessingDataLoaderIter._process_data")
    def _process_data(self, data: Any, worker_idx: int) -> Any:
        self._workers_num_tasks[worker_idx] -= 1
        self._last_worker = worker_idx
        self._try_put_index()
        if isinstance(data, ExceptionWrapper):
            data.reraise()  # a worker's error, re-raised here with its traceback text
        return data

    @mirrors(
        "torch.utils.data.dataloader._MultiProcessingDataLoaderIter._mark_worker_as_unavailable"
    )
    def _mark_worker_as_unavailable(self, worker_id: int, shutdown: bool = False) -> None:
        """Stops sending a worker tasks and tells it to exit (it may already be dead)."""
        if not self._workers_status[worker_id] and not self._persistent_workers and not shutdown:
            raise AssertionError("Worker status inconsistent when marking worker as unavailable")
        q = self._index_queues[worker_id]
        q.put(None)  # a dead worker never reads it; cancel_join_thread makes that safe
        self._workers_status[worker_id] = False
        if self._workers_done_event.is_set() != shutdown:
            raise AssertionError("_workers_done_event state does not match shutdown flag")

    @mirrors("torch.utils.data.dataloader._MultiProcessingDataLoaderIter._shutdown_workers")
    def _shutdown_workers(self) -> None:
        """Ends every worker and the pin thread; safe to call twice, and from ``__del__``."""
        if _utils is None or _utils.python_exit_status is True or _utils.python_exit_status is None:
            return  # the interpreter is going away: daemonic workers die with it
        if not self._shutdown:
            self._shutdown = True
            try:
                if hasattr(self, "_pin_memory_thread"):
                    self._pin_memory_thread_done_event.set()
                    self._worker_result_queue.put((None, None))  # wake the thread
                    self._pin_memory_thread.join()
                    self._worker_result_queue.cancel_join_thread()
                    self._worker_result_queue.close()
                # the event first: workers then skip any task still queued
                self._workers_done_event.set()
                for worker_id in range(len(self._workers)):
                    if self._persistent_workers or self._workers_status[worker_id]:
                        self._mark_worker_as_unavailable(worker_id, shutdown=True)
                for w in self._workers:
                    w.join(timeout=_utils.MP_STATUS_CHECK_INTERVAL)
                for q in self._index_queues:
                    q.cancel_join_thread()
                    q.close()
            finally:
                _queues_in_use.pop(id(self), None)
                if self._worker_pids_set:
                    _utils.signal_handling._remove_worker_pids(id(self))
                    self._worker_pids_set = False
                for w in self._workers:
                    if w.is_alive():  # stuck: no graceful way left
                        w.terminate()
                        w.join(timeout=_utils.MP_STATUS_CHECK_INTERVAL)

    @staticmethod
    def _clean_up_persistent_workers_atexit() -> None:
        with _dl._persistent_workers_atexit_lock:
            iterators = tuple(_dl._persistent_workers_atexit)
        for iterator in iterators:
            iterator._shutdown_workers()

    def _register_persistent_workers_atexit(self) -> None:
        """Persistent workers with a pin thread must stop before the interpreter does."""
        import atexit

        with _dl._persistent_workers_atexit_lock:
            _dl._persistent_workers_atexit.add(self)
            if _dl._persistent_workers_atexit_registered:
                return
            atexit.register(_MultiProcessingDataLoaderIter._clean_up_persistent_workers_atexit)
            _dl._persistent_workers_atexit_registered = True

    def __del__(self) -> None:
        self._shutdown_workers()
