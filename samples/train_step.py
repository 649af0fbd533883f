"""The default demo: a few training steps of a small CNN, built from reimpl.

Synthetic images (no download) loaded by a DataLoader with two worker
processes, Conv -> BatchNorm -> ReLU blocks, SGD with
momentum and a StepLR schedule, then an SWA phase (AveragedModel, SWALR,
update_bn). The code is plain PyTorch; only the namespace it builds from
differs, so ``backend="torch"`` runs its twin on the real thing, and the tests
check that both give the same numbers. Run it directly, or under the recorder:

    torchscope record samples/train_step.py --steps 4
    torchscope record --target torch samples/train_step.py --backend torch --steps 4
    torchscope demo

The second line is the torch twin: the same program on ``torch.nn``,
``torch.optim`` and ``torch.utils.data``, recorded through torch's own hooks;
both traces have the same module, hook, optimizer, scheduler and DataLoader
spans step by step (tests/samples/test_train_step_torch.py).
"""

from __future__ import annotations

import argparse
from collections import OrderedDict
from types import SimpleNamespace

import torch

from reimpl import _trace
from reimpl.utils.data import Dataset


def backend_namespace(backend: str) -> SimpleNamespace:
    """nn, optim, lr_scheduler, swa_utils and utils.data from reimpl or from torch."""
    if backend == "reimpl":
        from reimpl import nn, optim
        from reimpl.optim import lr_scheduler, swa_utils
        from reimpl.utils import data
    elif backend == "torch":
        from torch import nn, optim
        from torch.optim import lr_scheduler, swa_utils
        from torch.utils import data
    else:
        raise ValueError(f"backend must be 'reimpl' or 'torch', not {backend!r}")
    return SimpleNamespace(
        nn=nn, optim=optim, lr_scheduler=lr_scheduler, swa_utils=swa_utils, data=data
    )


def small_cnn(nn, classes: int = 10):
    """Two conv blocks and a classifier: enough to show every kind of span."""
    features = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
    )
    classifier = nn.Sequential(nn.Flatten(), nn.Linear(16, classes))
    return nn.Sequential(OrderedDict(features=features, classifier=classifier))


class SyntheticImages(Dataset):
    """Random images whose class is readable from the mean of one channel."""

    def __init__(self, length: int, size: int = 16, seed: int = 0) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.images = torch.randn(length, 3, size, size, generator=gen)
        self.labels = torch.randint(0, 10, (length,), generator=gen)
        self.images[:, 0] += self.labels.view(-1, 1, 1) / 5.0

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[index], self.labels[index]


def synthetic_batches(data, steps: int, batch: int = 16, seed: int = 0, num_workers: int = 2):
    """``steps`` shuffled batches, loaded by ``num_workers`` worker processes."""
    return data.DataLoader(
        SyntheticImages(steps * batch, seed=seed),
        batch_size=batch,
        shuffle=True,
        num_workers=num_workers,
        generator=torch.Generator().manual_seed(seed),  # the same batches on every run
    )


def main(steps: int = 4, swa_steps: int = 2, seed: int = 0, backend: str = "reimpl") -> dict:
    """Trains, then averages; returns the losses and both models for checking."""
    ns = backend_namespace(backend)
    # the user's own step annotation: a no-op unless recording, the same for both
    # backends, so the reimpl trace and its --target torch twin align step by step
    step = _trace.step
    torch.manual_seed(seed)
    model = small_cnn(ns.nn)
    loss_fn = ns.nn.CrossEntropyLoss()
    optimizer = ns.optim.SGD(model.named_parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    scheduler = ns.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
    losses = []
    for index, (images, labels) in enumerate(synthetic_batches(ns.data, steps, seed=seed)):
        with step(index):
            optimizer.zero_grad()
            loss = loss_fn(model(images), labels)
            loss.backward()
            optimizer.step()
            scheduler.step()
        losses.append(loss.item())

    swa_model = ns.swa_utils.AveragedModel(model)
    swa_scheduler = ns.swa_utils.SWALR(optimizer, swa_lr=0.05, anneal_epochs=1)
    batches = list(synthetic_batches(ns.data, swa_steps, seed=seed + 1))
    for index, (images, labels) in enumerate(batches, start=steps):
        with step(index, name="swa step"):
            optimizer.zero_grad()
            loss = loss_fn(model(images), labels)
            loss.backward()
            optimizer.step()
            swa_model.update_parameters(model)
            swa_scheduler.step()
        losses.append(loss.item())
    ns.swa_utils.update_bn([images for images, _ in batches], swa_model)
    return {"losses": losses, "model": model, "swa_model": swa_model}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--swa-steps", type=int, default=2)
    parser.add_argument("--backend", choices=["reimpl", "torch"], default="reimpl")
    args = parser.parse_args()
    result = main(args.steps, args.swa_steps, backend=args.backend)
    print("losses:", " ".join(f"{x:.4f}" for x in result["losses"]))
