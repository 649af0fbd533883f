"""RandomSampler without a generator: each epoch seeds a fresh generator from
torch's global RNG, exactly as torch does, so ``torch.manual_seed`` alone makes
shuffling reproducible and the global RNG moves by the same draws on both sides.

(test_sampler.py's stream test covers this path once, among its other flags.)
"""

from __future__ import annotations

import pytest
import torch
import torch.utils.data as T
from hypothesis import given, settings
from hypothesis import strategies as st

import reimpl.utils.data as R


def epochs(lib, n: int, epochs: int, seed: int, **kw) -> tuple[list, torch.Tensor]:
    """The indices of ``epochs`` passes after ``manual_seed(seed)``, and the global
    RNG state after them."""
    torch.manual_seed(seed)
    sampler = lib.RandomSampler(range(n), **kw)
    out = [list(sampler) for _ in range(epochs)]
    return out, torch.get_rng_state()


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(1, 70),
    replacement=st.booleans(),
    num_samples=st.none() | st.integers(1, 80),
    n_epochs=st.integers(1, 3),
    seed=st.integers(0, 2**32),
)
def test_unseeded_stream_and_global_rng_match_torch(n, replacement, num_samples, n_epochs, seed):
    kw = {"replacement": replacement, "num_samples": num_samples}
    ours, our_state = epochs(R, n, n_epochs, seed, **kw)
    theirs, their_state = epochs(T, n, n_epochs, seed, **kw)
    assert ours == theirs
    assert torch.equal(our_state, their_state)  # the same draws from the global RNG


@pytest.mark.parametrize("replacement", [False, True])
def test_each_epoch_reshuffles_and_manual_seed_replays(replacement: bool) -> None:
    first, _ = epochs(R, 20, 3, seed=7, replacement=replacement)
    again, _ = epochs(R, 20, 3, seed=7, replacement=replacement)
    other, _ = epochs(R, 20, 3, seed=8, replacement=replacement)
    assert first == again
    assert first[0] != first[1] != first[2]  # a fresh seed per epoch
    assert first != other
    if not replacement:
        assert all(sorted(e) == list(range(20)) for e in first)


def test_building_and_len_leave_the_global_rng_alone() -> None:
    torch.manual_seed(3)
    before = torch.get_rng_state()
    sampler = R.RandomSampler(range(10), num_samples=25, replacement=True)
    assert len(sampler) == 25
    assert torch.equal(torch.get_rng_state(), before)
    assert len(list(sampler)) == 25


def test_an_own_generator_leaves_the_global_rng_alone() -> None:
    torch.manual_seed(3)
    before = torch.get_rng_state()
    g = torch.Generator().manual_seed(1)
    ours = list(R.RandomSampler(range(10), generator=g))
    assert torch.equal(torch.get_rng_state(), before)
    assert ours == list(T.RandomSampler(range(10), generator=torch.Generator().manual_seed(1)))
