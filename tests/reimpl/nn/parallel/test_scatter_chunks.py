"""How DataParallel splits a batch: the chunks torch's scatter makes, for every batch size.

Upstream's ``Scatter`` ends in ``torch._C._scatter``, which splits with
``tensor.chunk(len(devices), dim)`` (torch/csrc/cuda/comm.cpp) and needs CUDA;
on simulated devices the oracle is ``torch.chunk`` itself. ``chunk`` and
``tensor_split`` differ on uneven sizes (7 over 3: 3+3+1 against 3+2+2) and on
short batches (2 over 3: two chunks against three, one empty), so every batch
size from 1 to 13 over 1 to 5 devices is checked, along both dims.
"""

from __future__ import annotations

import threading

import pytest
import torch

from reimpl import nn
from reimpl.devices import as_plain, device_of
from reimpl.nn.parallel import DataParallel, comm
from reimpl.nn.parallel.scatter_gather import scatter, scatter_kwargs


def sims(k: int) -> list[str]:
    return [f"sim:{i}" for i in range(k)]


@pytest.mark.parametrize("dim", [0, 1])
@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
def test_scatter_splits_like_torch_chunk(k: int, dim: int) -> None:
    for n in range(1, 14):
        x = torch.arange(2.0 * n).reshape((n, 2) if dim == 0 else (2, n))
        expected = torch.chunk(x, k, dim)
        for got in (scatter(x, sims(k), dim), comm.scatter(x, sims(k), dim=dim)):
            assert [tuple(c.shape) for c in got] == [tuple(c.shape) for c in expected], (n, k)
            assert all(torch.equal(as_plain(g), e) for g, e in zip(got, expected))
            assert [device_of(c) for c in got] == ["cpu", *sims(k)[1 : len(expected)]]


def test_scatter_kwargs_splits_keyword_tensors_the_same_way() -> None:
    for n in range(1, 10):
        x = torch.arange(float(n))
        args, kwargs = scatter_kwargs((x,), {"w": x * 2}, sims(3))
        sizes = [len(c) for c in torch.chunk(x, 3)]
        assert [a[0].shape[0] for a in args] == sizes
        assert [kw["w"].shape[0] for kw in kwargs] == sizes


class Recorder(nn.Module):
    """Notes the batch each replica gets, on which device."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(2, 2)
        self.seen: list[tuple[str, int]] = []
        self.lock = threading.Lock()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with self.lock:
            self.seen.append((device_of(x), x.shape[0]))
        return self.lin(x)


@pytest.mark.parametrize("k", [2, 3, 4])
def test_data_parallel_replicas_get_torch_chunk_sizes(k: int) -> None:
    for n in range(1, 12):
        torch.manual_seed(0)
        model = Recorder()
        x = torch.randn(n, 2)
        out = DataParallel(model, device_ids=sims(k))(x)
        sizes = [len(c) for c in torch.chunk(x, k)]
        assert sorted(model.seen) == [
            ("cpu" if i == 0 else f"sim:{i}", s) for i, s in enumerate(sizes)
        ], (n, k)
        torch.testing.assert_close(out, model.lin(x))


class Transposed(Recorder):
    """Takes the batch along dim 1: (features, batch) in, (outputs, batch) out."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with self.lock:
            self.seen.append((device_of(x), x.shape[1]))
        return self.lin(x.t()).t()


def test_data_parallel_splits_and_gathers_along_its_dim() -> None:
    torch.manual_seed(0)
    model = Transposed()
    x = torch.randn(2, 7, requires_grad=True)
    out = DataParallel(model, device_ids=sims(3), dim=1)(x)
    assert sorted(model.seen) == [("cpu", 3), ("sim:1", 3), ("sim:2", 1)]
    assert out.shape == (2, 7)
    torch.testing.assert_close(out, model.lin(x.t()).t())
    out.sum().backward()
    torch.testing.assert_close(x.grad, model.lin.weight.sum(0, keepdim=True).t().expand(2, 7))
