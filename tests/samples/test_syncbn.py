"""samples/syncbn.py: trains on 2 gloo ranks and fails clearly when a rank is missing."""

from __future__ import annotations

import re

import pytest
import torch.distributed as dist

from samples import syncbn


@pytest.mark.multiprocess
@pytest.mark.slow
def test_two_gloo_ranks_train_with_synchronised_statistics(capfd):
    syncbn.main(["--world-size", "2", "--steps", "2", "--backend", "gloo"])
    out = capfd.readouterr().out
    for rank in (0, 1):
        for step in (0, 1):
            assert f"rank {rank} step {step} loss" in out
        assert f"rank {rank} running stats equal across ranks: True" in out


def test_a_rank_that_never_starts_gives_a_clear_timeout():
    init_method = f"tcp://127.0.0.1:{syncbn._free_port()}"
    with pytest.raises(TimeoutError) as err:
        syncbn.init_distributed(0, 2, "gloo", init_method, timeout_s=1)
    assert "not every one of the 2 ranks joined the process group" in str(err.value)
    assert "1/2 clients joined" in str(err.value)
    waited = float(re.search(r"gave up after (\d+) s \(timeout 1 s", str(err.value)).group(1))
    assert waited >= 1  # the time it really waited, not the timeout it was given
    assert not dist.is_initialized()
