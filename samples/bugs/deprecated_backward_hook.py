"""Bug: a hook registered with the deprecated ``register_backward_hook``.

It is attached to the last autograd node of the module's forward, so for a
module of several operations its ``grad_input`` is not the gradient of the
module's inputs. ``torchscope record --check`` names it: deprecated-backward-hook.
"""

from __future__ import annotations

import warnings

import torch

from reimpl import nn


def report(module: nn.Module, grad_input: tuple, grad_output: tuple) -> None:
    """What a user meant to log: the gradient flowing into the block."""
    print(f"{type(module).__name__}: grad_input shapes {[tuple(g.shape) for g in grad_input]}")


def main() -> None:
    """One backward through a two-operation block with the old-style hook."""
    torch.manual_seed(0)
    block = nn.Sequential(nn.Linear(4, 4), nn.ReLU())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch's deprecation notice
        block.register_backward_hook(report)  # the bug: register_full_backward_hook
    block(torch.randn(2, 4, requires_grad=True)).sum().backward()


if __name__ == "__main__":
    main()
