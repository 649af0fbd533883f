"""DistributedSampler against torch's: every rank's share, padding, drop_last, epochs."""

from __future__ import annotations

import pytest
import torch.utils.data as T
from data_parity import same_error
from hypothesis import given, settings
from hypothesis import strategies as st

import reimpl.utils.data as R


def shares(lib, n: int, replicas: int, **kwargs) -> list:
    """Every rank's indices for epochs 0 and 3, and its length."""
    out = []
    for rank in range(replicas):
        sampler = lib.DistributedSampler(range(n), num_replicas=replicas, rank=rank, **kwargs)
        first = list(sampler)
        sampler.set_epoch(3)
        out.append((first, list(sampler), len(sampler), sampler.total_size))
    return out


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 30),
    replicas=st.integers(1, 7),
    shuffle=st.booleans(),
    seed=st.integers(0, 1000),
    drop_last=st.booleans(),
)
def test_shares_match_torch(n, replicas, shuffle, seed, drop_last) -> None:
    if drop_last and n < replicas:
        return  # every rank would get nothing: torch makes a sampler of length 0 too
    kwargs = {"shuffle": shuffle, "seed": seed, "drop_last": drop_last}
    assert shares(R, n, replicas, **kwargs) == shares(T, n, replicas, **kwargs)


def test_padding_repeats_the_head_more_than_once() -> None:
    """2 samples over 5 ranks: total 5, padded by repeating the list (torch's else branch)."""
    ours = shares(R, 2, 5, shuffle=False)
    assert [s[0] for s in ours] == [[0], [1], [0], [1], [0]]
    assert ours == shares(T, 2, 5, shuffle=False)


def test_set_epoch_reshuffles() -> None:
    sampler = R.DistributedSampler(range(20), num_replicas=2, rank=0, seed=1)
    first = list(sampler)
    sampler.set_epoch(1)
    assert list(sampler) != first


@pytest.mark.parametrize("rank", [-1, 2])
def test_invalid_rank_matches_torch(rank: int) -> None:
    theirs, ours = same_error(lambda lib: lib.DistributedSampler(range(4), 2, rank))
    assert theirs is not None
    assert ours == theirs


def test_without_process_group_matches_torch() -> None:
    theirs, ours = same_error(lambda lib: lib.DistributedSampler(range(4)))
    assert ours == theirs
