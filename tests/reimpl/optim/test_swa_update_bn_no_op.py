"""``update_bn`` on a model without BatchNorm does nothing at all, as in torch:
the loader is never read, no forward runs, the training flag and the weights
stay (the original test of this only checked that it did not raise)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch

import reimpl.nn
import reimpl.optim


class CountingLoader:
    """An iterable of batches that counts how many were taken."""

    def __init__(self, batches: int) -> None:
        self.batches = [
            torch.randn(3, 2, generator=torch.Generator().manual_seed(i)) for i in range(batches)
        ]
        self.taken = 0

    def __iter__(self) -> Iterator[torch.Tensor]:
        for b in self.batches:
            self.taken += 1
            yield b


def run(lib: Any, with_bn: bool, training: bool) -> tuple:
    """update_bn on ``lib``'s model; what it read, ran and changed."""
    torch.manual_seed(0)
    layers = [lib.nn.Linear(2, 2)] + ([lib.nn.BatchNorm1d(2)] if with_bn else [])
    model = lib.nn.Sequential(*layers).train(training)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    forwards: list[bool] = []
    model[0].register_forward_hook(lambda m, args, out: forwards.append(m.training))
    loader = CountingLoader(3)
    lib.optim.swa_utils.update_bn(loader, model)
    after = model.state_dict()
    changed = sorted(k for k in before if not torch.equal(before[k], after[k]))
    return loader.taken, forwards, model.training, changed


@pytest.mark.parametrize("training", [False, True])
def test_update_bn_without_batchnorm_is_a_no_op(training: bool) -> None:
    ours = run(reimpl, with_bn=False, training=training)
    assert ours == run(torch, with_bn=False, training=training)
    assert ours == (0, [], training, [])


@pytest.mark.parametrize("training", [False, True])
def test_update_bn_with_batchnorm_reads_every_batch_in_train_mode(training: bool) -> None:
    ours = run(reimpl, with_bn=True, training=training)
    assert ours == run(torch, with_bn=True, training=training)
    assert ours == (
        3,
        [True] * 3,
        training,
        ["1.num_batches_tracked", "1.running_mean", "1.running_var"],
    )
