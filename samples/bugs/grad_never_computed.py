"""Bug: a layer the optimizer updates but the forward never uses.

``forward`` computes the hidden layer and then feeds the head the embedding
instead: ``hidden`` never gets a gradient, so it never learns, and nothing
fails. ``torchscope record --check`` names it (``grad-never-computed``);
``--fixed`` feeds the head the hidden layer's output.

    torchscope record --check samples/bugs/grad_never_computed.py
"""

from __future__ import annotations

import argparse

import torch

from reimpl import nn
from reimpl.optim import SGD


class Net(nn.Module):
    def __init__(self, fixed: bool) -> None:
        super().__init__()
        self.fixed = fixed
        self.embed = nn.Linear(4, 8)
        self.hidden = nn.Linear(8, 8)
        self.head = nn.Linear(8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.embed(x))
        z = torch.relu(self.hidden(h))
        return self.head(z if self.fixed else h)  # the bug: z is computed, never used


def run(fixed: bool = False, steps: int = 3) -> None:
    """A few training steps; every parameter is given to the optimizer."""
    torch.manual_seed(0)
    model = Net(fixed)
    opt = SGD(model.parameters(), lr=0.1)
    for _ in range(steps):
        opt.zero_grad()
        model(torch.randn(16, 4)).pow(2).mean().backward()
        opt.step()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fixed", action="store_true", help="feed the head the hidden layer")
    run(parser.parse_args().fixed)
