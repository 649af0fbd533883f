"""default_collate and default_convert against torch's: outputs and errors."""

from __future__ import annotations

import collections
from typing import Any, NamedTuple

import numpy as np
import pytest
import torch
import torch.utils.data._utils.collate as torch_collate
from data_parity import normalize, raised

from reimpl.utils.data._utils import collate


class Point(NamedTuple):
    x: Any
    y: Any


class Frozen(collections.abc.Mapping):
    """An immutable mapping: collate rebuilds it with its type."""

    def __init__(self, data: dict) -> None:
        self._data = dict(data)

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self):
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


BATCHES = {
    "tensors": [torch.tensor([1.0, 2.0]), torch.tensor([3.0, 4.0])],
    "scalar_tensors": [torch.tensor(1), torch.tensor(2)],
    "ints": [1, 2, 3],
    "bools": [True, False],
    "floats": [0.5, 1.5],
    "strings": ["a", "b"],
    "bytes": [b"a", b"b"],
    "numpy": [np.arange(3), np.arange(3, 6)],
    "numpy_scalars": [np.float32(1.5), np.float32(2.5)],
    "numpy_int64": [np.int64(4), np.int64(5)],
    "dicts": [{"a": 1, "b": torch.zeros(2)}, {"a": 2, "b": torch.ones(2)}],
    "ordered_dicts": [collections.OrderedDict(a=1.0), collections.OrderedDict(a=2.0)],
    "frozen_mappings": [Frozen({"k": 1}), Frozen({"k": 2})],
    "namedtuples": [Point(1, torch.zeros(1)), Point(2, torch.ones(1))],
    "tuples": [(1, "x"), (2, "y")],
    "lists": [[1, 2.0], [3, 4.0]],
    "nested": [{"p": Point([1, 2], "s")}, {"p": Point([3, 4], "t")}],
    "ragged": [[1, 2], [3]],
    "mixed_int_str": [1, "a"],
    "numpy_strings": [np.array(["a"]), np.array(["b"])],
    "objects": [object(), object()],
    "ragged_tensors": [torch.zeros(2), torch.zeros(3)],
    "nested_tensors": [torch.nested.nested_tensor([torch.zeros(2)], layout=torch.jagged)] * 2,
    "sparse_tensors": [torch.zeros(2).to_sparse()] * 2,
}


def _outcome(fn: Any, batch: list) -> Any:
    err = raised(lambda: fn(batch))
    if err is not None:
        return err[0].__name__, err[1]
    return normalize(fn(batch))


@pytest.mark.parametrize("case", BATCHES)
def test_default_collate_matches_torch(case: str) -> None:
    batch = BATCHES[case]
    ours = _outcome(collate.default_collate, batch)
    assert ours == _outcome(torch_collate.default_collate, batch)


@pytest.mark.parametrize("case", BATCHES)
def test_default_convert_matches_torch(case: str) -> None:
    for sample in BATCHES[case]:
        ours = _outcome(collate.default_convert, sample)
        assert ours == _outcome(torch_collate.default_convert, sample)


def test_default_convert_keeps_sequence_types() -> None:
    for data in (range(3), (np.zeros(1),), [np.zeros(1)], "text"):
        assert normalize(collate.default_convert(data)) == normalize(
            torch_collate.default_convert(data)
        )


def test_custom_collate_fn_map_extends_collate() -> None:
    def collate_point(batch: list, *, collate_fn_map: dict | None = None) -> str:
        return "points"

    custom = {Point: collate_point, **collate.default_collate_fn_map}
    assert collate.collate([Point(1, 2)], collate_fn_map=custom) == "points"
    assert collate.collate([[Point(1, 2)]], collate_fn_map=custom) == ["points"]


def test_tensors_are_stacked_into_shared_memory_only_in_workers(monkeypatch) -> None:
    batch = [torch.ones(2), torch.zeros(2)]
    assert not collate.default_collate(batch).is_shared()
    from reimpl.utils.data._utils import worker

    info = worker.WorkerInfo(id=0, num_workers=1, seed=0, dataset=None)
    monkeypatch.setattr(worker, "_worker_info", info)
    out = collate.default_collate(batch)
    assert out.is_shared()
    assert out.tolist() == [[1.0, 1.0], [0.0, 0.0]]
