"""DataParallel's backward in the trace: one ``dp.reduce_add`` per broadcast group.

``Broadcast.backward`` -> ``ReduceAddCoalesced`` -> ``comm.reduce_add_coalesced``
sums the replicas' gradients back onto the module's parameters; the span says
from which devices and how many bytes came from each.
"""

from __future__ import annotations

import threading

import torch

from reimpl import nn
from reimpl.nn.parallel import DataParallel

SIM2 = ["sim:0", "sim:1"]


class WithGradBuffer(nn.Module):
    """A linear layer plus a buffer that requires grad: replicate broadcasts it apart."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 4)
        self.register_buffer("shift", torch.zeros(4, requires_grad=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x) + self.shift


def _param_bytes(tensors: list[torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def test_one_reduction_per_parameter_group_in_backward(sink):
    model = WithGradBuffer()
    out = DataParallel(model, device_ids=SIM2)(torch.randn(6, 3))
    assert sink.of_kind("dp.reduce_add") == []  # forward alone reduces nothing
    out.sum().backward()
    reductions = sink.of_kind("dp.reduce_add")
    assert len(reductions) == 2  # the parameters, and the buffer that requires grad
    # Autograd orders them: which group comes first is its business. Match by count.
    groups = {2: list(model.parameters()), 1: list(model.buffers())}
    assert sorted(r[8]["tensors"] for r in reductions) == [1, 2]
    for record in reductions:
        group = groups[record[8]["tensors"]]
        attrs = record[8]
        assert record[6] == "reduce_add_coalesced"
        assert record[7] == "reimpl.nn.parallel.comm.reduce_add_coalesced"
        assert record[2] == threading.get_ident()  # CPU autograd runs it on the caller
        assert attrs["devices"] == SIM2 and attrs["destination"] == "sim:0"
        assert attrs["sizes"] == {d: _param_bytes(group) for d in SIM2}
        assert attrs["bytes"] == 2 * _param_bytes(group)
    (gather,) = sink.of_kind("dp.gather")
    assert all(gather[4] <= r[3] for r in reductions)  # after the forward's gather
    assert model.shift.grad is not None and torch.equal(model.shift.grad, torch.full((4,), 6.0))


def test_three_devices_three_sources(sink):
    model = nn.Linear(3, 2)
    DataParallel(model, device_ids=["sim:0", "sim:1", "sim:2"])(torch.randn(6, 3)).sum().backward()
    (reduction,) = sink.of_kind("dp.reduce_add")
    assert reduction[8]["devices"] == ["sim:0", "sim:1", "sim:2"]
    assert reduction[8]["tensors"] == 2
