"""Bug: evaluating under ``torch.no_grad()`` with the model still in train mode.

``no_grad`` turns autograd off, nothing else: BatchNorm keeps normalising with
each batch's statistics and moves its running statistics towards the
evaluation data. ``torchscope record --check`` names it (``bn-train-in-eval``);
``--fixed`` calls ``model.eval()`` first and comes back clean.

    torchscope record --check samples/bugs/bn_train_in_eval.py
"""

from __future__ import annotations

import argparse

import torch

from reimpl import nn
from reimpl.optim import SGD


def run(fixed: bool = False) -> torch.Tensor:
    """One training step, then an evaluation; returns the running mean after it."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 1))
    opt = SGD(model.parameters(), lr=0.1)
    opt.zero_grad()
    model(torch.randn(16, 4)).pow(2).mean().backward()
    opt.step()
    if fixed:
        model.eval()
    with torch.no_grad():  # the bug: "evaluation", but BatchNorm is still training
        model(torch.randn(16, 4) + 3.0)
    return model[1].running_mean


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fixed", action="store_true", help="call model.eval() first")
    print("running mean after evaluation:", run(parser.parse_args().fixed))
