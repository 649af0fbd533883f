"""Datasets against torch's: indexing, combining, splitting, and their errors."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.utils.data as T
from data_parity import normalize, same_error
from parity import same_warnings

import reimpl.utils.data as R


class _Batched(R.Dataset):
    """A dataset that reads whole batches (``__getitems__``), counting the calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __len__(self) -> int:
        return 5

    def __getitem__(self, i: int) -> int:
        return i * 10

    def __getitems__(self, indices: list) -> list:
        self.calls += 1
        return [i * 10 for i in indices]


class _Stream(R.IterableDataset):
    def __init__(self, items: list) -> None:
        self.items = items

    def __iter__(self):
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


def test_tensor_dataset() -> None:
    ds = R.TensorDataset(torch.arange(6).view(3, 2), torch.tensor([7, 8, 9]))
    assert len(ds) == 3
    assert normalize(ds[1]) == normalize(T.TensorDataset(*ds.tensors)[1])
    assert same_error(lambda lib: lib.TensorDataset(torch.zeros(2), torch.zeros(3)))[1] == (
        "AssertionError",
        "Size mismatch between tensors",
    )


def test_stack_dataset_tuple_and_dict() -> None:
    a, b = _Batched(), list("abcde")
    ds = R.StackDataset(a, b)
    assert ds[2] == (20, "c") and len(ds) == 5
    assert ds.__getitems__([0, 4]) == [(0, "a"), (40, "e")] and a.calls == 1
    named = R.StackDataset(num=a, char=b)
    assert named[1] == {"num": 10, "char": "b"}
    assert named.__getitems__([3]) == [{"num": 30, "char": "d"}]
    assert named.__getitems__([3]) == T.StackDataset(num=a, char=b).__getitems__([3])


@pytest.mark.parametrize(
    "args, kwargs",
    [((), {}), (([1], [1, 2]), {}), ((), {"a": [1], "b": [1, 2]}), (([1],), {"a": [1]})],
    ids=["none", "tuple_sizes", "dict_sizes", "both"],
)
def test_stack_dataset_errors_match_torch(args, kwargs) -> None:
    theirs, ours = same_error(lambda lib: lib.StackDataset(*args, **kwargs))
    assert theirs is not None and ours == theirs


def test_concat_dataset() -> None:
    ds = R.ConcatDataset([[0, 1, 2], [3, 4]]) + R.TensorDataset(torch.tensor([5]))
    assert len(ds) == 6
    assert [ds[i] for i in range(5)] == [0, 1, 2, 3, 4] and ds[5][0].item() == 5
    assert ds[-1][0].item() == 5 and ds.cumulative_sizes == [5, 6]
    for make in (
        lambda lib: lib.ConcatDataset([]),
        lambda lib: lib.ConcatDataset([[1], [2]])[-3],
    ):
        theirs, ours = same_error(make)
        assert theirs is not None and ours == theirs
    with pytest.raises(AssertionError, match="does not support IterableDataset"):
        R.ConcatDataset([_Stream([1])])


def test_concat_dataset_old_alias_warns_like_torch() -> None:
    sizes = {}

    def read(lib) -> None:
        sizes[lib.__name__] = lib.ConcatDataset([[0, 1, 2], [3, 4]]).cummulative_sizes

    messages = same_warnings(lambda: read(T), lambda: read(R))
    assert messages == ["`cummulative_sizes` attribute is renamed to `cumulative_sizes`"]
    assert sizes[R.__name__] == sizes[T.__name__] == [3, 5]


def test_chain_dataset() -> None:
    chained = _Stream([1, 2]) + _Stream([3])
    assert isinstance(chained, R.ChainDataset)
    assert list(chained) == [1, 2, 3] and len(chained) == 3
    with pytest.raises(AssertionError, match="only supports IterableDataset"):
        list(R.ChainDataset([[1]]))


def test_subset() -> None:
    base = _Batched()
    sub = R.Subset(base, [4, 0])
    assert len(sub) == 2 and sub[0] == 40
    assert sub.__getitems__([1, 0]) == [0, 40] and base.calls == 1
    assert R.Subset([5, 6, 7], [2]).__getitems__([0]) == [7]

    theirs, ours = same_error(
        lambda lib: type("OnlyGetitem", (lib.Subset,), {"__getitem__": lambda s, i: 0})([1], [0])
    )
    assert theirs is not None and ours == theirs


@pytest.mark.parametrize(
    "lengths", [[3, 7], [0.3, 0.3, 0.4], [0.5, 0.5], [1.0], [0.34, 0.33, 0.33], [0.1] * 10]
)
@pytest.mark.parametrize("n", [10, 11])
def test_random_split_matches_torch(lengths, n: int) -> None:
    if all(isinstance(x, int) for x in lengths) and sum(lengths) != n:
        lengths = [3, n - 3]
    got = []
    for lib in (T, R):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            parts = lib.random_split(range(n), lengths, torch.Generator().manual_seed(42))
        got.append(([list(p.indices) for p in parts], [str(w.message) for w in caught]))
    assert got[1] == got[0]


def test_random_split_warns_on_empty_split_and_refuses_bad_lengths() -> None:
    with pytest.warns(UserWarning, match="Length of split at index 1 is 0"):
        R.random_split(range(2), [0.9, 0.1])
    for lengths in ([2, 2], [1.2, -0.2]):
        theirs, ours = same_error(lambda lib, lengths=lengths: lib.random_split(range(3), lengths))
        assert theirs is not None and ours == theirs


def test_random_split_uses_the_default_generator() -> None:
    torch.manual_seed(5)
    ours = [list(p.indices) for p in R.random_split(range(6), [2, 4])]
    torch.manual_seed(5)
    assert ours == [list(p.indices) for p in T.random_split(range(6), [2, 4])]


def test_base_dataset() -> None:
    with pytest.raises(NotImplementedError, match="should implement __getitem__"):
        R.Dataset()[0]
