"""DataLoader against torch's: batches, order, worker seeds, errors; and its trace."""

from __future__ import annotations

import multiprocessing
import re
import warnings

import pytest
import torch
from data_parity import (
    LIBS,
    iterable_dataset_class,
    map_dataset_class,
    run_twins,
    same_error,
)
from hypothesis import given, settings
from hypothesis import strategies as st

import reimpl.utils.data as R
import tracer
from reimpl import _trace


def _mp(workers: list[int]) -> list:
    """Worker counts as params; those that fork are marked multiprocess."""
    return [
        pytest.param(n, marks=pytest.mark.multiprocess) if n else pytest.param(n) for n in workers
    ]


def pairs_collate(batch: list) -> list:
    """A custom collate_fn: (index, worker) pairs, no tensors."""
    return [(s["i"], s["worker"]) for s in batch]


def every_other(lib):
    """A batch sampler: odd indices in pairs, then even ones in threes."""
    return [[1, 3], [5, 7], [9], [0, 2, 4], [6, 8]]


def stride_sampler(lib):
    return lib.SequentialSampler(range(10))


MAP_CASES = {
    "plain": {"batch_size": 3},
    "shuffle": {"batch_size": 3, "shuffle": True},
    "drop_last": {"batch_size": 4, "shuffle": True, "drop_last": True},
    "no_batching": {"batch_size": None},
    "collate_fn": {"batch_size": 2, "collate_fn": pairs_collate},
    "batch_sampler": {"batch_sampler": every_other},
    "sampler_prefetch1": {"batch_size": 2, "sampler": stride_sampler, "prefetch_factor": 1},
}


@pytest.fixture(autouse=True)
def _detached():
    yield
    _trace.detach()


@pytest.mark.parametrize("workers", _mp([0, 1, 2, 3]))
@pytest.mark.parametrize("case", MAP_CASES)
def test_map_dataset_parity(case: str, workers: int) -> None:
    kwargs = dict(MAP_CASES[case])
    if workers == 0:
        kwargs.pop("prefetch_factor", None)
    theirs, ours = run_twins(lambda lib: map_dataset_class(lib)(10), num_workers=workers, **kwargs)
    assert ours == theirs


ITER_CASES = {
    "sharded": {"batch_size": 2},
    "replicated": {"batch_size": 3, "shard": False},
    "drop_last": {"batch_size": 3, "drop_last": True},
    "no_batching": {"batch_size": None},
}


@pytest.mark.parametrize("workers", _mp([0, 1, 2, 3]))
@pytest.mark.parametrize("case", ITER_CASES)
def test_iterable_dataset_parity(case: str, workers: int) -> None:
    kwargs = dict(ITER_CASES[case])
    shard = kwargs.pop("shard", True)
    theirs, ours = run_twins(
        lambda lib: iterable_dataset_class(lib)(0, 7, shard), num_workers=workers, **kwargs
    )
    assert ours == theirs


@pytest.mark.multiprocess
@pytest.mark.parametrize("workers", [1, 2])
def test_persistent_workers_three_epochs(workers: int) -> None:
    theirs, ours = run_twins(
        lambda lib: map_dataset_class(lib)(9),
        epochs=3,
        batch_size=2,
        shuffle=True,
        num_workers=workers,
        persistent_workers=True,
    )
    assert ours == theirs
    assert ours[0] != ours[1]  # reshuffled each epoch


@pytest.mark.multiprocess
def test_persistent_iterable_three_epochs() -> None:
    theirs, ours = run_twins(
        lambda lib: iterable_dataset_class(lib)(0, 5),
        epochs=3,
        batch_size=2,
        num_workers=2,
        persistent_workers=True,
    )
    assert ours == theirs


@pytest.mark.multiprocess
def test_out_of_order_yields_every_batch_once() -> None:
    theirs, ours = run_twins(
        lambda lib: map_dataset_class(lib)(12), batch_size=2, num_workers=2, in_order=False
    )

    def indices(batches: list) -> list:
        return sorted(i for b in batches for i in b[1]["i"][3])

    assert indices(ours[0]) == indices(theirs[0]) == list(range(12))


@pytest.mark.multiprocess
def test_worker_init_fn_sees_worker_info() -> None:
    seen = multiprocessing.get_context("fork").SimpleQueue()

    def init(worker_id: int) -> None:
        info = R.get_worker_info()
        seen.put((worker_id, info.id, info.num_workers, info.seed - torch.initial_seed()))

    loader = R.DataLoader(map_dataset_class(R)(4), num_workers=2, worker_init_fn=init)
    assert len(list(loader)) == 4
    got = sorted(seen.get() for _ in range(2))
    assert got == [(0, 0, 2, 0), (1, 1, 2, 0)]
    assert R.get_worker_info() is None


@pytest.mark.multiprocess
def test_batches_from_workers_live_in_shared_memory() -> None:
    ds = R.TensorDataset(torch.arange(8.0).view(4, 2))
    (batch,) = next(iter(R.DataLoader(ds, batch_size=4, num_workers=1)))
    assert batch.is_shared()
    (local,) = next(iter(R.DataLoader(ds, batch_size=4)))
    assert not local.is_shared()


ARG_ERRORS = {
    "num_workers<0": lambda lib, ds: lib.DataLoader(ds, num_workers=-1),
    "timeout<0": lambda lib, ds: lib.DataLoader(ds, timeout=-1),
    "prefetch_without_workers": lambda lib, ds: lib.DataLoader(ds, prefetch_factor=2),
    "prefetch<0": lambda lib, ds: lib.DataLoader(ds, num_workers=1, prefetch_factor=-1),
    "persistent_without_workers": lambda lib, ds: lib.DataLoader(ds, persistent_workers=True),
    "sampler_and_shuffle": lambda lib, ds: lib.DataLoader(ds, sampler=[0, 1], shuffle=True),
    "batch_sampler_and_batch_size": lambda lib, ds: lib.DataLoader(
        ds, batch_sampler=[[0]], batch_size=2
    ),
    "batch_sampler_and_drop_last": lambda lib, ds: lib.DataLoader(
        ds, batch_sampler=[[0]], drop_last=True
    ),
    "no_batching_and_drop_last": lambda lib, ds: lib.DataLoader(
        ds, batch_size=None, drop_last=True
    ),
    "bad_context_name": lambda lib, ds: lib.DataLoader(
        ds, num_workers=1, multiprocessing_context="nope"
    ),
    "bad_context_type": lambda lib, ds: lib.DataLoader(
        ds, num_workers=1, multiprocessing_context=3
    ),
    "context_without_workers": lambda lib, ds: lib.DataLoader(ds, multiprocessing_context="fork"),
    "set_batch_size": lambda lib, ds: setattr(lib.DataLoader(ds), "batch_size", 4),
    "set_dataset": lambda lib, ds: setattr(lib.DataLoader(ds), "dataset", ds),
    "bad_batch_size": lambda lib, ds: lib.DataLoader(ds, batch_size=0),
    "bad_drop_last": lambda lib, ds: lib.DataLoader(ds, drop_last=1),
}


@pytest.mark.parametrize("case", ARG_ERRORS)
def test_argument_errors_match_torch(case: str) -> None:
    make = ARG_ERRORS[case]
    theirs, ours = same_error(lambda lib: make(lib, map_dataset_class(lib)(4)))
    assert theirs is not None
    assert ours == theirs


ITERABLE_ERRORS = {
    "shuffle": {"shuffle": True},
    "sampler": {"sampler": [0, 1]},
    "batch_sampler": {"batch_sampler": [[0, 1]]},
}


@pytest.mark.parametrize("case", ITERABLE_ERRORS)
def test_iterable_dataset_argument_errors_match_torch(case: str) -> None:
    kwargs = ITERABLE_ERRORS[case]
    theirs, ours = same_error(
        lambda lib: lib.DataLoader(iterable_dataset_class(lib)(0, 3), **kwargs)
    )
    assert theirs is not None
    assert ours == theirs


def _warnings_of(fn) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fn()
    return [str(w.message) for w in caught]


@pytest.mark.parametrize(
    "kwargs",
    [{"num_workers": 5}, {"pin_memory": True}, {"pin_memory": True, "pin_memory_device": "x"}],
    ids=["too_many_workers", "pin_without_accelerator", "pin_memory_device"],
)
def test_warnings_match_torch(kwargs: dict) -> None:
    if kwargs.get("pin_memory") and torch.accelerator.is_available():
        pytest.skip("the warning is for machines without an accelerator")
    got = {}
    for name, lib in LIBS.items():
        ds = map_dataset_class(lib)(3)
        # only make the iterator (where torch warns about pinning): no worker starts
        got[name] = _warnings_of(lambda lib=lib, ds=ds: lib.DataLoader(ds, **kwargs))
        if kwargs.get("pin_memory"):
            got[name] += _warnings_of(lambda lib=lib, ds=ds: iter(lib.DataLoader(ds, **kwargs)))
    assert got["reimpl"] == got["torch"]
    assert got["reimpl"]


def test_len_matches_torch() -> None:
    for kwargs in ({"batch_size": 3}, {"batch_size": 3, "drop_last": True}, {"batch_size": None}):
        lens = {
            name: (
                len(lib.DataLoader(map_dataset_class(lib)(10), **kwargs)),
                len(lib.DataLoader(iterable_dataset_class(lib)(0, 10), **kwargs)),
            )
            for name, lib in LIBS.items()
        }
        assert lens["reimpl"] == lens["torch"]


def test_torch_iterable_dataset_is_accepted() -> None:
    """A user's torch IterableDataset works with reimpl's DataLoader unchanged."""
    loader = R.DataLoader(iterable_dataset_class(LIBS["torch"])(0, 5), batch_size=2)
    batches = [b["i"].tolist() for b in loader]
    assert batches == [[0, 1], [2, 3], [4]]


def _spans(trace, kind: str) -> list[int]:
    code = trace.code(kind)
    return [int(r) for r in (trace.kind == code).nonzero()[0]]


def test_trace_single_process(tmp_path) -> None:
    path = str(tmp_path / "t.tsdb")
    with tracer.record(path):
        batches = list(R.DataLoader(map_dataset_class(R)(40), batch_size=20, shuffle=True))
    assert len(batches) == 2
    t = tracer.load(path)
    assert len(_spans(t, "data.iter")) == 1
    nexts = _spans(t, "data.next")
    assert [t.attrs(r)["batch"] for r in nexts] == [0, 1, 2]
    assert [t.attrs(r)["end"] for r in nexts] == [False, False, True]
    assert all(t.attrs(r)["worker"] is None and t.attrs(r)["wait_ns"] > 0 for r in nexts)
    fetches = _spans(t, "data.fetch")
    assert len(fetches) == 2
    attrs = t.attrs(fetches[0])
    assert attrs["size"] == 20 and len(attrs["indices"]) == 16  # capped
    assert attrs["indices"] == batches[0]["i"][:16].tolist()
    for row in _spans(t, "data.sampler")[:2]:  # drawing indices happens inside __next__
        assert t.kind_of(int(t.parent[row])) == "data.next"
    for row in _spans(t, "data.collate"):
        assert t.kind_of(int(t.parent[row])) == "data.fetch"


@pytest.mark.multiprocess
def test_trace_shows_which_worker_made_each_batch(tmp_path) -> None:
    path = str(tmp_path / "t.tsdb")
    with tracer.record(path):
        batches = list(R.DataLoader(map_dataset_class(R)(12), batch_size=2, num_workers=2))
    t = tracer.load(path)
    main = next(p for p in t.processes if p.role == "main")
    workers = {p.role_index: p for p in t.processes if p.role == "worker"}
    assert sorted(workers) == [0, 1]
    assert all(p.ppid == main.pid for p in workers.values())

    nexts = [r for r in _spans(t, "data.next") if not t.attrs(r)["end"]]
    assert [t.attrs(r)["batch"] for r in nexts] == list(range(6))
    made_by = [t.attrs(r)["worker"] for r in nexts]
    assert made_by == [int(b["worker"][0]) for b in batches] == [0, 1, 0, 1, 0, 1]
    assert all(int(t.part[r]) == main.part for r in nexts)

    for k, proc in workers.items():
        tasks = [r for r in _spans(t, "data.worker") if int(t.part[r]) == proc.part]
        named = [r for r in tasks if t.name_of(r) == "task"]
        assert [t.attrs(r)["task"] for r in named] == [k, k + 2, k + 4]
        assert {t.attrs(r)["worker"] for r in named} == {k}
        fetches = [r for r in _spans(t, "data.fetch") if int(t.part[r]) == proc.part]
        assert [t.attrs(r)["indices"] for r in fetches] == [
            [2 * task, 2 * task + 1] for task in (k, k + 2, k + 4)
        ]
        assert all(t.kind_of(int(t.parent[r])) == "data.worker" for r in fetches)
        lanes = {t.threads[int(t.thread[r])].name for r in tasks}
        assert lanes == {f"worker {k}"}


@pytest.mark.parametrize(
    "workers", [0, pytest.param(2, marks=pytest.mark.multiprocess)], ids=["main", "workers"]
)
def test_an_iterable_dataset_that_ends_records_no_error(tmp_path, workers: int) -> None:
    """Its StopIteration is the normal end: spans say ``end``, none says ``error``."""
    path = str(tmp_path / "t.tsdb")
    with tracer.record(path):
        loader = R.DataLoader(iterable_dataset_class(R)(0, 5), batch_size=2, num_workers=workers)
        batches = [b["i"].tolist() for b in loader]
    assert sorted(batches) == ([[0, 1], [2], [3, 4]] if workers else [[0, 1], [2, 3], [4]])
    t = tracer.load(path)
    assert [t.kind_of(r) for r in range(t.n) if "error" in t.attrs(r)] == []
    ended = [t.kind_of(r) for r in range(t.n) if t.attrs(r).get("end") is True]
    if workers:  # each worker's last task found its shard ended; then the main side did
        assert sorted(ended) == ["data.fetch"] * 2 + ["data.next"] + ["data.worker"] * 2
    else:
        assert sorted(ended) == ["data.fetch", "data.next"]


@pytest.mark.multiprocess
def test_iterable_length_warning_matches_torch() -> None:
    """Replicated workers yield more than len(dataset): torch's warning, word for word."""
    got = {}
    for name, lib in LIBS.items():
        loader = lib.DataLoader(
            iterable_dataset_class(lib)(0, 2, False), batch_size=None, num_workers=2
        )
        assert len(loader) == 2
        messages = _warnings_of(lambda loader=loader: list(loader))
        got[name] = [re.sub(r" at 0x[0-9a-f]+", "", m) for m in messages]
    assert got["reimpl"] == got["torch"]
    assert len(got["torch"]) == 2 and "samples have been fetched" in got["torch"][0]


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(1, 23),
    batch_size=st.none() | st.integers(1, 8),
    shuffle=st.booleans(),
    drop_last=st.booleans(),
    seed=st.integers(0, 2**32),
)
def test_single_process_parity_property(n, batch_size, shuffle, drop_last, seed) -> None:
    if batch_size is None:
        drop_last = False
    theirs, ours = run_twins(
        lambda lib: map_dataset_class(lib)(n),
        epochs=2,
        seed=seed,
        batch_size=batch_size,
        shuffle=shuffle,
        drop_last=drop_last,
    )
    assert ours == theirs


@pytest.mark.multiprocess
@pytest.mark.slow
def test_spawned_workers_record_their_own_parts(tmp_path):
    """spawn-context workers start fresh interpreters; the recorder still follows."""
    path = str(tmp_path / "spawn.tsdb")
    ds = R.TensorDataset(torch.arange(32.0).view(16, 2))
    with tracer.record(path):
        loader = R.DataLoader(ds, batch_size=4, num_workers=2, multiprocessing_context="spawn")
        batches = list(loader)
    assert torch.equal(torch.cat([b[0] for b in batches]), ds.tensors[0])
    t = tracer.load(path)
    workers = sorted((p.role_index, p.status) for p in t.processes if p.role == "worker")
    assert workers == [(0, "ok"), (1, "ok")]
    for p in t.processes:
        kinds = {t.kind_of(r) for r in range(t.n) if t.part[r] == p.part}
        assert ("data.worker" in kinds) == (p.role == "worker")
