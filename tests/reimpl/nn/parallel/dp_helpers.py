"""Shared by the DataParallel tests: small models, a list sink, a parity check.

``check_parity`` runs one forward and backward through the plain module and
through ``DataParallel`` over the given devices, and compares outputs,
parameter gradients and input gradients: data parallelism must not change
the numbers (up to summation order).
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Sequence
from typing import Any

import torch

from reimpl import nn
from reimpl.nn.parallel import DataParallel

Pair = namedtuple("Pair", ["image", "features"])


class Net(nn.Module):
    """conv -> relu -> mean over space, plus a linear of optional features."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.lin = nn.Linear(6, 4)

    def forward(
        self, image: torch.Tensor, features: torch.Tensor | None = None, scale: Any = None
    ) -> torch.Tensor:
        h = self.conv(image).relu().mean((2, 3))
        if features is not None:
            h = h + self.lin(features)
        if scale is not None:
            h = h * scale
        return h


class TupleNet(Net):
    """Takes a tuple (or namedtuple), returns a tuple."""

    def forward(self, pair: Any) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        h = super().forward(pair[0], pair[1])
        return h, h.sum(1)


class DictNet(Net):
    """Takes a dict, returns a dict holding a namedtuple."""

    def forward(self, batch: dict) -> dict:  # type: ignore[override]
        h = super().forward(batch["image"], batch["features"])
        return {"out": h, "parts": Pair(h[:, :2], h[:, 2:])}


def inputs(batch: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """An image batch and a feature batch, both requiring grad."""
    g = torch.Generator().manual_seed(seed)
    image = torch.randn(batch, 3, 6, 6, generator=g, requires_grad=True)
    features = torch.randn(batch, 6, generator=g, requires_grad=True)
    return image, features


def flat(out: Any) -> list[torch.Tensor]:
    """Every tensor in a nested output, in order."""
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        return [t for v in out.values() for t in flat(v)]
    return [t for v in out for t in flat(v)]


def loss_of(out: Any) -> torch.Tensor:
    return sum((t.square().sum() for t in flat(out)), torch.zeros(()))


def check_parity(
    factory: Callable[[], nn.Module],
    call: Callable[[nn.Module, torch.Tensor, torch.Tensor], Any],
    devices: Sequence[Any],
    batch: int,
    *,
    move: Callable[[torch.Tensor], torch.Tensor] = lambda t: t,
) -> Any:
    """Plain module vs DataParallel: same outputs, parameter and input grads."""
    torch.manual_seed(0)
    model = factory()
    image, features = (move(t.detach()).requires_grad_() for t in inputs(batch))
    ref = call(model, image, features)
    loss_of(ref).backward()
    ref_grads = [_clone(p.grad) for p in model.parameters()]
    ref_inputs = [_clone(image.grad), _clone(features.grad)]
    model.zero_grad()
    image.grad = features.grad = None

    out = call(DataParallel(model, device_ids=list(devices)), image, features)
    loss_of(out).backward()
    assert type(out) is type(ref)
    for ours, theirs in zip(flat(out), flat(ref), strict=True):
        assert type(ours) is torch.Tensor  # gathered on device_ids[0]: no tag
        torch.testing.assert_close(ours, theirs)
    for p, g in zip(model.parameters(), ref_grads, strict=True):
        assert type(p.grad) is torch.Tensor
        # An unused layer gets zeros, as in torch: Broadcast's backward
        # materialises the missing gradients.
        torch.testing.assert_close(p.grad, torch.zeros_like(p) if g is None else g)
    torch.testing.assert_close(image.grad, ref_inputs[0])
    torch.testing.assert_close(features.grad, ref_inputs[1])
    return out


def _clone(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.clone()
