"""``data.*`` spans of torch.utils.data DataLoaders, in the main process and in workers.

Seams, wrapped on torch's classes and module for the run: ``DataLoader.__iter__``
(``data.iter``), ``_BaseDataLoaderIter.__next__`` (``data.next``: ``batch``,
``wait_ns``, ``worker``, ``end``) and ``_next_index`` (``data.sampler``), the
multi-process iterator's ``_get_data`` (what the main process waited) and
``_process_data`` (which worker made the batch), the fetchers' ``fetch``
(``data.fetch``, with the collate function inside it as ``data.collate``), and
``torch.utils.data._utils.worker._worker_loop``, the target torch gives each
worker process (looked up on the module when the iterator starts them).

In a worker (forked: it inherits the wrappers and the recorder, which opens
the worker's own part), the loop wrapper declares the process ``worker k``
(its lane) and the thread ``worker k``, records the ``data.worker`` ``init``
span around ``worker_init_fn`` with reimpl's seed and random-state digests
(``torchscope check``'s ``worker-seed-duplicate`` reads them), and a
``data.worker`` ``task`` span around each fetch, named by the task index read
off the index queue. A spawned worker (``multiprocessing_context="spawn"``)
gets its recorder from ``tracer/recording/subprocesses.py`` and attaches this
seam itself. Same kinds, names and attributes as reimpl's
(``reimpl/utils/data/``). The pin-memory thread is not seen.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from time import perf_counter_ns
from typing import Any

import torch.utils.data._utils.fetch as torch_fetch
import torch.utils.data._utils.worker as torch_worker
import torch.utils.data.dataloader as torch_dataloader

from reimpl import _trace
from reimpl.utils.data._utils.fetch import _index_attrs, _qualified_name
from reimpl.utils.data._utils.worker import _rng_fingerprints
from tracer.targets.torch.attach import Options, Patches

_NEXT_FUNC = "torch.utils.data.dataloader._BaseDataLoaderIter.__next__"
_TASK_FUNC = "torch.utils.data._utils.worker._worker_loop"
_NEXT_INDEX_FUNC = "torch.utils.data.dataloader._BaseDataLoaderIter._next_index"
_waits: dict[int, list] = {}
"""id(iterator) -> [ns waited for workers, worker of the batch] during one ``__next__``."""
_worker: list[Any] = [None, None]
"""In a worker process: [worker id, index of the task being served]."""


def _traced_iter(iter_: Callable) -> Callable:
    @functools.wraps(iter_)
    def wrapper(self: Any) -> Any:
        with _trace.span("data.iter", "__iter__", func=f"{iter_.__module__}.{iter_.__qualname__}",
                         num_workers=self.num_workers, batch_size=self.batch_size):  # fmt: skip
            return iter_(self)

    return wrapper


def _traced_next(next_: Callable) -> Callable:
    @functools.wraps(next_)
    def wrapper(self: Any) -> Any:
        if _trace.sink is None:
            return next_(self)
        key = id(self)
        _waits[key] = wait = [0, None]
        ended = False
        with _trace.span("data.next", "__next__", func=_NEXT_FUNC, batch=self._num_yielded) as sp:
            t0 = perf_counter_ns()
            try:
                data = next_(self)
            except StopIteration:
                ended = True
            finally:
                _waits.pop(key, None)
            # without workers, the main process spent the whole call fetching
            waited = perf_counter_ns() - t0 if self._num_workers == 0 else wait[0]
            sp.set(wait_ns=waited, worker=wait[1], end=ended)
        if ended:
            raise StopIteration
        return data

    return wrapper


def _traced_get_data(get_data: Callable) -> Callable:
    @functools.wraps(get_data)
    def wrapper(self: Any) -> Any:
        wait = _waits.get(id(self))
        if wait is None:
            return get_data(self)
        t0 = perf_counter_ns()
        try:
            return get_data(self)
        finally:
            wait[0] += perf_counter_ns() - t0

    return wrapper


def _traced_process_data(process_data: Callable) -> Callable:
    @functools.wraps(process_data)
    def wrapper(self: Any, data: Any, worker_idx: Any) -> Any:
        wait = _waits.get(id(self))
        if wait is not None:
            wait[1] = worker_idx
        return process_data(self, data, worker_idx)

    return wrapper


def _traced_next_index(next_index: Callable) -> Callable:
    @functools.wraps(next_index)
    def wrapper(self: Any) -> Any:
        if _trace.sink is None:
            return next_index(self)
        name = type(self._index_sampler).__name__
        ended = False
        with _trace.span("data.sampler", name, func=_NEXT_INDEX_FUNC) as sp:
            try:
                index = next_index(self)
                sp.set(**_index_attrs(index))
            except StopIteration:  # the end of an epoch, not an error of the span
                sp.set(end=True)
                ended = True
        if ended:
            raise StopIteration
        return index

    return wrapper


class _Collate:
    """A fetcher's collate function inside a ``data.collate`` span."""

    __slots__ = ("fn", "func", "name")

    def __init__(self, fn: Callable) -> None:
        self.fn = fn
        self.func = _qualified_name(fn)
        self.name = self.func.rpartition(".")[2]

    def __call__(self, data: Any) -> Any:
        if _trace.sink is None:
            return self.fn(data)
        with _trace.span("data.collate", self.name, func=self.func):
            return self.fn(data)


def _traced_fetch(name: str, fetch: Callable) -> Callable:
    func = f"{fetch.__module__}.{fetch.__qualname__}"

    @functools.wraps(fetch)
    def wrapper(self: Any, possibly_batched_index: Any) -> Any:
        if _trace.sink is None:
            return fetch(self, possibly_batched_index)
        if type(self.collate_fn) is not _Collate:  # the fetcher is the iterator's (or worker's)
            self.collate_fn = _Collate(self.collate_fn)
        if name == "map":
            attrs = _index_attrs(possibly_batched_index)
        else:
            attrs = {"size": len(possibly_batched_index) if self.auto_collation else None}
        if _worker[0] is None:
            with _trace.span("data.fetch", name, func=func, **attrs):
                return fetch(self, possibly_batched_index)
        # one name for every worker's tasks, so views merge them; the lane says which worker
        with _trace.span(
            "data.worker", "task", func=_TASK_FUNC, task=_worker[1], worker=_worker[0]
        ):
            with _trace.span("data.fetch", name, func=func, **attrs):
                return fetch(self, possibly_batched_index)

    return wrapper


class _IndexQueue:
    """The worker's index queue, noting the index of each task it hands out."""

    def __init__(self, queue: Any) -> None:
        self._queue = queue

    def get(self, *args: Any, **kwargs: Any) -> Any:
        r = self._queue.get(*args, **kwargs)
        if type(r) is tuple and len(r) == 2:
            _worker[1] = r[0]
        return r

    def __getattr__(self, name: str) -> Any:
        return getattr(self._queue, name)


def _worker_init(init_fn: Callable | None, seed: int) -> Callable[[int], None]:
    def init(worker_id: int) -> None:
        with _trace.span("data.worker", "init", func=_TASK_FUNC, seed=seed) as span:
            if init_fn is not None:
                init_fn(worker_id)
            if _trace.sink is not None:  # the states as the worker starts serving
                span.set(**_rng_fingerprints())

    return init


_LOOP_PARAMS = inspect.signature(torch_worker._worker_loop)


def _worker_loop(*args: Any, **kwargs: Any) -> None:
    """torch's worker loop, in a recorded worker process (module-level: spawn pickles it)."""
    bound = _LOOP_PARAMS.bind(*args, **kwargs)
    a = bound.arguments
    worker_id = a["worker_id"]
    _worker[0] = worker_id
    _trace.set_process_role("worker", worker_id)
    _trace.set_thread_info(f"worker {worker_id}", None)
    detach = None
    from tracer.targets.torch import attach

    if _trace.sink is not None and not attach.attached():  # spawned: nothing inherited
        detach = attach.attach(seams=("data",))
    a["index_queue"] = _IndexQueue(a["index_queue"])
    a["init_fn"] = _worker_init(a["init_fn"], a["base_seed"] + worker_id)
    try:
        _ORIGINAL_LOOP[0](*bound.args, **bound.kwargs)
    finally:
        if detach is not None:
            detach()


_ORIGINAL_LOOP = [torch_worker._worker_loop]


def install(patches: Patches, options: Options) -> None:
    """Wraps the DataLoader's iterator, fetchers and worker loop for the run."""
    patches.wrap(torch_dataloader.DataLoader, "__iter__", _traced_iter)
    base = torch_dataloader._BaseDataLoaderIter
    patches.wrap(base, "__next__", _traced_next)
    patches.wrap(base, "_next_index", _traced_next_index)
    multi = torch_dataloader._MultiProcessingDataLoaderIter
    patches.wrap(multi, "_get_data", _traced_get_data)
    patches.wrap(multi, "_process_data", _traced_process_data)
    patches.wrap(torch_fetch._MapDatasetFetcher, "fetch", functools.partial(_traced_fetch, "map"))
    patches.wrap(
        torch_fetch._IterableDatasetFetcher, "fetch", functools.partial(_traced_fetch, "iterable")
    )
    _ORIGINAL_LOOP[0] = torch_worker._worker_loop
    patches.setattr(torch_worker, "_worker_loop", _worker_loop)
    patches.on_detach(_waits.clear)
