"""replicate: broadcast parameters and buffers, shallow replicas sharing hooks."""

from __future__ import annotations

import torch
from dp_helpers import Net

from reimpl import nn
from reimpl.devices import device_of
from reimpl.nn.parallel import replicate


def test_parameters_and_buffers_land_on_each_device():
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    r0, r1 = replicate(model, ["sim:0", "sim:1"])
    assert r0[0].weight.data_ptr() == model[0].weight.data_ptr()  # replica 0 shares storage
    assert r0[1].running_mean.data_ptr() == model[1].running_mean.data_ptr()
    assert device_of(r1[0].weight) == device_of(r1[1].running_var) == "sim:1"
    assert r1[0].weight.grad_fn is not None  # not a leaf: gradients flow back
    assert list(r1.parameters()) == []  # replicas hold no Parameters of their own
    assert set(r1[0]._former_parameters) == {"weight", "bias"}
    assert r1[1].running_var.grad_fn is None  # buffers are detached


def test_replicas_share_hook_dicts_and_plain_attributes():
    model = Net()
    model.note = {"calls": 0}
    model.conv.register_forward_hook(lambda m, i, o: None)
    r0, r1 = replicate(model, ["sim:0", "sim:1"])
    # The root of the DeOldify bug: __dict__ is copied, its values are not.
    assert r0.conv._forward_hooks is r1.conv._forward_hooks is model.conv._forward_hooks
    assert r0.note is r1.note is model.note
    assert r1.conv is not model.conv and r1.conv._is_replica


def test_detach_gives_leaf_copies():
    model = nn.Linear(2, 2)
    (_, r1) = replicate(model, ["sim:0", "sim:1"], detach=True)
    assert r1.weight.grad_fn is None and device_of(r1.weight) == "sim:1"


def test_gradients_of_replicas_sum_into_the_module():
    model = nn.Linear(3, 1, bias=False)
    replicas = replicate(model, ["sim:0", "sim:1", "sim:2"])
    x = torch.ones(1, 3)
    from reimpl.devices import to_device

    total = sum(
        r(to_device(x, d)).sum().cpu() for r, d in zip(replicas, ["sim:0", "sim:1", "sim:2"])
    )
    total.backward()
    torch.testing.assert_close(model.weight.grad, torch.full((1, 3), 3.0))


def test_events(sink):
    replicate(nn.Linear(2, 2), ["sim:0", "sim:1"])
    (rep,) = sink.of_kind("dp.replicate")
    (bc,) = sink.of_kind("dp.broadcast")
    assert rep[8]["devices"] == ["sim:0", "sim:1"] and bc[8]["tensors"] == 2
    assert rep[0] < bc[0] and bc[4] <= rep[4]  # broadcast nests inside replicate


def test_replica_on_the_first_device_holds_the_buffers_themselves():
    """Plain buffers go through ``broadcast_coalesced``, whose first device's output
    is its input (torch/csrc/cuda/comm.cpp): replica 0 holds the module's own buffer
    objects, not aliases, so BatchNorm updates through it are the module's."""
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    r0, r1 = replicate(model, ["sim:0", "sim:1"])
    for name, buf in model.named_buffers():
        assert r0.get_buffer(name) is buf, name
        assert r1.get_buffer(name) is not buf and r1.get_buffer(name).grad_fn is None
