"""Runs the optim tests on one intra-op thread.

torch's fused CPU kernels hand even 12-element tensors to the OpenMP pool; on a
busy machine waking that pool costs milliseconds per call, far more than the
math. One thread keeps the parity tests fast and their timing steady.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
