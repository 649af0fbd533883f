"""Fetching one batch, mirroring ``torch/utils/data/_utils/fetch.py``.

The same fetchers run in the main process (``num_workers=0``) and in every
worker, so the ``data.fetch`` and ``data.collate`` spans land in whichever
process did the work: the trace shows who read which samples.

Left out: nothing of behaviour.
"""

from __future__ import annotations

from typing import Any, NoReturn

from reimpl import _trace
from reimpl._trace import mirrors

MAX_TRACED_INDICES = 16
"""A batch's indices go into the span's attributes, cut to this many."""


def _index_attrs(possibly_batched_index: Any) -> dict[str, Any]:
    """Small, JSON-friendly attributes naming what a fetch read.

    Only plain ints are kept (a NumPy integer would not serialize); the check
    is one C-level pass, since it runs for every batch of a traced loader.
    """
    if type(possibly_batched_index) is list:
        head = possibly_batched_index[:MAX_TRACED_INDICES]
        if set(map(type, head)) == _INT:
            return {"indices": head, "size": len(possibly_batched_index)}
        return {"size": len(possibly_batched_index)}
    if type(possibly_batched_index) is int:
        return {"index": possibly_batched_index}
    return {}


_INT = {int}


@mirrors("torch.utils.data._utils.fetch._BaseDatasetFetcher")
class _BaseDatasetFetcher:
    """Reads samples for one index (or list of indices) and collates them."""

    def __init__(
        self, dataset: Any, auto_collation: bool, collate_fn: Any, drop_last: bool
    ) -> None:
        self.dataset = dataset
        self.auto_collation = auto_collation
        self.collate_fn = collate_fn
        self.drop_last = drop_last
        # the data.collate span names the collate function itself (the TUI shows its source)
        self._collate_func = _qualified_name(collate_fn)

    def fetch(self, possibly_batched_index: Any) -> NoReturn:
        raise NotImplementedError

    def _collate(self, data: Any) -> Any:
        """Calls the collate function, inside a ``data.collate`` span when traced."""
        if _trace.sink is None:
            return self.collate_fn(data)
        with _trace.span(
            "data.collate", self._collate_func.rpartition(".")[2], func=self._collate_func
        ):
            return self.collate_fn(data)


def _qualified_name(fn: Any) -> str:
    """``module.qualname`` of a function, or of a callable object's class."""
    target = fn if hasattr(fn, "__qualname__") else type(fn)
    return f"{getattr(target, '__module__', '?')}.{getattr(target, '__qualname__', repr(target))}"


@mirrors("torch.utils.data._utils.fetch._IterableDatasetFetcher")
class _IterableDatasetFetcher(_BaseDatasetFetcher):
    """Pulls the next samples from the dataset's iterator (indices are dummies)."""

    def __init__(
        self, dataset: Any, auto_collation: bool, collate_fn: Any, drop_last: bool
    ) -> None:
        super().__init__(dataset, auto_collation, collate_fn, drop_last)
        self.dataset_iter = iter(dataset)
        self.ended = False

    @mirrors("torch.utils.data._utils.fetch._IterableDatasetFetcher.fetch")
    def fetch(self, possibly_batched_index: Any) -> Any:
        if _trace.sink is None:
            return self._fetch(possibly_batched_index)
        size = len(possibly_batched_index) if self.auto_collation else None
        with _trace.span("data.fetch", "iterable", func=_ITER_FUNC, size=size) as sp:
            try:
                return self._fetch(possibly_batched_index)
            except StopIteration:
                sp.set(end=True)  # the dataset's normal end, not an error: raised outside
        raise StopIteration

    def _fetch(self, possibly_batched_index: Any) -> Any:
        if self.ended:
            raise StopIteration
        if self.auto_collation:
            data = []
            for _ in possibly_batched_index:
                try:
                    data.append(next(self.dataset_iter))
                except StopIteration:
                    self.ended = True
                    break
            if len(data) == 0 or (self.drop_last and len(data) < len(possibly_batched_index)):
                raise StopIteration
        else:
            data = next(self.dataset_iter)
        return self._collate(data)


_ITER_FUNC = f"{__name__}._IterableDatasetFetcher.fetch"


@mirrors("torch.utils.data._utils.fetch._MapDatasetFetcher")
class _MapDatasetFetcher(_BaseDatasetFetcher):
    """Indexes the dataset; ``__getitems__`` reads a whole batch at once when offered."""

    @mirrors("torch.utils.data._utils.fetch._MapDatasetFetcher.fetch")
    def fetch(self, possibly_batched_index: Any) -> Any:
        if _trace.sink is None:
            return self._fetch(possibly_batched_index)
        attrs = _index_attrs(possibly_batched_index)
        with _trace.span("data.fetch", "map", func=_MAP_FUNC, **attrs):
            return self._fetch(possibly_batched_index)

    def _fetch(self, possibly_batched_index: Any) -> Any:
        if self.auto_collation:
            if hasattr(self.dataset, "__getitems__") and self.dataset.__getitems__:
                data = self.dataset.__getitems__(possibly_batched_index)
            else:
                data = [self.dataset[idx] for idx in possibly_batched_index]
        else:
            data = self.dataset[possibly_batched_index]
        return self._collate(data)


_MAP_FUNC = f"{__name__}._MapDatasetFetcher.fetch"
