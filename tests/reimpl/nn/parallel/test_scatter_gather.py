"""scatter, scatter_kwargs and gather over nested structures, on simulated devices."""

from __future__ import annotations

import pytest
import torch
from dp_helpers import Pair

from reimpl.devices import device_of
from reimpl.nn.parallel.scatter_gather import gather, scatter, scatter_kwargs

DEVS = ["sim:0", "sim:1"]


def test_scatter_structures():
    x = torch.arange(6.0).reshape(3, 2)
    assert [device_of(c) for c in scatter(x, DEVS)] == ["cpu", "sim:1"]
    tup = scatter((x, "tag"), DEVS)
    assert isinstance(tup, list) and tup[1][1] == "tag" and tup[1][0].shape == (1, 2)
    lst = scatter([x, x], DEVS)
    assert isinstance(lst[0], list) and len(lst[0]) == 2
    dct = scatter({"a": x, "n": 3}, DEVS)
    assert dct[1]["n"] == 3 and device_of(dct[1]["a"]) == "sim:1"
    nt = scatter(Pair(x, x), DEVS)
    assert type(nt[0]) is Pair and nt[0].image.shape == (2, 2)


def test_scatter_kwargs_pads_the_shorter_side():
    x = torch.ones(4, 1)
    args, kwargs = scatter_kwargs((), {"x": x}, DEVS)
    assert args == ((), ()) and kwargs[1]["x"].shape == (2, 1)
    args, kwargs = scatter_kwargs((x,), None, DEVS)
    assert kwargs == ({}, {})


def test_gather_structures():
    a, b = torch.ones(2, 3), torch.zeros(1, 3)
    assert gather([a, b], "sim:0").shape == (3, 3)
    out = gather([{"o": a, "p": Pair(a, None)}, {"o": b, "p": Pair(b, None)}], "sim:0")
    assert out["o"].shape == (3, 3) and type(out["p"]) is Pair and out["p"].features is None
    assert [t.shape for t in gather([(a, a), (b, b)], "sim:0")] == [(3, 3), (3, 3)]
    with pytest.raises(ValueError, match="All dicts must have the same number of keys"):
        gather([{"o": a}, {"o": b, "q": b}], "sim:0")
    with pytest.warns(UserWarning, match="all input tensors were scalars"):
        assert gather([torch.tensor(1.0), torch.tensor(2.0)], "sim:0").tolist() == [1, 2]


def test_scatter_records_chunk_shapes(sink):
    scatter_kwargs((torch.ones(5, 2),), {"w": torch.ones(5)}, DEVS)
    (rec,) = sink.of_kind("dp.scatter")
    assert rec[8]["chunks"] == {"sim:0": [[3, 2], [3]], "sim:1": [[2, 2], [2]]}
