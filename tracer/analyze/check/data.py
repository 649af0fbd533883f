"""Rules about the DataLoader: workers that draw the same random numbers.

Evidence: each worker's ``data.worker`` ``init`` span carries its ``seed``
(torch's ``base_seed + worker_id``) and digests of its global random states
after ``worker_init_fn``: ``py_rng`` (``random``), ``np_rng`` (NumPy's global
generator), ``torch_rng`` (reimpl/utils/data/_utils/worker.py). The process
table gives each worker's index and parent.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

import numpy as np

from tracer.analyze.check import Finding, rows_of_kinds, rule
from tracer.file.trace import Trace

GENERATORS = {"np_rng": "NumPy", "py_rng": "Python", "torch_rng": "torch"}


def _iterations(trace: Trace) -> dict[tuple[int, int], dict[int, int]]:
    """(parent pid, base seed) -> worker index -> its ``init`` span: the workers
    one DataLoader iterator started share a parent and a base seed."""
    workers = {p.part: p for p in trace.processes if p.role == "worker"}
    rows = rows_of_kinds(trace, ("data.worker",))
    rows = rows[trace.name[rows] == trace.code("init")] if len(rows) else rows
    out: dict[tuple[int, int], dict[int, int]] = defaultdict(dict)
    for row in rows[np.argsort(trace.start_ns[rows], kind="stable")].tolist():
        proc = workers.get(int(trace.part[row]))
        seed = trace.attrs(row).get("seed")
        if proc is None or proc.role_index is None or not isinstance(seed, int):
            continue
        out[(proc.ppid or 0, seed - proc.role_index)].setdefault(proc.role_index, row)
    return out


@rule(
    "worker-seed-duplicate",
    "warning",
    "DataLoader workers of one iterator started with the same NumPy, Python or torch random state",
)
def worker_seed_duplicate(trace: Trace) -> Iterator[Finding]:
    """torch seeds ``random``, torch and NumPy differently in every worker; a
    ``worker_init_fn`` that reseeds with a constant (or a dataset copied with
    its own seeded state) undoes that, and the workers apply the same "random"
    augmentations. Compared: the digests each worker recorded after its
    ``worker_init_fn``, between workers of one iterator. One finding per main
    process; ``iterations`` counts the iterators (epochs) where it happened."""
    found: dict[int, Finding] = {}
    for (ppid, _), workers in _iterations(trace).items():
        if len(workers) < 2:
            continue
        duplicated: dict[str, list[int]] = {}
        for key in GENERATORS:
            by_digest: dict[str, list[int]] = defaultdict(list)
            for index, row in sorted(workers.items()):
                digest = trace.attrs(row).get(key)
                if digest is not None:
                    by_digest[digest].append(index)
            same = [i for group in by_digest.values() if len(group) > 1 for i in group]
            if same:
                duplicated[key] = sorted(same)
        if not duplicated:
            continue
        if ppid in found:
            found[ppid].details["iterations"] += 1
            continue
        found[ppid] = _finding(trace, workers, duplicated)
    yield from found.values()


def _finding(trace: Trace, workers: dict[int, int], duplicated: dict[str, list[int]]) -> Finding:
    names = [GENERATORS[k] for k in duplicated]
    same = sorted({i for indices in duplicated.values() for i in indices})
    return Finding(
        rule="worker-seed-duplicate",
        severity="warning",
        message=(
            f"DataLoader workers {', '.join(map(str, same))} of one iterator started with the "
            f"same {' and '.join(names)} random state: they draw the same random numbers, so "
            'their samples get the same "random" augmentations (a worker_init_fn that seeds '
            "every worker with the same value undoes torch's per-worker seeds)"
        ),
        evidence=[workers[i] for i in same],
        fix=(
            "Seed each worker from its own seed: in worker_init_fn, seed = "
            "torch.initial_seed() % 2**32; np.random.seed(seed); random.seed(seed) (or do "
            "not reseed at all: torch already seeds each worker differently)."
        ),
        details={
            "generators": names,
            "workers": same,
            "by_generator": {GENERATORS[k]: v for k, v in duplicated.items()},
            "iterations": 1,
        },
    )
