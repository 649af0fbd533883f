"""Fetchers: batched reads, the end of an iterable dataset, and their spans."""

from __future__ import annotations

import pytest

import tracer
from reimpl import _trace
from reimpl.utils.data._utils import fetch
from reimpl.utils.data._utils.collate import default_collate


class _Counting:
    def __init__(self) -> None:
        self.batched = 0

    def __getitem__(self, i: int) -> int:
        return i

    def __getitems__(self, indices: list) -> list:
        self.batched += 1
        return list(indices)


@pytest.fixture(autouse=True)
def _detached():
    yield
    _trace.detach()


def test_map_fetcher_prefers_getitems() -> None:
    ds = _Counting()
    fetcher = fetch._MapDatasetFetcher(ds, True, list, False)
    assert fetcher.fetch([3, 1]) == [3, 1] and ds.batched == 1
    single = fetch._MapDatasetFetcher(ds, False, lambda x: x * 2, False)
    assert single.fetch(4) == 8 and ds.batched == 1


def test_iterable_fetcher_ends_and_drops_last() -> None:
    fetcher = fetch._IterableDatasetFetcher(range(5), True, list, drop_last=False)
    assert [fetcher.fetch([None] * 2) for _ in range(3)] == [[0, 1], [2, 3], [4]]
    with pytest.raises(StopIteration):
        fetcher.fetch([None] * 2)
    dropping = fetch._IterableDatasetFetcher(range(5), True, list, drop_last=True)
    assert [dropping.fetch([None] * 2) for _ in range(2)] == [[0, 1], [2, 3]]
    with pytest.raises(StopIteration):
        dropping.fetch([None] * 2)


def test_fetch_spans_cap_the_indices(tmp_path) -> None:
    path = str(tmp_path / "t.tsdb")
    fetcher = fetch._MapDatasetFetcher(list(range(100)), True, default_collate, False)
    with tracer.record(path):
        fetcher.fetch(list(range(40)))
        fetch._MapDatasetFetcher(list(range(3)), False, lambda x: x, False).fetch(2)
    t = tracer.load(path)
    kinds = [t.kind_of(r) for r in range(t.n)]
    rows = [r for r, k in enumerate(kinds) if k == "data.fetch"]
    assert t.attrs(rows[0]) == {"indices": list(range(16)), "size": 40}
    assert t.attrs(rows[1]) == {"index": 2}
    collates = [r for r, k in enumerate(kinds) if k == "data.collate"]
    assert t.name_of(collates[0]) == "default_collate"
    assert all(int(t.parent[r]) in rows for r in collates)
