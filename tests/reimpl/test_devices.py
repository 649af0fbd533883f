"""Simulated devices: tags, the mixed-device error, autograd through tagged tensors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from reimpl.devices import (
    SimTensor,
    as_plain,
    device_of,
    get_device_index,
    is_sim,
    retag,
    sim_device_of,
    sim_index,
    to_device,
)

MIXED = (
    "Expected all tensors to be on the same device, but found at least two devices, "
    "sim:0 and sim:1!"
)


def test_names():
    assert is_sim("sim:3") and not is_sim("cuda:0") and not is_sim(0)
    assert sim_index("sim:12") == 12
    with pytest.raises(ValueError, match="not a simulated device"):
        sim_index("sim:x")
    assert get_device_index("sim:2") == "sim:2"
    assert get_device_index(torch.device("cpu"), allow_cpu=True) == -1


def test_device_of_plain_and_tagged():
    t = torch.randn(2, 3)
    assert device_of(t) == "cpu" and sim_device_of(t) == "sim:0"
    s = to_device(t, "sim:1")
    assert isinstance(s, SimTensor) and device_of(s) == sim_device_of(s) == "sim:1"
    assert s.data_ptr() != t.data_ptr()  # a move is a copy
    assert to_device(s, "sim:1") is s
    back = to_device(s, "sim:0")
    assert type(back) is torch.Tensor and torch.equal(back, t)
    assert "device='sim:1'" in repr(s) and repr(s).startswith("tensor(")


def test_ops_propagate_the_tag():
    s = to_device(torch.randn(4, 3), "sim:2")
    results = [s + 1, s * s, s.relu(), s.t(), s[1:], torch.cat([s, s]), s.detach(), s.sum()]
    results += [*s.chunk(2), s.to(torch.float64), F.linear(s, to_device(torch.eye(3), "sim:2"))]
    assert {device_of(r) for r in results} == {"sim:2"}
    assert f"{s.sum():.1f}" == f"{as_plain(s).sum():.1f}"
    assert type(s.cpu()) is torch.Tensor and type(s.to("cpu")) is torch.Tensor


def test_mixing_devices_raises_torchs_message():
    plain = torch.randn(2, 3)
    s1 = to_device(plain, "sim:1")
    with pytest.raises(RuntimeError) as err:
        plain + s1
    assert str(err.value) == MIXED
    with pytest.raises(RuntimeError, match="sim:1 and sim:2!"):
        torch.cat([s1, to_device(plain, "sim:2")])
    with pytest.raises(RuntimeError, match="sim:1 and sim:0!"):
        F.linear(s1, torch.randn(3, 3))


def test_cpu_scalars_and_copies_cross_devices():
    s = to_device(torch.ones(3), "sim:1")
    assert device_of(s * torch.tensor(2.0)) == "sim:1"  # a CPU scalar joins, as with CUDA
    plain = torch.zeros(3)
    plain.copy_(s)  # copy_ moves between devices, as on real ones
    assert type(plain) is torch.Tensor and plain.sum() == 3


def test_autograd_flows_back_to_plain_leaves():
    w = torch.randn(3, 3, requires_grad=True)
    x = torch.randn(5, 3)
    ref = torch.autograd.grad(F.linear(x, w).tanh().sum(), w)[0]
    w1 = retag(w, "sim:1")  # an alias on sim:1 that autograd sees through
    out = F.linear(to_device(x, "sim:1"), w1).tanh().sum()
    assert device_of(out) == "sim:1"
    out.backward()
    assert type(w.grad) is torch.Tensor
    torch.testing.assert_close(w.grad, ref)


def test_result_that_is_an_input_is_not_retagged():
    scalar = torch.tensor(1.5)
    s = to_device(torch.ones(2), "sim:1")
    moved = scalar.to(s)  # same dtype: torch returns the input itself
    assert type(scalar) is torch.Tensor
    assert device_of(moved) == "sim:1"


def test_device_tells_simulated_devices_apart_and_moves_there():
    x = to_device(torch.randn(3), "sim:2")
    assert x.device == torch.device("cpu", 2) and x.device.type == "cpu"
    assert x.device != to_device(torch.randn(3), "sim:1").device != torch.randn(3).device
    assert device_of(x.to(x.device)) == "sim:2"
    assert device_of(to_device(torch.randn(3), "sim:1").to(x.device)) == "sim:2"
    assert device_of(x.to("cpu")) == "cpu" and device_of(x.to(torch.device("cpu", 0))) == "cpu"
    made = torch.zeros(3, device=x.device)  # torch takes cpu:2 as the CPU
    assert type(made) is torch.Tensor and made.device == torch.device("cpu")
