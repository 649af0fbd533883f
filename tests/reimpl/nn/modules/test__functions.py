"""The SyncBatchNorm autograd function, in one process and across real gloo ranks.

The oracle is torch's BatchNorm on the concatenation of every rank's batch:
synchronised statistics must make N ranks behave like one big batch.
"""

from __future__ import annotations

import os
import socket
import time
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from sinks import ListSink

from reimpl import _trace
from reimpl.nn.modules._functions import SyncBatchNorm as SyncBatchNormFunction

EPS = 1e-5
CHANNELS = 3


def _tensors(shape, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=dtype) * 2 + 1
    w = torch.randn(shape[1], generator=g, dtype=dtype)
    b = torch.randn(shape[1], generator=g, dtype=dtype)
    return x.requires_grad_(), w.requires_grad_(), b.requires_grad_()


def test_gradcheck_world_size_1(world1):
    x, w, b = _tensors((4, CHANNELS, 5))

    def fn(x, w, b):
        return SyncBatchNormFunction.apply(x, w, b, None, None, EPS, 0.1, world1, 1)

    assert torch.autograd.gradcheck(fn, (x, w, b))


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_world_size_1_equals_batch_norm(world1, dtype, layout):
    x, w, b = _tensors((4, CHANNELS, 5, 6), dtype)
    x = x.detach().contiguous(memory_format=layout).requires_grad_()
    rm, rv = torch.zeros(CHANNELS, dtype=dtype), torch.ones(CHANNELS, dtype=dtype)
    y = SyncBatchNormFunction.apply(x, w, b, rm, rv, EPS, 0.1, world1, 1)
    dy = torch.randn_like(y)
    grads = torch.autograd.grad(y, (x, w, b), dy)

    rm2, rv2 = torch.zeros(CHANNELS, dtype=dtype), torch.ones(CHANNELS, dtype=dtype)
    y2 = F.batch_norm(x, rm2, rv2, w, b, True, 0.1, EPS)
    grads2 = torch.autograd.grad(y2, (x, w, b), dy)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else {}
    torch.testing.assert_close(y, y2, **tol)
    for got, want in zip(grads, grads2):
        torch.testing.assert_close(got, want, **tol)
    torch.testing.assert_close((rm, rv), (rm2, rv2), **tol)
    assert y.is_contiguous(memory_format=layout)


def test_one_value_per_channel_is_refused_on_one_rank(world1):
    x, w, b = _tensors((1, CHANNELS))
    with pytest.raises(ValueError) as ours:
        SyncBatchNormFunction.apply(x, w, b, None, None, EPS, 0.1, world1, 1)
    with pytest.raises(ValueError) as theirs:  # upstream checks before any CUDA-only op
        torch.nn.modules._functions.SyncBatchNorm.apply(x, w, b, None, None, EPS, 0.1, world1, 1)
    assert str(ours.value) == str(theirs.value)
    assert str(ours.value) == (
        "Expected more than 1 value per channel when training, got input size 1"
    )


def test_events_per_kernel_and_collective(world1):
    x, w, b = _tensors((4, CHANNELS, 5))
    sink = ListSink()
    _trace.attach(sink)
    try:
        y = SyncBatchNormFunction.apply(x, w, b, None, None, EPS, 0.1, world1, 1)
        y.sum().backward()
    finally:
        _trace.detach()
    kinds = [r[5] for r in sink.records]
    assert kinds == [
        "bn.stats",
        "collective.all_gather",
        "bn.gather_stats",
        "bn.elemt",
        "bn.backward_reduce",
        "collective.all_reduce",
        "bn.backward_elemt",
    ]
    gather = sink.records[1]
    attrs = gather[8]
    assert attrs["bytes"] == (2 * CHANNELS + 1) * 8
    assert attrs["world_size"] == 1 and attrs["backend"] == "gloo"
    assert attrs["group"] == "world" and attrs["op"] == "all_gather"
    assert attrs["sizes"] == [[2 * CHANNELS + 1]] and attrs["dtype"] == "float64"
    assert 0 <= attrs["wait_ns"] <= gather[4] - gather[3]
    # the group's sequence number counts on across collectives of the group
    assert sink.records[5][8]["seq"] == attrs["seq"] + 1
    assert sink.records[5][8]["bytes"] == 2 * CHANNELS * 8
    assert sink.records[0][8]["shape"] == [4, CHANNELS, 5]
    prefix = "reimpl.nn.modules._functions.SyncBatchNorm."
    assert [r[7].removeprefix(prefix) for r in sink.records] == ["forward"] * 4 + ["backward"] * 3


def test_module_falls_back_to_batch_norm_on_one_rank_and_in_eval(world1):
    from reimpl.nn import SyncBatchNorm

    layer, reference = SyncBatchNorm(CHANNELS), torch.nn.BatchNorm1d(CHANNELS)
    x = torch.randn(6, CHANNELS, 4)
    sink = ListSink()
    _trace.attach(sink)
    try:
        for mode in ("train", "eval"):
            getattr(layer, mode)()
            getattr(reference, mode)()
            torch.testing.assert_close(layer(x), reference(x))
    finally:
        _trace.detach()
    # world size 1 needs no sync (upstream's rule), so no kernel or collective ran;
    # bn.forward is the evidence instant `check` reads, not a kernel
    ran = [r[5] for r in sink.records if r[5].startswith(("bn.", "collective."))]
    # bn.forward once: the training forward (eval uses running stats); and one
    # bn.running_stats per state: the training update, the eval read
    assert ran == ["bn.forward", "bn.running_stats", "bn.running_stats"]


# --------------------------------------------------------------------------
# Real processes: spawn, a free port on 127.0.0.1, results through files.
# --------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _global_batch(step: int, sizes: list[int]):
    """Every rank's inputs and output grads for one step, identical everywhere."""
    g = torch.Generator().manual_seed(100 + step)
    x = torch.randn(sum(sizes), CHANNELS, 3, 4, generator=g, dtype=torch.float64) * 3 + step
    dy = torch.randn(x.shape, generator=g, dtype=torch.float64)
    return x, dy


def _affine():
    g = torch.Generator().manual_seed(7)
    return torch.rand(CHANNELS, generator=g, dtype=torch.float64) + 0.5, torch.randn(
        CHANNELS, generator=g, dtype=torch.float64
    )


def _train_slices(bn, rank, sizes, steps):
    """A few steps of ``bn`` on this rank's slice of each global batch."""
    weight, bias = _affine()
    with torch.no_grad():
        bn.weight.copy_(weight)
        bn.bias.copy_(bias)
    start = sum(sizes[:rank])
    results = []
    for step in range(steps):
        x_all, dy_all = _global_batch(step, sizes)
        x = x_all[start : start + sizes[rank]].clone().requires_grad_()
        y = bn(x)
        y.backward(dy_all[start : start + sizes[rank]])
        zeros = torch.zeros(CHANNELS, dtype=torch.float64)
        results.append(
            {
                "y": y.detach(),
                # An empty rank's input grad stays None, as upstream leaves it.
                "dx": x.grad if x.grad is not None else torch.zeros_like(x),
                "dw": bn.weight.grad if bn.weight.grad is not None else zeros,
                "db": bn.bias.grad if bn.bias.grad is not None else zeros,
            }
        )
        bn.weight.grad = bn.bias.grad = None
    bn.eval()  # no sync in eval: each rank normalises with the (shared) running stats
    x_all, _ = _global_batch(steps, sizes)
    y_eval = bn(x_all[start : start + sizes[rank]]).detach()
    buffers = {k: v.clone() for k, v in bn.named_buffers()}
    return {"steps": results, "buffers": buffers, "eval": y_eval}


# Both scenarios run in one set of 3 processes (each process costs seconds of
# imports): world size 3 over the default group, then world size 2 over a
# subgroup of ranks 0 and 1 (which also exercises ``process_group=``).
SCENARIOS = {
    "world3-empty-rank": {"sizes": [4, 0, 2], "momentum": None, "ranks": [0, 1, 2]},
    "world2-unequal": {"sizes": [3, 5], "momentum": 0.1, "ranks": [0, 1]},
}
STEPS = 2


def _syncbn_rank(rank, world_size, port, out_dir):
    """One rank: converted BatchNorm2d layers trained on its slices, per scenario."""
    from reimpl.nn.modules.batchnorm import BatchNorm2d, SyncBatchNorm

    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=world_size,
        timeout=timedelta(seconds=30),
    )
    for name, scenario in SCENARIOS.items():
        group = dist.new_group(scenario["ranks"])  # every rank must call new_group
        if rank not in scenario["ranks"]:
            continue
        bn = BatchNorm2d(CHANNELS, momentum=scenario["momentum"], dtype=torch.float64)
        bn = SyncBatchNorm.convert_sync_batchnorm(bn, process_group=group)
        result = _train_slices(bn, rank, scenario["sizes"], STEPS)
        torch.save(result, Path(out_dir) / f"{name}-rank{rank}.pt")
    _silent_peer(rank, Path(out_dir))


def _silent_peer(rank, out_dir):
    """Last: in a 2-rank group with a 2 s timeout, rank 1 never joins the collective."""
    from reimpl.nn.modules.batchnorm import SyncBatchNorm

    group = dist.new_group([0, 1], timeout=timedelta(seconds=2))
    done = out_dir / "done"
    if rank == 0:
        t0 = time.monotonic()
        try:
            SyncBatchNorm(CHANNELS, process_group=group)(torch.randn(4, CHANNELS))
            message = "no error"
        except RuntimeError as err:
            message = str(err)
        (out_dir / "error.txt").write_text(f"{time.monotonic() - t0:.2f}\n{message}")
        done.touch()
    else:
        deadline = time.monotonic() + 30
        while not done.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    # A group that timed out cannot be torn down cleanly; skip the teardown.
    os._exit(0)


def _reference(sizes, momentum, steps):
    """torch's own BatchNorm2d on the concatenated batch."""
    bn = torch.nn.BatchNorm2d(CHANNELS, momentum=momentum, dtype=torch.float64)
    weight, bias = _affine()
    with torch.no_grad():
        bn.weight.copy_(weight)
        bn.bias.copy_(bias)
    results = []
    for step in range(steps):
        x_all, dy_all = _global_batch(step, sizes)
        x = x_all.clone().requires_grad_()
        y = bn(x)
        y.backward(dy_all)
        results.append({"y": y.detach(), "dx": x.grad, "dw": bn.weight.grad, "db": bn.bias.grad})
        bn.weight.grad = bn.bias.grad = None
    bn.eval()
    return results, dict(bn.named_buffers()), bn(_global_batch(steps, sizes)[0]).detach()


@pytest.fixture(scope="module")
def scenario_results(tmp_path_factory):
    """Runs every scenario once, in 3 real processes; results come back as files."""
    out = tmp_path_factory.mktemp("syncbn")
    mp.spawn(_syncbn_rank, args=(3, _free_port(), str(out)), nprocs=3, join=True)
    return out


@pytest.mark.multiprocess
@pytest.mark.slow
@pytest.mark.parametrize("name", SCENARIOS)
def test_ranks_equal_batch_norm_on_the_global_batch(scenario_results, name):
    sizes, momentum = SCENARIOS[name]["sizes"], SCENARIOS[name]["momentum"]
    ranks = [torch.load(scenario_results / f"{name}-rank{r}.pt") for r in range(len(sizes))]
    expected, expected_buffers, expected_eval = _reference(sizes, momentum, STEPS)
    for step in range(STEPS):
        got = [r["steps"][step] for r in ranks]
        want = expected[step]
        torch.testing.assert_close(torch.cat([g["y"] for g in got]), want["y"])
        torch.testing.assert_close(torch.cat([g["dx"] for g in got]), want["dx"])
        # Parameter grads stay local (DDP would all-reduce them): they sum up.
        torch.testing.assert_close(sum(g["dw"] for g in got), want["dw"])
        torch.testing.assert_close(sum(g["db"] for g in got), want["db"])
    torch.testing.assert_close(torch.cat([r["eval"] for r in ranks]), expected_eval)
    for r in ranks:  # every rank ends with the global running statistics
        assert r["buffers"].keys() == expected_buffers.keys()
        for key, value in expected_buffers.items():
            torch.testing.assert_close(r["buffers"][key], value, msg=key)


@pytest.mark.multiprocess
@pytest.mark.slow
def test_a_rank_that_never_joins_times_out_with_a_clear_error(scenario_results):
    elapsed, message = (scenario_results / "error.txt").read_text().split("\n", 1)
    assert float(elapsed) < 15
    assert "SyncBatchNorm all_gather timed out on rank 0 of 2" in message
    assert "a peer rank never joined this collective" in message
