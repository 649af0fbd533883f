"""Small models written once and built on both libraries (torch.nn and reimpl.nn).

``make(nn)`` returns the same classes subclassing ``nn.Module``; the layers use
``torch.nn.functional``, so the module machinery is the only thing that differs.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import torch
import torch.nn.functional as F

import reimpl.nn


def make(nn: Any) -> SimpleNamespace:
    """The twin classes for one library."""

    class Lin(nn.Module):
        def __init__(self, i: int, o: int, bias: bool = True) -> None:
            super().__init__()
            self.weight = nn.Parameter(torch.randn(o, i) * 0.3)
            if bias:
                self.bias = nn.Parameter(torch.randn(o) * 0.1)
            else:
                self.register_parameter("bias", None)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return F.linear(x, self.weight, self.bias)

        def extra_repr(self) -> str:
            return f"in={self.weight.shape[1]}, out={self.weight.shape[0]}"

    class Act(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.tanh(x)

    class Stat(nn.Module):
        """Buffers: persistent running mean, non-persistent scratch, a counter."""

        def __init__(self, n: int) -> None:
            super().__init__()
            self.register_buffer("running", torch.zeros(n))
            self.register_buffer("scratch", torch.ones(n), persistent=False)
            self.register_buffer("count", torch.tensor(0, dtype=torch.long))
            self.register_buffer("empty", None)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if self.training:
                with torch.no_grad():
                    self.running.mul_(0.9).add_(x.mean(0) * 0.1)
                    self.count.add_(1)
            return x - self.running

    class Block(nn.Module):
        def __init__(self, n: int) -> None:
            super().__init__()
            self.lin = Lin(n, n)
            self.act = Act()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.act(self.lin(x))

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.first = Lin(3, 4)
            self.block = Block(4)
            self.stat = Stat(4)
            self.shared = Lin(4, 4, bias=False)
            self.head = Lin(4, 2)
            self.nothing = None

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.stat(self.block(self.first(x)))
            x = self.shared(self.shared(x))  # one module called twice
            return self.head(x)

    class Tied(nn.Module):
        """The same module under two names and the same parameter twice."""

        def __init__(self) -> None:
            super().__init__()
            self.a = Lin(2, 2)
            self.b = self.a
            self.c = Lin(2, 2)
            self.c.weight = self.a.weight

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.c(self.b(x))

    class KW(nn.Module):
        """Takes keyword arguments and returns a tuple."""

        def forward(self, x: torch.Tensor, scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
            return x * scale, x + scale

    class Failing(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise ValueError("forward failed")

    return SimpleNamespace(
        Lin=Lin, Act=Act, Stat=Stat, Block=Block, Net=Net, Tied=Tied, KW=KW, Failing=Failing, nn=nn
    )


T = make(torch.nn)
R = make(reimpl.nn)


def pair_of(name: str, *args: Any, seed: int = 0) -> tuple[Any, Any]:
    """``(torch model, reimpl model)`` of class ``name`` with equal weights."""
    from parity import pair

    return pair(lambda: getattr(T, name)(*args), lambda: getattr(R, name)(*args), seed=seed)
