"""Bug: the learning-rate scheduler steps before the optimizer.

Since PyTorch 1.1 ``scheduler.step()`` belongs after ``optimizer.step()``;
calling it first skips the schedule's first value (torch warns once, easy to
miss in a log). ``torchscope record --check`` names it: scheduler-before-optimizer.
"""

from __future__ import annotations

import torch

from reimpl import _trace, nn
from reimpl.optim import SGD
from reimpl.optim.lr_scheduler import StepLR


def main(steps: int = 3) -> None:
    """A few steps of a linear model, the scheduler stepped first."""
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    optimizer = SGD(model.parameters(), lr=0.1)
    scheduler = StepLR(optimizer, step_size=1, gamma=0.5)
    for i in range(steps):
        with _trace.step(i):
            optimizer.zero_grad()
            model(torch.randn(8, 4)).pow(2).mean().backward()
            scheduler.step()  # the bug: before optimizer.step()
            optimizer.step()


if __name__ == "__main__":
    main()
