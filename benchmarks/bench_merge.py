"""Merging a large distributed run: 64 rank parts of 100,000 spans each.

The parts are generated directly into the store (no recording), one file per
rank as if every rank had its own host, each with its ``rank`` and ``clock``
snapshots and a step shape: a ``step`` span holding 98 ``module.forward``
spans and one ``collective.all_reduce`` numbered in the world group (1,000
collectives per rank, so 64,000 arrivals to match). Merging, loading the
merged trace and the TUI's first screen on it each run in a fresh process,
so each peak-memory figure is that process's own.

    python -m benchmarks.bench_merge
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from benchmarks.memory import peak_rss_mb

N_RANKS = 64
N_SPANS = 100_000  # per rank
PER_STEP = 100  # step + 98 module spans + 1 collective
BLOCK_STEPS = 100  # steps per flushed block: 10,000 spans
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _block(rank: int, step0: int, n_steps: int, codes: dict[str, int]) -> dict:
    """``n_steps`` steps in close order: each step's children, then the step."""
    k = np.arange(n_steps * PER_STEP)
    step, pos = np.divmod(k, PER_STEP)
    step = step + step0
    base = step * 10_000 + rank * 7  # ranks arrive a little apart
    is_step = pos == PER_STEP - 1  # the step closes last
    starts = np.where(is_step, base, base + 1 + 90 * pos)
    durs = np.where(is_step, 9_500, 80)
    ids = np.where(is_step, step * PER_STEP + 1, step * PER_STEP + 2 + pos)
    kinds = np.full(len(k), codes["module.forward"])
    kinds[is_step] = codes["step"]
    coll = pos == PER_STEP - 2
    kinds[coll] = codes["collective.all_reduce"]
    attr_index = np.full(len(k), -1, dtype=np.int32)
    attr_index[coll] = np.arange(int(coll.sum()), dtype=np.int32)
    attrs = [
        {"group": "world", "seq": int(s), "op": "all_reduce", "sizes": [[1024]],
         "dtype": "float32", "bytes": 4096, "world_size": N_RANKS, "wait_ns": 80}
        for s in step[coll].tolist()
    ]  # fmt: skip
    return {"ids": ids, "starts": starts, "durs": durs, "kinds": kinds,
            "attr_index": attr_index, "attrs": attrs}  # fmt: skip


def make_part(path: str, rank: int, clocks: list[dict] | None = None) -> None:
    """One rank's part file (``clocks``: its clock estimates, one by default)."""
    from tracer.file.store import Batch, StoreWriter

    w = StoreWriter(path, run_id="bench-merge")
    part = w.add_process(1000 + rank, 1, "rank", rank, "[]", f"host{rank}", 0)
    codes = w.string_ids(["step", "module.forward", "collective.all_reduce", "layer", "f"])
    info = {"rank": rank, "world_size": N_RANKS, "host": f"host{rank}", "backend": "gloo"}
    clocks = clocks or [{"offset_ns": 0, "error_ns": 20_000, "rtt_ns": 40_000, "rounds": 8}]
    snaps = [(0, "rank", str(rank), info)] + [(0, "clock", "start", c) for c in clocks]
    w.write(part, None, [(0, 1, "MainThread", None)], snaps)
    for step0 in range(0, N_SPANS // PER_STEP, BLOCK_STEPS):
        b = _block(rank, step0, BLOCK_STEPS, codes)
        n = len(b["ids"])
        batch = Batch(
            id_base=int(b["ids"].min()),
            ids=b["ids"],
            threads=np.zeros(n, np.int64),
            starts=b["starts"],
            durs=b["durs"],
            kinds=b["kinds"],
            names=np.full(n, codes["layer"]),
            funcs=np.full(n, codes["f"]),
            links=None,
            attr_index=b["attr_index"],
            attrs=b["attrs"],
        )
        w.write(part, batch, [], [])
    w.update_process(part, end_ns=N_SPANS * 100, status="ok")
    w.close()


def _child(what: str, args: list[str]) -> dict:
    """Runs one measured step in a fresh process."""
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_merge", f"--{what}", *args],
        capture_output=True, text=True, check=True, cwd=ROOT,
    )  # fmt: skip
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _do_merge(out: str, parts: list[str]) -> dict:
    from tracer.distributed.merge import merge

    began = time.perf_counter()
    result = merge(out, parts)
    return {"s": time.perf_counter() - began, "spans": result.spans, "rss": peak_rss_mb(),
            "points": result.report["collectives"]["complete"]}  # fmt: skip


def _do_load(path: str) -> dict:
    import tracer

    began = time.perf_counter()
    t = tracer.load(path)
    t.depth  # noqa: B018  what every view needs first
    return {"s": time.perf_counter() - began, "spans": t.n, "rss": peak_rss_mb()}


def _do_tui(path: str) -> dict:
    import asyncio

    async def first_screen() -> float:
        from benchmarks.bench_tui import first_screen as shown
        from tui.app import TorchscopeApp

        began = time.perf_counter()
        app = TorchscopeApp(path)
        async with app.run_test(size=(120, 40)) as pilot:
            await shown(app, pilot)
            return time.perf_counter() - began

    return {"s": asyncio.run(first_screen()), "rss": peak_rss_mb()}


def run() -> str:
    """The markdown section for benchmarks/RESULTS.md."""
    with tempfile.TemporaryDirectory() as tmp:
        parts = [os.path.join(tmp, f"rank{r}.tsdb") for r in range(N_RANKS)]
        began = time.perf_counter()
        for rank, path in enumerate(parts):
            make_part(path, rank)
        made = time.perf_counter() - began
        size = sum(os.path.getsize(p) for p in parts)
        out = os.path.join(tmp, "merged.tsdb")
        m = _child("merge", [out, *parts])
        load = _child("load", [out])
        tui = _child("tui", [out])
        merged_size = os.path.getsize(out)
    avg = os.getloadavg()
    rate = m["spans"] / m["s"] / 1e6
    return "\n".join(
        [
            "## Merging a distributed run (`benchmarks/bench_merge.py`)",
            "",
            f"{N_RANKS} generated rank parts of {N_SPANS:,} spans each "
            f"({N_RANKS * N_SPANS:,} spans, {size / 2**20:.0f} MiB of part files, made in "
            f"{made:.1f} s), one collective per 100 spans; each step in a fresh process. "
            f"Load average at the end {avg[0]:.2f} / {avg[1]:.2f} / {avg[2]:.2f} (2 cores).",
            "",
            "| step | wall | peak RSS |",
            "| --- | --- | --- |",
            f"| `merge` ({m['points']:,} collectives matched across {N_RANKS} ranks; "
            f"{rate:.2f} M spans/s) | {m['s']:.1f} s | {m['rss']:.0f} MiB |",
            f"| load the merged trace ({load['spans']:,} spans, {merged_size / 2**20:.0f} MiB) "
            f"| {load['s']:.1f} s | {load['rss']:.0f} MiB |",
            f"| TUI: first interactive screen on it | {tui['s']:.1f} s | {tui['rss']:.0f} MiB |",
            "",
            f"Merging takes {m['rss'] / load['rss']:.2f} x the memory of loading the result: "
            "one block at a time plus the table of collective arrivals, flat as spans grow; "
            "loading and the TUI hold every span (docs/distributed.md, 'At thousands of ranks').",
        ]
    )


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1].startswith("--"):
        what, args = sys.argv[1][2:], sys.argv[2:]
        if what == "merge":
            print(json.dumps(_do_merge(args[0], args[1:])))
        elif what == "load":
            print(json.dumps(_do_load(args[0])))
        else:
            print(json.dumps(_do_tui(args[0])))
    else:
        print(run())
