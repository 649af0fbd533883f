"""Fixtures shared by reimpl's tests."""

from __future__ import annotations

from datetime import timedelta

import pytest
import torch.distributed as dist


@pytest.fixture(scope="module")
def world1():
    """A real gloo process group of one rank, in this process."""
    assert not dist.is_initialized()
    dist.init_process_group(
        "gloo", store=dist.HashStore(), rank=0, world_size=1, timeout=timedelta(seconds=10)
    )
    yield dist.group.WORLD
    dist.destroy_process_group()
