"""Pinning: containers keep their types; without an accelerator, torch's warning."""

from __future__ import annotations

import collections
from typing import NamedTuple

import pytest
import torch
from torch.utils.data._utils.pin_memory import pin_memory as torch_pin_memory

import reimpl.utils.data as R
from reimpl.utils.data._utils.pin_memory import pin_memory


class _Pinnable:
    def __init__(self) -> None:
        self.pinned = False

    def pin_memory(self) -> _Pinnable:
        self.pinned = True
        return self


class _Pair(NamedTuple):
    a: object
    b: object


def test_custom_types_and_containers_are_walked() -> None:
    out = pin_memory(
        {"p": _Pinnable(), "s": "text", "l": [_Pinnable()], "t": _Pair(_Pinnable(), b"x")}
    )
    assert out["p"].pinned and out["s"] == "text" and out["l"][0].pinned
    assert isinstance(out["t"], _Pair) and out["t"].a.pinned and out["t"].b == b"x"
    ordered = pin_memory(collections.OrderedDict(k=_Pinnable()))
    assert isinstance(ordered, collections.OrderedDict) and ordered["k"].pinned
    assert pin_memory(range(2)) == torch_pin_memory(range(2)) == [0, 1]  # range(list) fails
    assert pin_memory(7) == 7


@pytest.mark.skipif(torch.accelerator.is_available(), reason="needs a machine without one")
def test_pin_memory_without_accelerator_warns_and_does_not_pin() -> None:
    loader = R.DataLoader(R.TensorDataset(torch.zeros(4, 2)), batch_size=2, pin_memory=True)
    with pytest.warns(UserWarning, match="no accelerator is found"):
        batches = list(loader)
    assert len(batches) == 2 and not batches[0][0].is_pinned()


@pytest.mark.gpu
@pytest.mark.multiprocess
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_pin_memory_thread_pins_worker_batches() -> None:
    loader = R.DataLoader(
        R.TensorDataset(torch.zeros(8, 2)), batch_size=2, num_workers=2, pin_memory=True
    )
    batches = list(loader)
    assert len(batches) == 4 and all(b[0].is_pinned() for b in batches)


class PinnableBatch:
    """A batch type that knows how to pin itself (torch calls its ``pin_memory``)."""

    def __init__(self, items: list) -> None:
        self.items = items
        self.pinned = False

    def pin_memory(self) -> PinnableBatch:
        self.pinned = True
        return self


def _fake_accelerator(monkeypatch) -> None:
    """Pretend a CUDA device exists, for the thread's bookkeeping only."""
    monkeypatch.setattr(torch.accelerator, "is_available", lambda: True)
    monkeypatch.setattr(torch.accelerator, "current_accelerator", lambda: torch.device("cuda"))
    monkeypatch.setattr(torch.accelerator, "current_device_index", lambda: 0)
    monkeypatch.setattr(torch.accelerator, "set_device_index", lambda index: None)


@pytest.mark.multiprocess
def test_pin_thread_pins_every_batch_and_is_traced(monkeypatch, tmp_path) -> None:
    """The whole pinned path of the multi-process iterator, with a batch type that
    pins itself (no CUDA here): the thread's spans land on its own lane."""
    import tracer
    from reimpl import _trace

    _fake_accelerator(monkeypatch)
    path = str(tmp_path / "t.tsdb")
    loader = R.DataLoader(
        list(range(6)), batch_size=2, num_workers=2, pin_memory=True, collate_fn=PinnableBatch
    )
    try:
        with tracer.record(path):
            batches = list(loader)
    finally:
        _trace.detach()
    assert [b.items for b in batches] == [[0, 1], [2, 3], [4, 5]]
    assert all(b.pinned for b in batches)
    t = tracer.load(path)
    pins = [r for r in range(t.n) if t.kind_of(r) == "data.pin"]
    assert sorted(t.attrs(r)["task"] for r in pins) == [0, 1, 2]
    lanes = {t.threads[int(t.thread[r])].label for r in pins}
    assert lanes == {"pin memory [cuda:0]"}
