"""Simulated devices for unmodified torch programs (tracer/targets/torch/sim_devices.py)."""

from __future__ import annotations

import sys

import pytest
import torch
from torch import nn

from reimpl.devices import device_of
from reimpl.nn.parallel import _lockstep
from samples import dataparallel_hooks_torch as sample
from tracer.targets.torch import sim_devices
from tracer.targets.torch.sim_devices import SimDevices, sim_device_ids

DP_MODULE = sys.modules["torch.nn.parallel.data_parallel"]


def _originals() -> dict[str, object]:
    """Every name the simulation replaces, and what torch binds it to now."""
    return {
        "torch.nn.DataParallel": torch.nn.DataParallel,
        "torch.nn.parallel.DataParallel": torch.nn.parallel.DataParallel,
        "torch.nn.parallel.data_parallel": torch.nn.parallel.data_parallel,
        "data_parallel.DataParallel": DP_MODULE.DataParallel,
        "data_parallel.data_parallel": DP_MODULE.data_parallel,
    }


def _torch_global_hooks() -> tuple[int, int]:
    m = torch.nn.modules.module
    return len(m._global_forward_pre_hooks), len(m._global_forward_hooks)


def test_install_replaces_every_name_and_restore_puts_torchs_own_back():
    before = _originals()
    assert before["torch.nn.DataParallel"] is sim_devices.TorchDataParallel
    hooks, stdout = _torch_global_hooks(), sys.stdout
    with SimDevices(2):
        assert all(
            v in (sim_devices.DataParallel, sim_devices.data_parallel)
            for v in _originals().values()
        )
        with pytest.raises(RuntimeError, match="same device"):
            sample.run("buggy")  # a run that fails inside the replicas
    after = _originals()
    assert all(after[k] is before[k] for k in before)
    assert _torch_global_hooks() == hooks  # the lockstep switch points are gone
    assert sys.stdout is stdout and _lockstep._active == 0
    assert sim_devices._active is None


def test_restore_after_an_exception_in_the_block():
    before = _originals()
    with pytest.raises(KeyError), SimDevices(3):
        raise KeyError("the program failed")
    assert _originals() == before


def test_one_installation_at_a_time():
    with SimDevices(2), pytest.raises(RuntimeError, match="installed already"):
        SimDevices(2).install()
    assert torch.nn.DataParallel is sim_devices.TorchDataParallel


def test_device_ids_map_to_simulated_devices():
    assert sim_device_ids(None, 3) == ["sim:0", "sim:1", "sim:2"]
    assert sim_device_ids([1, "cuda:0", torch.device("cuda", 2), "sim:1"], 3) == [
        "sim:1",
        "sim:0",
        "sim:2",
        "sim:1",
    ]
    with pytest.raises(ValueError, match=r"--sim-devices 2 simulates ids 0\.\.1.*--sim-devices 3"):
        sim_device_ids([0, 2], 2)
    with pytest.raises(ValueError, match="at least 1 device"):
        SimDevices(0)


def test_same_interface_and_state_dict_as_torchs_dataparallel():
    model = sample.UNet(sample.ThreadLocalHook)
    plain = torch.nn.DataParallel(model)  # torch's own, on this CPU machine
    with SimDevices(2):
        net = torch.nn.DataParallel(model, device_ids=[0, 1], output_device=1)
    assert isinstance(net, sim_devices.TorchDataParallel)
    assert type(net).__name__ == "DataParallel"
    assert net.device_ids == ["sim:0", "sim:1"] and net.output_device == "sim:1"
    assert net.module is model and net.dim == 0
    assert list(net.state_dict()) == list(plain.state_dict())
    assert all(k.startswith("module.") for k in net.state_dict())
    net.load_state_dict(plain.state_dict())
    out = net(torch.randn(4, 3, 16, 16))  # still usable after the run: its ids are kept
    assert device_of(out) == "sim:1"


def test_buggy_fails_the_same_way_20_times_out_of_20():
    with SimDevices(2):
        for _ in range(20):
            with pytest.raises(RuntimeError) as err:
                sample.run("buggy")
            msg = str(err.value)
            assert msg.startswith("Caught RuntimeError in replica 0 on device sim:0.")
            assert msg.rstrip().endswith(
                "Expected all tensors to be on the same device, but found at least two "
                "devices, sim:0 and sim:1!"
            )


def test_fixed_matches_one_device_with_and_without_lockstep():
    ref_out, ref_loss, ref_model = sample.run("fixed", parallel=False)
    for lockstep in (True, False):
        with SimDevices(2, lockstep=lockstep):
            out, loss, model = sample.run("fixed")
        assert type(out) is torch.Tensor  # gathered on sim:0, the CPU
        torch.testing.assert_close(out, ref_out)
        torch.testing.assert_close(loss, ref_loss)
        for p, q in zip(model.parameters(), ref_model.parameters(), strict=True):
            torch.testing.assert_close(p.grad, q.grad)


def test_functional_data_parallel_and_gather_on_the_cpu():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    x = torch.randn(6, 4)
    ref = model(x)
    with SimDevices(3):
        out = torch.nn.parallel.data_parallel(model, x, device_ids=[0, 1, 2], output_device=-1)
        made = sim_devices._active.made
    assert type(out) is torch.Tensor  # gathered on the CPU, which is sim:0
    torch.testing.assert_close(out, ref)
    assert made == 1


def test_a_module_on_another_device_is_refused_as_torch_words_it():
    with SimDevices(2):
        net = torch.nn.DataParallel(nn.Linear(2, 2), device_ids=[1, 0])
        with pytest.raises(RuntimeError, match=r"on device sim:1 \(device_ids\[0\]\)"):
            net(torch.randn(2, 2))


def test_device_count_answers_the_simulated_count_only_when_asked():
    assert torch.cuda.device_count() == 0 and not torch.cuda.is_available()
    original = torch.cuda.device_count
    with SimDevices(2):
        assert torch.cuda.device_count() == 0
    with SimDevices(3, device_count=True) as sim:
        assert torch.cuda.device_count() == 3 and not torch.cuda.is_available()
        assert sim.meta()["sim_device_count"] == "3"
    assert torch.cuda.device_count is original


class _Positional(nn.Module):
    """Tensors made in forward "on x.device", as real models make masks and positions."""

    def __init__(self, make: str = "device") -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.make = make

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.make == "device":
            pos = torch.arange(x.shape[1], device=x.device, dtype=x.dtype)
            mask = (torch.rand(4) >= 0).to(x.device)  # made on the CPU, moved to x's device
            return self.lin(x + pos) * mask + x.new_ones(1) + torch.zeros_like(x)
        if self.make == "nodevice":
            return self.lin(x) + torch.ones(4)  # a CPU tensor: GPUs refuse to mix it too
        if self.make == "tocpu":
            return self.lin(x).to("cpu") + x  # "cpu" is the CPU, here as on GPUs
        return self.lin(x).cpu() + x


def test_tensors_made_on_x_device_land_on_the_replicas_device():
    torch.manual_seed(0)
    model = _Positional()
    x = torch.randn(6, 4)
    ref = model(x)
    ref.sum().backward()
    ref_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    with SimDevices(3):
        out = torch.nn.DataParallel(model)(x)
    out.sum().backward()
    torch.testing.assert_close(out, ref)
    for p, g in zip(model.parameters(), ref_grads, strict=True):
        torch.testing.assert_close(p.grad, g)


@pytest.mark.parametrize("make", ["nodevice", "tocpu", "cpu"])
def test_cpu_tensors_still_fail_to_mix_on_another_replica(make):
    with SimDevices(2), pytest.raises(RuntimeError) as err:
        torch.nn.DataParallel(_Positional(make))(torch.randn(4, 4))
    assert str(err.value).startswith("Caught RuntimeError in replica 1 on device sim:1.")
    last = str(err.value).strip().splitlines()[-1]
    assert last.startswith("RuntimeError: Expected all tensors to be on the same device")
    assert "sim:0" in last and "sim:1" in last


def test_a_simulated_tensors_device_tells_devices_apart():
    seen: dict[torch.device, torch.Size] = {}

    class Keyed(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen[x.device] = x.shape  # state kept per device, as a fixed DeOldify hook does
            return x * 2

    with SimDevices(3):
        out = torch.nn.DataParallel(Keyed())(torch.randn(6, 2))
    assert set(seen) == {torch.device("cpu"), torch.device("cpu", 1), torch.device("cpu", 2)}
    assert out.shape == (6, 2)
