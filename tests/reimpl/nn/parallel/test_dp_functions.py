"""The autograd Functions of _functions.py (named apart from modules/test__functions.py)."""

from __future__ import annotations

import torch

from reimpl.devices import device_of, to_device
from reimpl.nn.parallel._functions import Broadcast, Gather, ReduceAddCoalesced, Scatter

DEVS = ["sim:0", "sim:1"]


def test_broadcast_backward_sums_gradients():
    w = torch.randn(2, 2, requires_grad=True)
    b = torch.randn(3)  # no grad: its copies are non-differentiable
    w0, _, w1, b1 = Broadcast.apply(DEVS, w, b)
    assert device_of(w1) == device_of(b1) == "sim:1" and not b1.requires_grad
    (w0.sum() * 2 + w1.sum().cpu() * 3).backward()
    torch.testing.assert_close(w.grad, torch.full((2, 2), 5.0))


def test_reduce_add_coalesced_forward():
    g = ReduceAddCoalesced.apply("sim:0", 1, torch.ones(2), to_device(torch.ones(2), "sim:1"))
    assert type(g[0]) is torch.Tensor and g[0].tolist() == [2.0, 2.0]


def test_scatter_then_gather_is_identity_with_gradients():
    x = torch.randn(5, 3, requires_grad=True)
    parts = Scatter.apply(DEVS, None, 0, x)
    assert [device_of(p) for p in parts] == ["cpu", "sim:1"] and parts[1].shape == (2, 3)
    y = Gather.apply("sim:0", 0, *(p * 2 for p in parts))
    assert type(y) is torch.Tensor
    torch.testing.assert_close(y, x * 2)
    y.sum().backward()
    torch.testing.assert_close(x.grad, torch.full((5, 3), 2.0))


def test_double_backward_through_scatter_and_gather():
    x = torch.randn(4, requires_grad=True)
    parts = Scatter.apply(DEVS, None, 0, x)
    y = Gather.apply("sim:0", 0, *(p**3 for p in parts))
    (g,) = torch.autograd.grad(y.sum(), x, create_graph=True)
    g.sum().backward()
    torch.testing.assert_close(x.grad, 6 * x.detach())
