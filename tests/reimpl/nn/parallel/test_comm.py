"""comm on simulated devices: broadcast, scatter, gather, reduce_add."""

from __future__ import annotations

import pytest
import torch

from reimpl.devices import as_plain, device_of, to_device
from reimpl.nn.parallel import comm

DEVS = ["sim:0", "sim:1", "sim:2"]


def test_broadcast_shares_the_source_and_copies_the_rest():
    t = torch.randn(3, 2)
    out = comm.broadcast(t, DEVS)
    assert out[0] is t
    assert [device_of(o) for o in out[1:]] == ["sim:1", "sim:2"]
    assert all(torch.equal(as_plain(o), t) for o in out)
    with pytest.raises(RuntimeError, match="Exactly one of 'devices' and 'out'"):
        comm.broadcast(t)


def test_broadcast_coalesced_one_list_per_device():
    ts = [torch.randn(2), torch.randn(3, 3)]
    out = comm.broadcast_coalesced(ts, DEVS[:2])
    assert out[0][0] is ts[0] and out[0][1] is ts[1]
    assert [device_of(o) for o in out[1]] == ["sim:1", "sim:1"]


def test_scatter_uneven_and_sized_chunks():
    t = torch.arange(7.0)
    chunks = comm.scatter(t, DEVS)
    assert [c.tolist() for c in chunks] == [[0, 1, 2], [3, 4, 5], [6]]
    assert [device_of(c) for c in chunks] == ["cpu", "sim:1", "sim:2"]
    sized = comm.scatter(t, DEVS, chunk_sizes=[1, 2, 4])
    assert [c.numel() for c in sized] == [1, 2, 4]
    assert len(comm.scatter(torch.arange(2.0), DEVS)) == 2  # fewer chunks than devices


def test_gather_and_reduce_add():
    parts = [torch.ones(2), to_device(torch.full((3,), 2.0), "sim:1")]
    out = comm.gather(parts, 0, "sim:0")
    assert type(out) is torch.Tensor and out.tolist() == [1, 1, 2, 2, 2]
    assert device_of(comm.gather(parts, 0, "sim:1")) == "sim:1"
    total = comm.reduce_add([torch.ones(2), to_device(torch.ones(2), "sim:1")], "sim:0")
    assert type(total) is torch.Tensor and total.tolist() == [2, 2]
    with pytest.raises(ValueError, match="input 1 has invalid size: got 3, but expected 2"):
        comm.reduce_add([torch.ones(2), to_device(torch.ones(3), "sim:1")], "sim:0")
    with pytest.raises(RuntimeError, match="reduce_add expects destination"):
        comm.reduce_add([to_device(torch.ones(2), "sim:1")], "sim:2")
    sums = comm.reduce_add_coalesced(
        [[torch.ones(2)], [to_device(torch.ones(2), "sim:1")]], "sim:0"
    )
    assert sums[0].tolist() == [2, 2]


def test_mixing_simulated_and_real_devices_is_refused():
    with pytest.raises(ValueError, match="cannot mix simulated and real devices"):
        comm.broadcast_coalesced([torch.ones(1)], ["sim:0", 1])
