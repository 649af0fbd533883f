"""DataParallel and data_parallel: parity with the plain module, checks, events."""

from __future__ import annotations

import threading

import pytest
import torch
from dp_helpers import DictNet, Net, Pair, TupleNet, check_parity, flat

from reimpl import nn
from reimpl.devices import device_of
from reimpl.nn.parallel import DataParallel, data_parallel, lockstep

SIM2 = ["sim:0", "sim:1"]
SIM3 = ["sim:0", "sim:1", "sim:2"]
TWO_GPUS = pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA devices")

CALLS = {
    "tensor": (Net, lambda m, x, f: m(x)),
    "args": (Net, lambda m, x, f: m(x, f)),
    "kwargs": (Net, lambda m, x, f: m(x, features=f, scale=2.0)),
    "tensor_kwarg": (Net, lambda m, x, f: m(x, f, scale=f[:, :1].detach() + 1)),
    "tuple": (TupleNet, lambda m, x, f: m((x, f))),
    "namedtuple": (TupleNet, lambda m, x, f: m(Pair(x, f))),
    "dict": (DictNet, lambda m, x, f: m({"image": x, "features": f})),
}


@pytest.mark.parametrize("devices", [SIM2, SIM3], ids=["2dev", "3dev"])
@pytest.mark.parametrize("batch", [6, 7, 2], ids=["even", "uneven", "short"])
@pytest.mark.parametrize("kind", sorted(CALLS))
def test_parity_on_simulated_devices(kind, batch, devices):
    factory, call = CALLS[kind]
    check_parity(factory, call, devices, batch)


def test_parity_under_lockstep():
    with lockstep():
        check_parity(Net, CALLS["args"][1], SIM3, 5)


@pytest.mark.gpu
@TWO_GPUS
@pytest.mark.parametrize("kind", sorted(CALLS))
def test_parity_on_cuda(kind):
    factory, call = CALLS[kind]
    out = check_parity(lambda: factory().cuda(0), call, [0, 1], 7, move=lambda t: t.cuda(0))
    assert all(t.device == torch.device("cuda", 0) for t in flat(out))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_one_gpu_matches_torchs_data_parallel():
    torch.manual_seed(0)
    theirs = torch.nn.Linear(4, 3).cuda()
    ours = nn.Linear(4, 3).cuda()
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(5, 4, device="cuda")
    expected = torch.nn.DataParallel(theirs, device_ids=[0])(x)
    torch.testing.assert_close(DataParallel(ours, device_ids=[0])(x), expected)


def test_functional_data_parallel():
    torch.manual_seed(0)
    model = Net()
    x = torch.randn(5, 3, 6, 6)
    f = torch.randn(5, 6)
    out = data_parallel(model, (x,), SIM3, module_kwargs={"features": f})
    torch.testing.assert_close(out, model(x, f))
    assert device_of(data_parallel(model, x, SIM2, output_device="sim:1")) == "sim:1"


def test_module_must_be_on_device_ids_0():
    with pytest.raises(RuntimeError) as err:
        DataParallel(Net(), device_ids=["sim:1", "sim:0"])(torch.randn(2, 3, 6, 6))
    assert str(err.value) == (
        "module must have its parameters and buffers on device sim:1 (device_ids[0]) "
        "but found one of them on device: sim:0"
    )
    with pytest.raises(RuntimeError, match=r"on device sim:1 \(device_ids\[0\]\)"):
        data_parallel(Net(), torch.randn(2, 3, 6, 6), ["sim:1"])


def test_integer_ids_fall_back_like_torch_without_cuda():
    if torch.cuda.is_available():
        pytest.skip("the fallback is for machines without an accelerator")
    model = Net()
    dp = DataParallel(model, device_ids=[0, 1])
    assert dp.device_ids == [] and dp.module is model
    x = torch.randn(2, 3, 6, 6)
    torch.testing.assert_close(dp(x), model(x))
    with pytest.raises(ValueError, match="cannot mix simulated and real devices"):
        DataParallel(model, device_ids=["sim:0", 1])


def test_one_device_and_no_inputs():
    model = Net()
    x = torch.randn(3, 3, 6, 6)
    torch.testing.assert_close(DataParallel(model, device_ids=["sim:0"])(x), model(x))

    class NoInput(nn.Module):
        def forward(self) -> torch.Tensor:
            return torch.ones(2)

    assert DataParallel(NoInput(), device_ids=SIM2)().tolist() == [1.0, 1.0]


def test_batchnorm_buffers_of_replica_0_are_kept():
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    DataParallel(model, device_ids=SIM2)(torch.randn(8, 3))
    assert model[1].num_batches_tracked.item() == 1  # updated in place by replica 0
    assert model[1].running_mean.abs().sum() > 0


def test_events_tell_the_story(sink):
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU())
    out = DataParallel(model, device_ids=SIM2)(torch.randn(5, 3))
    out.sum().backward()
    kinds = [r[5] for r in sorted(sink.records, key=lambda r: r[0]) if r[5].startswith("dp.")]
    assert kinds == [
        "dp.scatter",
        "dp.replicate",
        "dp.broadcast",
        "dp.parallel_apply",
        "dp.replica",
        "dp.replica",
        "dp.gather",
        "dp.reduce_add",  # backward: the replicas' parameter gradients summed back
    ]
    (scatter,) = sink.of_kind("dp.scatter")
    assert scatter[8]["chunks"] == {"sim:0": [[3, 3]], "sim:1": [[2, 3]]}
    (pa,) = sink.of_kind("dp.parallel_apply")
    replicas = sink.of_kind("dp.replica")
    assert {r[1] for r in replicas} == {pa[0]}
    main = threading.get_ident()
    for r in replicas:
        i = r[8]["index"]
        assert sink.threads[r[2]] == (f"replica {i}", f"sim:{i}")
        forwards = [m for m in sink.of_kind("module.forward") if m[2] == r[2]]
        assert len(forwards) == 3  # Sequential, Linear, ReLU run on the replica's thread
        assert all(r[3] <= m[3] and m[4] <= r[4] for m in forwards)
    dp_forward = [m for m in sink.of_kind("module.forward") if m[2] == main]
    assert [m[8]["cls"] for m in dp_forward] == ["DataParallel"]
