"""Bug: a hook registered with the deprecated ``register_backward_hook``.

It is attached to the last autograd node of the module's forward, so for a
module of several operations its ``grad_input`` is not the gradient of the
module's inputs. ``torchscope record --check`` names it: deprecated-backward-hook.
On torch itself: ``torchscope record --check --target torch
samples/bugs/deprecated_backward_hook.py --backend torch``.
"""

from __future__ import annotations

import argparse
import warnings
from typing import Any

import torch

from samples.train_step import backend_namespace


def report(module: Any, grad_input: tuple, grad_output: tuple) -> None:
    """What a user meant to log: the gradient flowing into the block."""
    print(f"{type(module).__name__}: grad_input shapes {[tuple(g.shape) for g in grad_input]}")


def main(backend: str = "reimpl") -> None:
    """One backward through a two-operation block with the old-style hook."""
    nn = backend_namespace(backend).nn
    torch.manual_seed(0)
    block = nn.Sequential(nn.Linear(4, 4), nn.ReLU())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch's deprecation notice
        block.register_backward_hook(report)  # the bug: register_full_backward_hook
    block(torch.randn(2, 4, requires_grad=True)).sum().backward()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", choices=["reimpl", "torch"], default="reimpl")
    main(backend=parser.parse_args().backend)
