"""The DataLoader over torch's DataPipes, against torch's DataLoader.

torch applies ``shuffle`` to the pipe graph's shufflers, seeds every random
pipe from one shared seed per epoch (drawn from the loader's generator, in the
main process and again in each worker) and shards the graph over the workers.
The same pipe through both loaders, with the same generator seed, must yield
the same elements in the same order from the same workers.
"""

from __future__ import annotations

import functools
from typing import Any

import pytest
from data_parity import LIBS, run_loader
from parity import same_warnings
from torch.utils.data.datapipes.iter import IterableWrapper
from torch.utils.data.datapipes.map import SequenceWrapper

N = 16


def _tag(lib_name: str, i: int) -> tuple[int, int]:
    """An element and the worker of ``lib_name``'s loader that produced it."""
    info = LIBS[lib_name].get_worker_info()
    return i, -1 if info is None else info.id


def shuffled_pipe(lib_name: str, shuffler: bool = True) -> Any:
    """range(N) -> shuffle -> sharding filter -> tag with the worker id."""
    pipe = IterableWrapper(range(N))
    if shuffler:
        pipe = pipe.shuffle()
    return pipe.sharding_filter().map(functools.partial(_tag, lib_name))


def both(make: Any, epochs: int = 2, **kwargs: Any) -> tuple[list, list]:
    """(torch's epochs, reimpl's epochs) of batches of (element, worker) pairs."""
    theirs = run_loader(LIBS["torch"], make("torch"), epochs, **kwargs)
    ours = run_loader(LIBS["reimpl"], make("reimpl"), epochs, **kwargs)
    return theirs, ours


def _elements(epoch: list) -> list[int]:
    """The elements of an epoch's normalized batches: ("list", [elements, workers])."""
    return [i for batch in epoch for i in batch[1][0][-1]]


def _each_worker_in_order(epoch: list) -> bool:
    """Whether every worker's elements came in increasing order (no shuffling)."""
    by_worker: dict[int, list[int]] = {}
    for batch in epoch:
        for i, worker in zip(batch[1][0][-1], batch[1][1][-1]):
            by_worker.setdefault(worker, []).append(i)
    return all(seq == sorted(seq) for seq in by_worker.values())


@pytest.mark.parametrize("workers", [0, pytest.param(2, marks=pytest.mark.multiprocess)])
@pytest.mark.parametrize("shuffle", [True, False, None], ids=["shuffle", "no-shuffle", "unset"])
def test_datapipe_order_matches_torch(shuffle: bool | None, workers: int) -> None:
    theirs, ours = both(shuffled_pipe, batch_size=4, shuffle=shuffle, num_workers=workers)
    assert ours == theirs
    for epoch in ours:  # sharded, not replicated: every element once per epoch
        assert sorted(_elements(epoch)) == list(range(N))
    # shuffle=False switches the shuffler off; unset leaves it on (the pipe's own default)
    assert _each_worker_in_order(ours[0]) == (shuffle is False)
    if shuffle is not False:
        assert _elements(ours[0]) != _elements(ours[1])  # a new shared seed each epoch


@pytest.mark.multiprocess
def test_persistent_workers_reseed_each_epoch_like_torch() -> None:
    """Persistent workers get the new epoch's shared seed with ``_ResumeIteration``."""
    theirs, ours = both(
        shuffled_pipe, epochs=3, batch_size=4, shuffle=True, num_workers=2, persistent_workers=True
    )
    assert ours == theirs
    assert len({tuple(_elements(e)) for e in ours}) == 3


def test_shuffle_on_a_pipe_without_shuffler_warns_and_changes_nothing_like_torch() -> None:
    """torch appends a shuffler to a copy it then drops: a warning, and the order stays."""
    orders = {}

    def load(name: str) -> None:
        loader = LIBS[name].DataLoader(shuffled_pipe(name, shuffler=False), shuffle=True)
        orders[name] = [int(b[0]) for b in loader]

    messages = same_warnings(lambda: load("torch"), lambda: load("reimpl"))
    assert any("does not contain a `Shuffler`" in m for m in messages)
    assert orders["reimpl"] == orders["torch"] == list(range(N))


def test_map_datapipe_is_a_map_style_dataset_like_torch() -> None:
    """A MapDataPipe is wrapped but sampled like any map-style dataset."""
    theirs, ours = both(lambda name: SequenceWrapper(range(N)), batch_size=5, shuffle=True)
    assert ours == theirs
    assert type(LIBS["reimpl"].DataLoader(SequenceWrapper(range(3))).dataset).__name__ == (
        "_MapDataPipeSerializationWrapper"
    )
