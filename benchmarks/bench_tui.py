"""What the TUI costs on a million spans: first screen, opening nodes, memory.

The trace is generated directly into the store (no recording), with a shape
that stresses the tree: 50 training steps of 100 layers x 99 ops each, and one
span with about half a million direct children. The app runs headless through
``App.run_test`` in a fresh process, so the memory figure is the viewer's own.

    python -m benchmarks.bench_tui
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from statistics import median

import numpy as np

N_STEPS = 50
N_LAYERS = 100
N_OPS = 99
N_WIDE = 499_950  # children of the one huge span: 1,000,001 spans in all
GOALS = {"first_screen_s": 2.0, "open_node_ms": 50.0, "peak_rss_mb": 1024.0}


def _step_block(s: int, base: int, codes: dict[str, int]) -> dict[str, np.ndarray]:
    """One step: the step span, its layers and their ops, in start (pre-)order."""
    per_layer = 1 + N_OPS
    n = 1 + N_LAYERS * per_layer
    layer_len = N_OPS * 10 + 2
    start = np.empty(n, dtype=np.int64)
    dur = np.empty(n, dtype=np.int64)
    kind = np.empty(n, dtype=np.int64)
    name = np.empty(n, dtype=np.int64)
    attr = np.full(n, -1, dtype=np.int32)
    start[0], dur[0] = base, N_LAYERS * layer_len + 2
    kind[0], name[0], attr[0] = codes["step"], codes["step"], N_LAYERS + s
    k = np.arange(N_LAYERS)
    layer_rows = 1 + k * per_layer
    start[layer_rows] = base + 1 + k * layer_len
    dur[layer_rows] = layer_len - 1
    kind[layer_rows] = codes["module.forward"]
    name[layer_rows] = [codes[f"layer{i}"] for i in k]
    attr[layer_rows] = k
    op_rows = (layer_rows[:, None] + 1 + np.arange(N_OPS)[None, :]).ravel()
    start[op_rows] = (start[layer_rows][:, None] + 1 + 10 * np.arange(N_OPS)[None, :]).ravel()
    dur[op_rows] = 8
    kind[op_rows] = codes["optim.update"]
    name[op_rows] = np.tile([codes[f"op{j}"] for j in range(N_OPS)], N_LAYERS)
    return {"start": start, "dur": dur, "kind": kind, "name": name, "attr": attr}


def make_trace(path: str) -> int:
    """Writes the million-span trace; returns its span count."""
    from tracer.file.store import Batch, StoreWriter

    if os.path.exists(path):
        os.remove(path)
    w = StoreWriter(path)
    w.set_meta({"clock": "perf_counter_ns"})
    part = w.add_process(1, 0, "main", None, "[]", "bench", 0)
    texts = ["step", "module.forward", "optim.update", "data.fetch", "batch", "bench.func"]
    texts += [f"layer{i}" for i in range(N_LAYERS)] + [f"op{j}" for j in range(N_OPS)]
    codes = w.string_ids(texts)
    blocks, base = [], 1_000
    for s in range(N_STEPS):
        block = _step_block(s, base, codes)
        blocks.append(block)
        base = int(block["start"][0] + block["dur"][0] + 10)
    wide = N_WIDE + 1
    start = base + np.concatenate([[0], 1 + 10 * np.arange(N_WIDE)])
    dur = np.concatenate([[10 * N_WIDE + 2], np.full(N_WIDE, 8)])
    blocks.append(
        {
            "start": start,
            "dur": dur,
            "kind": np.full(wide, codes["data.fetch"]),
            "name": np.concatenate([[codes["data.fetch"]], np.full(N_WIDE, codes["batch"])]),
            "attr": np.full(wide, -1, dtype=np.int32),
        }
    )
    cols = {k: np.concatenate([b[k] for b in blocks]) for k in blocks[0]}
    n = len(cols["start"])
    ids = np.arange(1, n + 1, dtype=np.int64)  # pre-order = start order
    close = np.lexsort((-cols["start"], cols["start"] + cols["dur"]))
    attrs = [{"path": f"layer{i}", "cls": "Linear"} for i in range(N_LAYERS)]
    attrs += [{"index": s} for s in range(N_STEPS)]
    chunk = 100_000
    for lo in range(0, n, chunk):
        rows = close[lo : lo + chunk]
        batch = Batch(
            id_base=int(ids[rows].min()),
            ids=ids[rows],
            threads=np.zeros(len(rows), dtype=np.int64),
            starts=cols["start"][rows],
            durs=cols["dur"][rows],
            kinds=cols["kind"][rows],
            names=cols["name"][rows],
            funcs=np.full(len(rows), codes["bench.func"]),
            links=None,
            attr_index=cols["attr"][rows],
            attrs=attrs,
        )
        w.write(part, batch, [(0, 1, "MainThread", None)] if lo == 0 else [], [])
    w.update_process(part, status="ok", end_ns=base + int(dur[0]))
    w.close()
    return n


def _cpu() -> float:
    """CPU seconds of this process so far (all threads): stable on a busy machine."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _measure(path: str) -> dict[str, float]:
    process_start = time.perf_counter()
    from tui.app import TorchscopeApp
    from tui.screens.main import MainScreen
    from tui.widgets.calltree import CallTree

    out: dict[str, float] = {"imports_s": time.perf_counter() - process_start}
    started, cpu0 = time.perf_counter(), _cpu()
    app = TorchscopeApp(path)
    async with app.run_test(size=(120, 40)) as pilot:
        while not isinstance(app.screen, MainScreen) or not app.screen.query(CallTree):
            await pilot.pause(0.005)
        tree = app.screen.query_one("#calltree", CallTree)
        while not tree.root.children:
            await pilot.pause(0.005)
        await pilot.pause()
        out["first_screen_s"] = time.perf_counter() - started
        out["first_screen_cpu_s"] = _cpu() - cpu0
        out["from_process_start_s"] = time.perf_counter() - process_start
        # Steady state: hidden views mount lazily after the first paint.
        await app.workers.wait_for_complete()
        await pilot.pause(0.5)
        thread_node = tree.root.children[0].children[0]
        t = tree.model.trace
        spans = [c for c in thread_node.children if c.data and c.data.kind == "span"]
        for label, nodes in (("step", spans[:5]), ("wide", spans[-1:])):
            opens, selects = [], []
            for node in nodes:
                began, cpu = time.perf_counter(), _cpu()
                tree.ensure_loaded(node)
                node.expand()
                built = time.perf_counter()
                await pilot.pause()  # layout and repaint are part of opening
                opened, cpu_open = time.perf_counter(), _cpu()
                tree.move_cursor(node)
                await pilot.pause()  # details, source and timeline follow the cursor
                opens.append((built - began, opened - began, cpu_open - cpu))
                selects.append(time.perf_counter() - opened)
            build, wall, cpu_ms = (1e3 * median(x) for x in zip(*opens))
            out[f"build_{label}_ms"], out[f"open_{label}_ms"] = build, wall
            out[f"open_{label}_cpu_ms"] = cpu_ms
            out[f"select_{label}_ms"] = 1e3 * median(selects)
            out[f"open_{label}_children"] = len(t.children(nodes[0].data.row))
            out[f"open_{label}_nodes"] = len(nodes[0].children)
        moves = []
        for _ in range(10):
            began = time.perf_counter()
            await pilot.press("down")
            await pilot.pause()
            moves.append(time.perf_counter() - began)
        out["move_cursor_ms"] = 1e3 * median(moves)
        out["spans"] = t.n
    out["peak_rss_mb"] = _peak_rss_mb()
    return out


def _peak_rss_mb() -> float:
    """This process's own peak RSS.

    VmHWM, not ru_maxrss: Linux carries a parent's peak into ru_maxrss across
    fork + exec, so a viewer started from a big benchmark runner would report
    the runner's peak.
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(path: str) -> dict[str, float]:
    """Runs the app on ``path`` in a fresh process and returns its numbers."""
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_tui", "--child", path],
        capture_output=True,
        text=True,
        check=True,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run() -> str:
    """The markdown section for benchmarks/RESULTS.md."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "million.tsdb")
        began = time.perf_counter()
        n = make_trace(path)
        made = time.perf_counter() - began
        r = measure(path)
    rows = [
        ("imports (textual, numpy, numba via tracer)", f"{r['imports_s']:.2f} s", "-"),
        (
            "first interactive screen: load + index + tree + paint (wall / CPU)",
            f"{r['first_screen_s']:.2f} s / {r['first_screen_cpu_s']:.2f} s",
            "< 2 s",
        ),
        ("same, from process start", f"{r['from_process_start_s']:.2f} s", "-"),
    ]
    for label, what in (("step", "a step"), ("wide", "the huge span")):
        rows.append(
            (
                f"open {what} ({r[f'open_{label}_children']:,} children, "
                f"{r[f'open_{label}_nodes']:,} nodes made): build / with layout and "
                "repaint (CPU)",
                f"{r[f'build_{label}_ms']:.1f} ms / {r[f'open_{label}_ms']:.1f} ms "
                f"({r[f'open_{label}_cpu_ms']:.0f} ms)",
                "< 50 ms",
            )
        )
        rows.append(
            (
                f"then select it (details, source, timeline of {what})",
                f"{r[f'select_{label}_ms']:.1f} ms",
                "-",
            )
        )
    rows += [
        ("move the cursor down (median of 10)", f"{r['move_cursor_ms']:.1f} ms", "-"),
        ("peak memory of the viewer process (RSS)", f"{r['peak_rss_mb']:.0f} MB", "< 1 GB"),
    ]
    lines = [
        "### TUI on a million spans",
        "",
        f"A generated trace of {n:,} spans (written in {made:.1f} s): {N_STEPS} steps of "
        f"{N_LAYERS} layers x {N_OPS} ops, and one span with {N_WIDE:,} children. "
        "Headless (`App.run_test`, 120x40), in a fresh process. Wall times depend on "
        f"what else runs (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores "
        "here); CPU times less so.",
        "",
        "| measure | result | goal |",
        "|---|---|---|",
        *[f"| {a} | {b} | {c} |" for a, b, c in rows],
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        print(json.dumps(asyncio.run(_measure(sys.argv[2]))))
    else:
        print(run())
