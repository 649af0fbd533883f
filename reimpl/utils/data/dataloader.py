"""The DataLoader and its iterators, mirroring ``torch/utils/data/dataloader.py``.

``DataLoader`` checks its arguments and picks a sampler, a batch sampler and
a collate function; ``iter(loader)`` builds an iterator. With
``num_workers=0`` the main process fetches each batch itself
(``_SingleProcessDataLoaderIter``). Otherwise ``_MultiProcessingDataLoaderIter``
starts one process per worker, each with its own index queue, all sharing
one result queue; it keeps ``prefetch_factor * num_workers`` tasks in flight,
hands tasks out round-robin, and buffers batches that arrive early so they
come out in sampler order (unless ``in_order=False``). Tensors travel back
through shared memory (torch.multiprocessing's queues pickle a tensor as a
handle to its shared storage). Workers' seeds come from one ``base_seed``
drawn from the loader's generator exactly as torch draws it.

Events: ``data.iter`` (making or resetting an iterator, worker start-up
included), ``data.next`` (each ``__next__``: ``batch``, ``wait_ns`` the main
process spent waiting, ``worker`` that produced it), ``data.sampler``
(drawing the indices); ``data.fetch``/``data.collate``/``data.worker`` come
from the fetchers and workers (``_utils``).

Workers start with torch.multiprocessing's default method, ``fork`` on Linux,
like torch. A recorder follows workers into their own lanes, forked ones and
(through ``tracer.recording.subprocesses``) ``spawn`` or ``forkserver`` ones alike.

DataPipes are torch's own classes (reimpl does not rewrite them); the loader
treats them as torch's does: it wraps them for pickling, applies ``shuffle``
to an ``IterDataPipe``'s shufflers, draws one shared seed per epoch from the
loader's generator (before the workers' ``base_seed``, as torch does) and
seeds every random pipe from it, in the main process and in each worker, and
shards the graph over the workers (and distributed ranks).

Left out: torch's profiler ``record_function`` around ``__next__`` (the trace
spans take its place), ``torch._C._log_api_usage_once``, Windows specifics.
Added: torch's own ``IterableDataset`` counts as iterable, so a user's dataset
written against torch works unchanged.
"""

from __future__ import annotations

import multiprocessing as python_multiprocessing
import os
import threading
import warnings
import weakref
from collections.abc import Callable, Iterable
from time import perf_counter_ns
from typing import Any, Generic, NoReturn, TypeVar

import torch
import torch.distributed as dist
import torch.utils.data as _torch_data
import torch.utils.data.graph_settings
from torch.utils.data.datapipes.datapipe import (
    IterDataPipe,
    MapDataPipe,
    _IterDataPipeSerializationWrapper,
    _MapDataPipeSerializationWrapper,
)

from reimpl import _trace
from reimpl._trace import mirrors

from . import _utils
from .dataset import Dataset, IterableDataset
from .sampler import BatchSampler, RandomSampler, Sampler, SequentialSampler

__all__ = ["DataLoader", "default_collate", "default_convert", "get_worker_info"]

_T_co = TypeVar("_T_co", covariant=True)

default_collate = _utils.collate.default_collate
default_convert = _utils.collate.default_convert
get_worker_info = _utils.worker.get_worker_info

_persistent_workers_atexit_lock = threading.Lock()
_persistent_workers_atexit_registered = False
_persistent_workers_atexit: weakref.WeakSet = weakref.WeakSet()

_ITERABLE_TYPES = (IterableDataset, _torch_data.IterableDataset)
"""torch's own IterableDataset counts too: a user's torch dataset works unchanged."""


@mirrors("torch.utils.data.dataloader._DatasetKind")
class _DatasetKind:
    """Map-style or iterable-style; chooses the fetcher."""

    Map = 0
    Iterable = 1

    @staticmethod
    def create_fetcher(
        kind: int, dataset: Any, auto_collation: bool, collate_fn: Any, drop_last: bool
    ) -> Any:
        if kind == _DatasetKind.Map:
            return _utils.fetch._MapDatasetFetcher(dataset, auto_collation, collate_fn, drop_last)
        return _utils.fetch._IterableDatasetFetcher(dataset, auto_collation, collate_fn, drop_last)


@mirrors("torch.utils.data.dataloader._InfiniteConstantSampler")
class _InfiniteConstantSampler(Sampler):
    """``None`` forever: an iterable dataset decides itself when it ends.

    Never the dataset's ``__len__``: with naive workers every replica yields
    the whole stream, and a finite sampler would cut the stream short.
    """

    def __iter__(self) -> Any:
        while True:
            yield None


def _get_distributed_settings() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


@mirrors("torch.utils.data.dataloader._share_dist_seed")
def _share_dist_seed(generator: torch.Generator | None, pg: Any) -> int:
    """One seed for an epoch of DataPipes, the same on every rank (rank 0's)."""
    _shared_seed = torch.empty((), dtype=torch.int64).random_(generator=generator)
    if isinstance(pg, dist.ProcessGroup):
        dist.broadcast(_shared_seed, src=0, group=pg)
    return _shared_seed.item()


@mirrors("torch.utils.data.dataloader.DataLoader")
class DataLoader(Generic[_T_co]):
    """Combines a dataset, a sampler and a collate function into an iterable of batches.

    Arguments and their errors are torch's; see ``torch.utils.data.DataLoader``.
    """

    __initialized = False

    def __init__(
        self,
        dataset: Dataset[_T_co],
        batch_size: int | None = 1,
        shuffle: bool | None = None,
        sampler: Sampler | Iterable | None = None,
        batch_sampler: Sampler[list] | Iterable[list] | None = None,
        num_workers: int = 0,
        collate_fn: Callable[[list], Any] | None = None,
        pin_memory: bool = False,
        drop_last: bool = False,
        timeout: float = 0,
        worker_init_fn: Callable[[int], None] | None = None,
        multiprocessing_context: Any = None,
        generator: torch.Generator | None = None,
        *,
        prefetch_factor: int | None = None,
        persistent_workers: bool = False,
        pin_memory_device: str = "",
        in_order: bool = True,
    ) -> None:
        if num_workers < 0:
            raise ValueError(
                "num_workers option should be non-negative; "
                "use num_workers=0 to disable multiprocessing."
            )
        if timeout < 0:
            raise ValueError("timeout option should be non-negative")
        if num_workers == 0 and prefetch_factor is not None:
            raise ValueError(
                "prefetch_factor option could only be specified in multiprocessing."
                "let num_workers > 0 to enable multiprocessing, "
                "otherwise set prefetch_factor to None."
            )
        elif num_workers > 0 and prefetch_factor is None:
            prefetch_factor = 2
        elif prefetch_factor is not None and prefetch_factor < 0:
            raise ValueError("prefetch_factor option should be non-negative")
        if persistent_workers and num_workers == 0:
            raise ValueError("persistent_workers option needs num_workers > 0")

        self.dataset = dataset
        self.num_workers = num_workers
        self.prefetch_factor = prefetch_factor
        self.pin_memory = pin_memory
        self.pin_memory_device = pin_memory_device
        self.timeout = timeout
        self.worker_init_fn = worker_init_fn
        self.multiprocessing_context = multiprocessing_context
        self.in_order = in_order

        # DataPipes travel to workers inside a wrapper that pickles them torch's way
        if isinstance(self.dataset, IterDataPipe):
            self.dataset = _IterDataPipeSerializationWrapper(self.dataset)
        elif isinstance(self.dataset, MapDataPipe):
            self.dataset = _MapDataPipeSerializationWrapper(self.dataset)

        # Dataset checks come first: a user should learn that iterable datasets
        # take no sampler before spending time on the sampler's own errors.
        if isinstance(dataset, _ITERABLE_TYPES):
            self._dataset_kind = _DatasetKind.Iterable
            if isinstance(dataset, IterDataPipe):
                # switches the graph's shufflers on or off, in place (the wrapper
                # above holds the same graph). A pipe without a shuffler gets one
                # appended that nothing uses, only a warning: as in torch.
                if shuffle is not None:
                    dataset = torch.utils.data.graph_settings.apply_shuffle_settings(
                        dataset, shuffle=shuffle
                    )
            # shuffle=False stays allowed: it used to be the default
            elif shuffle not in {False, None}:
                raise ValueError(
                    "DataLoader with IterableDataset: expected unspecified shuffle option, "
                    f"but got shuffle={shuffle}"
                )
            if sampler is not None:
                raise ValueError(
                    "DataLoader with IterableDataset: expected unspecified sampler option, "
                    f"but got sampler={sampler}"
                )
            elif batch_sampler is not None:
                raise ValueError(
                    "DataLoader with IterableDataset: expected unspecified "
                    f"batch_sampler option, but got batch_sampler={batch_sampler}"
                )
        else:
            shuffle = bool(shuffle)
            self._dataset_kind = _DatasetKind.Map

        if sampler is not None and shuffle:
            raise ValueError("sampler option is mutually exclusive with shuffle")

        if batch_sampler is not None:
            if batch_size != 1 or shuffle or sampler is not None or drop_last:
                raise ValueError(
                    "batch_sampler option is mutually exclusive "
                    "with batch_size, shuffle, sampler, and "
                    "drop_last"
                )
            batch_size = None
            drop_last = False
        elif batch_size is None and drop_last:  # no automatic batching
            raise ValueError(
                "batch_size=None option disables auto-batching "
                "and is mutually exclusive with drop_last"
            )

        if sampler is None:
            if self._dataset_kind == _DatasetKind.Iterable:
                sampler = _InfiniteConstantSampler()
            elif shuffle:
                sampler = RandomSampler(dataset, generator=generator)  # type: ignore[arg-type]
            else:
                sampler = SequentialSampler(dataset)  # type: ignore[arg-type]

        if batch_size is not None and batch_sampler is None:
            batch_sampler = BatchSampler(sampler, batch_size, drop_last)

        self.batch_size = batch_size
        self.drop_last = drop_last
        self.sampler = sampler
        self.batch_sampler = batch_sampler
        self.generator = generator

        if collate_fn is None:
            if self._auto_collation:
                collate_fn = _utils.collate.default_collate
            else:
                collate_fn = _utils.collate.default_convert
        self.collate_fn = collate_fn
        self.persistent_workers = persistent_workers

        self.__initialized = True
        self._IterableDataset_len_called: int | None = None  # see __len__
        self._iterator: _BaseDataLoaderIter | None = None
        self.check_worker_number_rationality()

    def _get_iterator(self) -> _BaseDataLoaderIter:
        if self.num_workers == 0:
            return _SingleProcessDataLoaderIter(self)
        self.check_worker_number_rationality()
        return _MultiProcessingDataLoaderIter(self)

    @property
    def multiprocessing_context(self) -> Any:
        return self.__multiprocessing_context

    @multiprocessing_context.setter
    def multiprocessing_context(self, multiprocessing_context: Any) -> None:
        if multiprocessing_context is not None:
            if self.num_workers > 0:
                if isinstance(multiprocessing_context, str):
                    valid_start_methods = torch.multiprocessing.get_all_start_methods()
                    if multiprocessing_context not in valid_start_methods:
                        raise ValueError(
                            "multiprocessing_context option "
                            f"should specify a valid start method in {valid_start_methods!r}, "
                            f"but got multiprocessing_context={multiprocessing_context!r}"
                        )
                    multiprocessing_context = torch.multiprocessing.get_context(
                        multiprocessing_context
                    )
                if not isinstance(
                    multiprocessing_context, python_multiprocessing.context.BaseContext
                ):
                    raise TypeError(
                        "multiprocessing_context option should be a valid context "
                        "object or a string specifying the start method, but got "
                        f"multiprocessing_context={multiprocessing_context}"
                    )
            else:
                raise ValueError(
                    "multiprocessing_context can only be used with "
                    "multi-process loading (num_workers > 0), but got "
                    f"num_workers={self.num_workers}"
                )
        self.__multiprocessing_context = multiprocessing_context

    def __setattr__(self, attr: str, val: Any) -> None:
        # these shape the iterators; changing them afterwards would go unnoticed
        if self.__initialized and attr in (
            "batch_size",
            "batch_sampler",
            "sampler",
            "drop_last",
            "dataset",
            "persistent_workers",
        ):
            raise ValueError(
                f"{attr} attribute should not be set after {self.__class__.__name__} is initialized"
            )
        super().__setattr__(attr, val)

    @mirrors("torch.utils.data.dataloader.DataLoader.__iter__")
    def __iter__(self) -> _BaseDataLoaderIter:
        """A new iterator per epoch, except persistent workers: one, reset per epoch."""
        with _trace.span(
            "data.iter", "__iter__", num_workers=self.num_workers, batch_size=self.batch_size
        ):
            if self.persistent_workers and self.num_workers > 0:
                if self._iterator is None:
                    self._iterator = self._get_iterator()
                else:
                    self._iterator._reset(self)
                return self._iterator
            return self._get_iterator()

    @property
    def _auto_collation(self) -> bool:
        return self.batch_sampler is not None

    @property
    def _index_sampler(self) -> Any:
        """What the fetchers receive: lists of indices when batching, else single indices."""
        if self._auto_collation:
            return self.batch_sampler
        return self.sampler

    def __len__(self) -> int:
        if self._dataset_kind == _DatasetKind.Iterable:
            # Trust the dataset's length, but remember it: __next__ warns when
            # misconfigured workers yield more than that (duplicated data).
            length = self._IterableDataset_len_called = len(self.dataset)  # type: ignore[arg-type]
            if self.batch_size is not None:
                from math import ceil

                if self.drop_last:
                    length = length // self.batch_size
                else:
                    length = ceil(length / self.batch_size)
            return length
        return len(self._index_sampler)

    def check_worker_number_rationality(self) -> None:
        """Warns when asked for more workers than the CPUs this process may use."""

        def _create_warning_msg(
            num_worker_suggest: int | None, num_worker_created: int, cpuset_checked: bool
        ) -> str:
            if num_worker_suggest is not None:
                suggested_max_worker_msg = (
                    "Our suggested max number of worker in current system is {}{}, which is "
                    "smaller than what this DataLoader is going to create."
                ).format(
                    num_worker_suggest,
                    "" if cpuset_checked else " (`cpuset` is not taken into account)",
                )
            else:
                suggested_max_worker_msg = (
                    "DataLoader is not able to compute a suggested max number of worker in "
                    "current system."
                )
            return (
                f"This DataLoader will create {num_worker_created} worker processes in total. "
                f"{suggested_max_worker_msg} "
                "Please be aware that excessive worker creation might get DataLoader running "
                "slow or even freeze, lower the worker number to avoid potential slowness/freeze "
                "if necessary."
            )

        if not self.num_workers or self.num_workers == 0:
            return
        max_num_worker_suggest = torch._utils.cpu_count()
        cpuset_checked = hasattr(os, "sched_getaffinity")
        if max_num_worker_suggest is None or self.num_workers > max_num_worker_suggest:
            warnings.warn(
                _create_warning_msg(max_num_worker_suggest, self.num_workers, cpuset_checked),
                stacklevel=2,
            )


@mirrors("torch.utils.data.dataloader._BaseDataLoaderIter")
class _BaseDataLoaderIter:
    """What both iterators share: the sampler stream, the base seed, ``__next__``."""

    def __init__(self, loader: DataLoader) -> None:
        self._dataset = loader.dataset
        self._shared_seed: int | None = None  # only DataPipes use it
        self._pg = None
        if isinstance(self._dataset, IterDataPipe):
            if dist.is_available() and dist.is_initialized():
                self._pg = dist.new_group(backend="gloo")
            self._dataset = self._seed_datapipe(loader)
        self._dataset_kind = loader._dataset_kind
        self._IterableDataset_len_called = loader._IterableDataset_len_called
        self._auto_collation = loader._auto_collation
        self._drop_last = loader.drop_last
        self._index_sampler = loader._index_sampler
        self._num_workers = loader.num_workers
        self._world_size, self._rank = _get_distributed_settings()

        if loader.pin_memory and loader.pin_memory_device:
            warnings.warn(
                "pin_memory_device is deprecated, the current accelerator will be used as the "
                f"device,ignore pin_memory_device='{loader.pin_memory_device}'.",
                stacklevel=2,
            )
        if loader.pin_memory and not torch.accelerator.is_available():
            warnings.warn(
                "'pin_memory' argument is set as true but no accelerator is found, "
                "then device pinned memory won't be used.",
                stacklevel=2,
            )
        self._pin_memory = loader.pin_memory and torch.accelerator.is_available()
        acc = torch.accelerator.current_accelerator() if self._pin_memory else None
        self._pin_memory_device = acc.type if acc is not None else None
        if self._pin_memory_device == "mps":  # pinning fails on MPS (pytorch#86060)
            self._pin_memory = False
            warnings.warn(
                "'pin_memory' argument is set as true but not supported on MPS now, "
                "device pinned memory won't be used.",
                stacklevel=2,
            )

        self._timeout = loader.timeout
        self._collate_fn = loader.collate_fn
        self._sampler_iter = iter(self._index_sampler)
        # Drawn here, after iter() but before the first index: the same draw, in
        # the same order, as torch, so workers' seeds match torch's.
        self._base_seed = (
            torch.empty((), dtype=torch.int64).random_(generator=loader.generator).item()
        )
        self._persistent_workers = loader.persistent_workers
        self._num_yielded = 0
        self._wait_ns = 0  # time spent waiting for workers during one __next__ (traced)
        self._last_worker: int | None = None  # who produced the last batch (traced)

    def __iter__(self) -> _BaseDataLoaderIter:
        return self

    def _reset(self, loader: DataLoader, first_iter: bool = False) -> None:
        self._sampler_iter = iter(self._index_sampler)
        self._num_yielded = 0
        self._IterableDataset_len_called = loader._IterableDataset_len_called
        if isinstance(self._dataset, IterDataPipe):  # a new epoch reshuffles
            self._dataset = self._seed_datapipe(loader)

    def _seed_datapipe(self, loader: DataLoader) -> Any:
        """Draws the epoch's shared seed and seeds every random pipe from it.

        Workers get the same seed and seed their copies the same way, so a
        shuffle is one order across workers (and ranks), which sharding splits.
        """
        self._shared_seed = _share_dist_seed(loader.generator, self._pg)
        shared_rng = torch.Generator()
        shared_rng.manual_seed(self._shared_seed)
        return torch.utils.data.graph_settings.apply_random_seed(self._dataset, shared_rng)

    @mirrors("torch.utils.data.dataloader._BaseDataLoaderIter._next_index")
    def _next_index(self) -> Any:
        if _trace.sink is None:
            return next(self._sampler_iter)  # may raise StopIteration
        with _trace.span("data.sampler", type(self._index_sampler).__name__) as sp:
            index = next(self._sampler_iter, _EXHAUSTED)
            if index is _EXHAUSTED:
                sp.set(end=True)
            else:
                sp.set(**_utils.fetch._index_attrs(index))
        if index is _EXHAUSTED:
            raise StopIteration
        return index

    def _next_data(self) -> NoReturn:
        raise NotImplementedError

    @mirrors("torch.utils.data.dataloader._BaseDataLoaderIter.__next__")
    def __next__(self) -> Any:
        data = self._next_data() if _trace.sink is None else self._traced_next_data()
        self._num_yielded += 1
        if (
            self._dataset_kind == _DatasetKind.Iterable
            and self._IterableDataset_len_called is not None
            and self._num_yielded > self._IterableDataset_len_called
        ):
            warn_msg = (
                f"Length of IterableDataset {self._dataset} was reported to be "
                f"{self._IterableDataset_len_called}(when accessing len(dataloader)), but "
                f"{self._num_yielded} samples have been fetched. "
            )
            if self._num_workers > 0:
                warn_msg += (
                    "For multiprocessing data-loading, this could be caused by not properly "
                    "configuring the IterableDataset replica at each worker. Please see "
                    "https://pytorch.org/docs/stable/data.html#torch.utils.data.IterableDataset "
                    "for examples."
                )
            warnings.warn(warn_msg, stacklevel=2)
        return data

    def _traced_next_data(self) -> Any:
        """``_next_data`` inside a ``data.next`` span saying who made the batch and
        how long the main process waited for it."""
        self._wait_ns = 0
        self._last_worker = None
        ended = False
        with _trace.span("data.next", "__next__", func=_NEXT_FUNC, batch=self._num_yielded) as sp:
            t0 = perf_counter_ns()
            try:
                data = self._next_data()
            except StopIteration:
                ended = True
            # without workers, the main process spent the whole call fetching
            wait = perf_counter_ns() - t0 if self._num_workers == 0 else self._wait_ns
            sp.set(wait_ns=wait, worker=self._last_worker, end=ended)
        if ended:
            raise StopIteration
        return data

    def __len__(self) -> int:
        return len(self._index_sampler)

    def __getstate__(self) -> NoReturn:
        raise NotImplementedError("{} cannot be pickled", self.__class__.__name__)


_EXHAUSTED = object()
_NEXT_FUNC = f"{__name__}._BaseDataLoaderIter.__next__"


@mirrors("torch.utils.data.dataloader._SingleProcessDataLoaderIter")
class _SingleProcessDataLoaderIter(_BaseDataLoaderIter):
    """The main process fetches each batch itself."""

    def __init__(self, loader: DataLoader) -> None:
        super().__init__(loader)
        if self._timeout != 0:
            raise AssertionError("_SingleProcessDataLoaderIter requires timeout == 0")
        if self._num_workers != 0:
            raise AssertionError("_SingleProcessDataLoaderIter requires num_workers == 0")
        # DataPipes: only distributed ranks split the graph (no workers here)
        if isinstance(self._dataset, (IterDataPipe, MapDataPipe)):
            torch.utils.data.graph_settings.apply_sharding(
                self._dataset, self._world_size, self._rank
            )
        self._dataset_fetcher = _DatasetKind.create_fetcher(
            self._dataset_kind,
            self._dataset,
            self._auto_collation,
            self._collate_fn,
            self._drop_last,
        )

    @mirrors("torch.utils.data.dataloader._SingleProcessDataLoaderIter._next_data")
    def _next_data(self) -> Any:
        index = self._next_index()  # may raise StopIteration
        data = self._dataset_fetcher.fetch(index)  # may raise StopIteration
        if self._pin_memory:
            data = _utils.pin_memory.pin_memory(data, self._pin_memory_device)
        return data


from ._multiprocessing_iter import _MultiProcessingDataLoaderIter  # noqa: E402
