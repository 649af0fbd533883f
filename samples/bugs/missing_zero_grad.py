"""Bug: no ``zero_grad`` in the loop, so every step also applies the old gradients.

Gradients accumulate in ``.grad`` until something clears them; a loop that
never calls ``optimizer.zero_grad()`` steps with the sum of every gradient so
far. ``torchscope record --check`` names it: missing-zero-grad. The same
program on torch itself: ``torchscope record --check --target torch
samples/bugs/missing_zero_grad.py --backend torch``.
"""

from __future__ import annotations

import argparse

import torch

from reimpl import _trace
from samples.train_step import backend_namespace


def main(steps: int = 3, backend: str = "reimpl") -> None:
    """A few steps of a linear model that never clears its gradients."""
    ns = backend_namespace(backend)
    torch.manual_seed(0)
    model = ns.nn.Linear(4, 1)
    optimizer = ns.optim.SGD(model.parameters(), lr=0.1)
    for i in range(steps):
        with _trace.step(i):
            model(torch.randn(8, 4)).pow(2).mean().backward()  # the bug: no zero_grad
            optimizer.step()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", choices=["reimpl", "torch"], default="reimpl")
    main(backend=parser.parse_args().backend)
