"""Bug: a ``worker_init_fn`` that seeds every DataLoader worker alike.

"For reproducibility" each worker calls ``np.random.seed(0)`` and
``random.seed(0)``: torch had given every worker its own NumPy and Python
seeds, and this throws them away, so the workers apply the same "random"
augmentations to different samples. ``torchscope record --check`` names it
(``worker-seed-duplicate``); ``--fixed`` derives each worker's seeds from
``torch.initial_seed()``, which differs per worker.

    torchscope record --check samples/bugs/worker_seed_duplicate.py
"""

from __future__ import annotations

import argparse
import random

import numpy as np
import torch

from reimpl.utils.data import DataLoader, Dataset


class Jittered(Dataset):
    """Zeros plus a random shift per sample: the shift is the "augmentation"."""

    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.tensor([np.random.uniform(), random.random()])


def same_seed(worker_id: int) -> None:
    np.random.seed(0)  # the bug: the same seed in every worker
    random.seed(0)


def own_seed(worker_id: int) -> None:
    seed = torch.initial_seed() % 2**32  # torch's per-worker seed
    np.random.seed(seed)
    random.seed(seed)


def run(fixed: bool = False) -> list[torch.Tensor]:
    """One epoch with 2 workers, one sample per batch; returns the batches."""
    loader = DataLoader(
        Jittered(), batch_size=1, num_workers=2, worker_init_fn=own_seed if fixed else same_seed
    )
    return list(loader)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fixed", action="store_true", help="seed each worker differently")
    batches = run(parser.parse_args().fixed)
    print("worker 0 and worker 1 drew the same values:", bool((batches[0] == batches[1]).all()))
