"""worker-seed-duplicate, on real DataLoaders with worker processes."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

import tracer
from reimpl.utils.data import DataLoader
from samples.bugs import worker_seed_duplicate as sample
from tracer.analyze.check import run_rules

pytestmark = pytest.mark.multiprocess


def _epochs(path: str, loader, epochs: int = 1) -> tracer.Trace:
    """Records ``epochs`` passes over ``loader`` (each a new iterator and new workers)."""
    with tracer.record(path):
        for _ in range(epochs):
            list(loader)
    return tracer.load(path)


def _sample_loader(fixed: bool) -> DataLoader:
    init = sample.own_seed if fixed else sample.same_seed
    return DataLoader(sample.Jittered(), batch_size=1, num_workers=2, worker_init_fn=init)


def test_constant_worker_seeds_are_named(tmp_path):
    t = _epochs(str(tmp_path / "same.tsdb"), _sample_loader(fixed=False))
    (finding,) = run_rules(t)
    assert finding.rule == "worker-seed-duplicate" and finding.severity == "warning"
    assert finding.details["generators"] == ["NumPy", "Python"]  # torch's stay apart
    assert finding.details["workers"] == [0, 1] and finding.details["iterations"] == 1
    assert len(finding.evidence) == 2
    for row in finding.evidence:
        assert t.kind_of(row) == "data.worker" and t.name_of(row) == "init"
        assert t.processes[[p.part for p in t.processes].index(t.part[row])].role == "worker"


def test_the_workers_really_drew_the_same_numbers():
    batches = sample.run()
    assert torch.equal(batches[0], batches[1])  # worker 0's first sample, worker 1's
    assert not torch.equal(*sample.run(fixed=True)[:2])


def test_per_worker_seeds_are_clean(tmp_path):
    assert run_rules(_epochs(str(tmp_path / "own.tsdb"), _sample_loader(fixed=True))) == []


def test_torchs_own_seeding_is_clean_over_two_epochs(tmp_path):
    loader = DataLoader(sample.Jittered(), batch_size=2, num_workers=2)
    t = _epochs(str(tmp_path / "default.tsdb"), loader, epochs=2)
    inits = [r for r in range(t.n) if t.kind_of(r) == "data.worker" and t.name_of(r) == "init"]
    assert len(inits) == 4  # two iterators of two workers each
    assert all({"np_rng", "py_rng", "torch_rng"} <= set(t.attrs(r)) for r in inits)
    assert run_rules(t, ["worker-seed-duplicate"]) == []


def _torch_only(worker_id: int) -> None:
    torch.manual_seed(0)


def test_every_epoch_counts_and_torch_alone_is_named(tmp_path):
    loader = DataLoader(sample.Jittered(), batch_size=2, num_workers=2, worker_init_fn=_torch_only)
    t = _epochs(str(tmp_path / "epochs.tsdb"), loader, epochs=2)
    (finding,) = run_rules(t, ["worker-seed-duplicate"])
    assert finding.details["generators"] == ["torch"] and finding.details["iterations"] == 2


def test_the_fingerprint_leaves_the_random_states_alone():
    """Recording digests must not draw: the main process's states are unchanged."""
    from reimpl.utils.data._utils.worker import _rng_fingerprints

    before = (random.getstate(), np.random.get_state()[1].copy(), torch.get_rng_state())
    first = _rng_fingerprints()
    assert _rng_fingerprints() == first
    assert random.getstate() == before[0] and (np.random.get_state()[1] == before[1]).all()
    assert torch.equal(torch.get_rng_state(), before[2])
