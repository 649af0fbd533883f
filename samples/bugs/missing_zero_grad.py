"""Bug: no ``zero_grad`` in the loop, so every step also applies the old gradients.

Gradients accumulate in ``.grad`` until something clears them; a loop that
never calls ``optimizer.zero_grad()`` steps with the sum of every gradient so
far. ``torchscope record --check`` names it: missing-zero-grad.
"""

from __future__ import annotations

import torch

from reimpl import _trace, nn
from reimpl.optim import SGD


def main(steps: int = 3) -> None:
    """A few steps of a linear model that never clears its gradients."""
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    optimizer = SGD(model.parameters(), lr=0.1)
    for i in range(steps):
        with _trace.step(i):
            model(torch.randn(8, 4)).pow(2).mean().backward()  # the bug: no zero_grad
            optimizer.step()


if __name__ == "__main__":
    main()
