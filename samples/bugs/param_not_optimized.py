"""Bug: parameter groups that forget a submodule.

The optimizer gets a group for the backbone (small learning rate) and one for
the head, and nothing for the neck: the neck gets gradients at every step and
never changes. ``torchscope record --check`` names its parameters
(``param-not-optimized``); ``--fixed`` gives the neck to the head's group.

    torchscope record --check samples/bugs/param_not_optimized.py
"""

from __future__ import annotations

import argparse

import torch

from reimpl import nn
from reimpl.optim import SGD


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Linear(4, 8), nn.ReLU())
        self.neck = nn.Sequential(nn.Linear(8, 8), nn.ReLU())
        self.head = nn.Linear(8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.neck(self.backbone(x)))


def run(fixed: bool = False, steps: int = 3) -> None:
    """A few training steps with two parameter groups."""
    torch.manual_seed(0)
    model = Net()
    head = list(model.head.parameters()) + (list(model.neck.parameters()) if fixed else [])
    opt = SGD(
        [{"params": model.backbone.parameters(), "lr": 0.01}, {"params": head}],  # no neck
        lr=0.1,
    )
    for _ in range(steps):
        opt.zero_grad()
        model(torch.randn(16, 4)).pow(2).mean().backward()
        opt.step()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fixed", action="store_true", help="give the neck to the optimizer")
    run(parser.parse_args().fixed)
