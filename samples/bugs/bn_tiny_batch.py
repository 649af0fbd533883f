"""Bug: BatchNorm training on a handful of values per channel.

Batch statistics over 4 values per channel are mostly noise, and the running
statistics drift with them: ``torchscope record --check`` names it
(``bn-tiny-batch``, a warning). With ``--batch 1`` torch raises "Expected more
than 1 value per channel when training" and the finding is an error;
``--batch 32`` comes back clean.

    torchscope record --check samples/bugs/bn_tiny_batch.py [--batch 1]
"""

from __future__ import annotations

import argparse

import torch

from reimpl import nn
from reimpl.optim import SGD


def run(batch: int = 4, steps: int = 3) -> None:
    """A few training steps of a small MLP with BatchNorm on ``batch`` samples."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 1))
    opt = SGD(model.parameters(), lr=0.1)
    for _ in range(steps):
        opt.zero_grad()
        model(torch.randn(batch, 4)).pow(2).mean().backward()
        opt.step()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4, help="samples per batch (default 4)")
    run(parser.parse_args().batch)
