"""SyncBatchNorm over several processes: a small CNN trained on 2+ ranks.

Each rank sees its own slice of a batch; the converted SyncBatchNorm layers
all-gather every rank's statistics in the forward and all-reduce the gradient
sums in the backward, so every rank normalises with the *global* batch
statistics. Gradients of the other parameters are averaged by hand after the
backward (what DistributedDataParallel would do), so the replicas stay equal.

Runs on CPU with gloo (upstream SyncBatchNorm needs a GPU; reimpl's does not)
and with NCCL when there is a CUDA device per rank. Launch it directly (it
spawns the ranks itself) or under torchrun:

    python -m samples.syncbn --world-size 2 --steps 3
    torchrun --nproc-per-node 2 -m samples.syncbn --steps 3
    torchscope record -m samples.syncbn --world-size 2
"""

from __future__ import annotations

import argparse
import os
import socket
import time
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from reimpl import _trace, nn
from reimpl._collectives import collective
from reimpl.optim import SGD


def build_model(classes: int = 10) -> nn.Module:
    """conv -> BatchNorm2d -> relu -> pool -> linear, then BatchNorm made synchronous."""
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(8 * 4 * 4, classes),
    )
    return nn.SyncBatchNorm.convert_sync_batchnorm(model)


def init_distributed(
    rank: int, world_size: int, backend: str, init_method: str, timeout_s: float = 60.0
) -> None:
    """init_process_group, with a message that says which rank failed to show up
    and how long it really waited (gloo's rendezvous can outlast ``timeout``)."""
    started = time.monotonic()
    try:
        dist.init_process_group(
            backend,
            init_method=init_method,
            rank=rank,
            world_size=world_size,
            timeout=timedelta(seconds=timeout_s),
        )
    except (RuntimeError, dist.DistError) as err:
        if "timed out" not in str(err).lower() and "timeout" not in str(err).lower():
            raise
        raise TimeoutError(
            f"rank {rank}: not every one of the {world_size} ranks joined the process group "
            f"at {init_method}: gave up after {time.monotonic() - started:.0f} s "
            f"(timeout {timeout_s:g} s; a rank never started or crashed before "
            f"init_process_group). Original error: {err}"
        ) from err


def average_gradients(model: nn.Module, world_size: int) -> None:
    """What DDP does after the backward: one all-reduce of every gradient, averaged."""
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    flat = torch.cat([g.reshape(-1) for g in grads])
    collective("all_reduce", lambda: dist.all_reduce(flat), [flat], name="grad_all_reduce")
    flat /= world_size
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def rank_batch(step: int, rank: int, batch: int, device: torch.device):
    """This rank's slice of the step's batch: different data on every rank."""
    gen = torch.Generator().manual_seed(1000 * step + rank)
    images = torch.randn(batch, 3, 8, 8, generator=gen)
    labels = torch.randint(0, 10, (batch,), generator=gen)
    images[:, 0] += labels.view(-1, 1, 1) / 5.0
    return images.to(device), labels.to(device)


def train(
    rank: int,
    world_size: int,
    steps: int,
    backend: str,
    init_method: str,
    batch: int = 8,
    timeout_s: float = 60.0,
) -> list[float]:
    """One rank's training loop; returns its losses."""
    _trace.set_process_role("rank", rank)
    init_distributed(rank, world_size, backend, init_method, timeout_s)
    device = torch.device("cpu")
    if backend == "nccl":
        local_rank = int(os.environ.get("LOCAL_RANK", rank))  # torchrun sets it per host
        device = torch.device("cuda", local_rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
    torch.manual_seed(0)  # the same initial weights on every rank
    model = build_model().to(device)
    optimizer = SGD(model.parameters(), lr=0.1, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    losses = []
    for step in range(steps):
        with _trace.span("step", f"step {step}", rank=rank):
            images, labels = rank_batch(step, rank, batch, device)
            optimizer.zero_grad()
            loss = loss_fn(model(images), labels)
            loss.backward()
            average_gradients(model, world_size)
            optimizer.step()
        losses.append(loss.item())
        print(f"rank {rank} step {step} loss {loss.item():.4f}", flush=True)
    # Synchronised statistics mean identical running stats on every rank.
    bn = model[1]
    gathered = [torch.empty_like(bn.running_mean) for _ in range(world_size)]
    collective(
        "all_gather",
        lambda: dist.all_gather(gathered, bn.running_mean),
        [bn.running_mean],
        name="running_stats_check",
    )
    same = all(torch.allclose(g, gathered[0]) for g in gathered)
    print(f"rank {rank} running stats equal across ranks: {same}", flush=True)
    dist.destroy_process_group()
    return losses


def _spawned(rank: int, world_size: int, steps: int, backend: str, port: int) -> None:
    train(rank, world_size, steps, backend, f"tcp://127.0.0.1:{port}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv: list[str] | None = None) -> None:
    """Under torchrun (RANK set) runs this rank; otherwise spawns every rank."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world-size", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--backend", choices=["auto", "gloo", "nccl"], default="auto")
    args = parser.parse_args(argv)
    world_size = int(os.environ.get("WORLD_SIZE", args.world_size))
    backend = args.backend
    if backend == "auto":
        enough_gpus = torch.cuda.is_available() and torch.cuda.device_count() >= world_size
        backend = "nccl" if enough_gpus else "gloo"
    if "RANK" in os.environ:  # torchrun: one process per rank, rendezvous via env
        train(int(os.environ["RANK"]), world_size, args.steps, backend, "env://")
    else:
        mp.spawn(_spawned, args=(world_size, args.steps, backend, _free_port()), nprocs=world_size)


if __name__ == "__main__":
    main()
