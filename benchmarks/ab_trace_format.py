"""Write and load of a million spans: this tree against another revision, side by side.

Checks out REV in a temporary git worktree and runs the same measurement
(``bench_tracer``'s million spans: columns -> one block, then loads) in fresh
interpreters, alternating the two trees, so both see the same machine load.
Not part of ``benchmarks.run`` (it needs the git history).

    python -m benchmarks.ab_trace_format REV [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

MEASURE = r"""
import json, os, statistics, sys, tempfile, time
sys.path.insert(0, sys.argv[1])
os.chdir(sys.argv[1])
from benchmarks import bench_tracer as b
import tracer
from reimpl import _trace
from tracer.recording.recorder import Recorder

records = b._records(b.N_SPANS)
writes = []
for k in range(3):  # three files: the write's median
    path = os.path.join(tempfile.mkdtemp(), "m.tsdb")
    rec = Recorder(path, flush_interval=3600).start()
    _trace.detach()
    batch = rec._columns(records)
    t0 = time.perf_counter()
    rec._store.write(rec._part, batch, rec._threads_dirty, [])
    writes.append(time.perf_counter() - t0)
    rec._threads_dirty = []
    rec.stop()
write = statistics.median(writes)
tracer.load(path)  # the first load imports numba
loads = []
for _ in range(7):
    t0 = time.perf_counter()
    assert tracer.load(path).n == b.N_SPANS
    loads.append(time.perf_counter() - t0)
print(json.dumps({"write": write, "load": statistics.median(loads)}))
"""


def measure(tree: str) -> dict[str, float]:
    """One fresh interpreter measuring the tree at ``tree``."""
    out = subprocess.run(
        [sys.executable, "-c", MEASURE, tree], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    """Prints a markdown table: median write and load of each tree, and the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rev", help="the revision to compare with (e.g. a commit before a change)")
    parser.add_argument("--rounds", type=int, default=5)
    ns = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        other = os.path.join(tmp, "other")
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "-f", "--detach", other,
                        ns.rev], check=True, capture_output=True)  # fmt: skip
        try:
            runs: dict[str, list[dict[str, float]]] = {ns.rev: [], "this tree": []}
            for _ in range(ns.rounds):
                runs[ns.rev].append(measure(other))
                runs["this tree"].append(measure(str(ROOT)))
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", other],
                           check=False, capture_output=True)  # fmt: skip
    med = {
        name: {k: statistics.median(r[k] for r in rs) for k in ("write", "load")}
        for name, rs in runs.items()
    }
    base, new = med[ns.rev], med["this tree"]
    print("| tree | write 1M spans | load 1M spans |")
    print("| --- | ---: | ---: |")
    for name, m in med.items():
        print(f"| {name} | {m['write']:.3f} s | {m['load']:.3f} s |")
    print(f"| ratio | {new['write'] / base['write']:.2f} | {new['load'] / base['load']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
