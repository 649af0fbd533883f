"""Samplers against torch's: the same index streams for the same generator, same errors."""

from __future__ import annotations

import pytest
import torch
import torch.utils.data as T
from data_parity import same_error
from hypothesis import given, settings
from hypothesis import strategies as st

import reimpl.utils.data as R


def streams(make, epochs: int = 2, seed: int = 0) -> tuple[list, list]:
    """``make(lib, generator)`` for both libraries; the indices of ``epochs`` passes."""
    out = []
    for lib in (T, R):
        torch.manual_seed(seed)  # for samplers that fall back on the global RNG
        sampler = make(lib, torch.Generator().manual_seed(seed))
        out.append([list(sampler) for _ in range(epochs)] + [len(sampler)])
    return out[0], out[1]


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 40),
    replacement=st.booleans(),
    num_samples=st.none() | st.integers(1, 100),
    own_generator=st.booleans(),
    seed=st.integers(0, 2**32),
)
def test_random_sampler_stream(n, replacement, num_samples, own_generator, seed) -> None:
    def make(lib, gen):
        return lib.RandomSampler(
            range(n), replacement, num_samples, generator=gen if own_generator else None
        )

    theirs, ours = streams(make, seed=seed)
    assert ours == theirs


@settings(max_examples=25, deadline=None)
@given(indices=st.lists(st.integers(0, 99), max_size=20), seed=st.integers(0, 2**32))
def test_subset_random_sampler_stream(indices, seed) -> None:
    theirs, ours = streams(lambda lib, g: lib.SubsetRandomSampler(indices, g), seed=seed)
    assert ours == theirs


@settings(max_examples=25, deadline=None)
@given(
    weights=st.lists(st.floats(0.1, 5.0), min_size=1, max_size=12),
    num_samples=st.integers(1, 30),
    replacement=st.booleans(),
    seed=st.integers(0, 2**32),
)
def test_weighted_random_sampler_stream(weights, num_samples, replacement, seed) -> None:
    if not replacement:
        num_samples = min(num_samples, len(weights))

    def make(lib, gen):
        return lib.WeightedRandomSampler(weights, num_samples, replacement, gen)

    theirs, ours = streams(make, seed=seed)
    assert ours == theirs


@pytest.mark.parametrize("drop_last", [False, True])
@pytest.mark.parametrize("batch_size", [1, 3, 5, 11])
def test_batch_sampler_stream(batch_size: int, drop_last: bool) -> None:
    def make(lib, gen):
        return lib.BatchSampler(lib.RandomSampler(range(10), generator=gen), batch_size, drop_last)

    theirs, ours = streams(make)
    assert ours == theirs


def test_sequential_sampler_follows_the_length() -> None:
    data = [1, 2, 3]
    sampler = R.SequentialSampler(data)
    assert list(sampler) == [0, 1, 2]
    data.append(4)
    assert list(sampler) == [0, 1, 2, 3] and len(sampler) == 4


def test_base_sampler_has_no_length() -> None:
    with pytest.raises(TypeError):
        len(R.Sampler())
    with pytest.raises(NotImplementedError):
        iter(R.Sampler())


ERRORS = {
    "random_replacement": lambda lib: lib.RandomSampler(range(3), replacement=1),
    "random_num_samples": lambda lib: lib.RandomSampler(range(3), num_samples=0),
    "random_empty": lambda lib: lib.RandomSampler([]),
    "weighted_num_samples": lambda lib: lib.WeightedRandomSampler([1.0], num_samples=True),
    "weighted_replacement": lambda lib: lib.WeightedRandomSampler([1.0], 1, replacement=0),
    "weighted_shape": lambda lib: lib.WeightedRandomSampler([[1.0, 2.0]], 1),
    "weighted_too_many": lambda lib: list(lib.WeightedRandomSampler([1.0], 2, False)),
    "batch_size": lambda lib: lib.BatchSampler(range(3), 0, False),
    "batch_size_bool": lambda lib: lib.BatchSampler(range(3), True, False),
    "drop_last": lambda lib: lib.BatchSampler(range(3), 2, None),
}


@pytest.mark.parametrize("case", ERRORS)
def test_errors_match_torch(case: str) -> None:
    theirs, ours = same_error(ERRORS[case])
    assert theirs is not None
    assert ours == theirs
