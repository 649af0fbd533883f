"""What the TUI costs on a million spans: first screen, opening, selecting, keys, memory.

The trace is generated directly into the store (no recording), with a shape
that stresses the tree: 50 training steps of 100 layers x 99 ops each, and one
span with about half a million direct children. The app runs headless through
``App.run_test`` in a fresh process, so the memory figure is the viewer's own.
Keys are timed from the driver to a painted screen whose panes all show the
cursor's span: single presses, a run at key-repeat speed, and switching views.

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
from collections.abc import Callable
from statistics import median
from typing import TYPE_CHECKING

import numpy as np

from benchmarks.memory import peak_rss_mb

if TYPE_CHECKING:  # textual is imported by the child, where its import time is measured
    from textual.app import App
    from textual.pilot import Pilot
    from textual.screen import Screen

    from tui.views.calls import CallsView
    from tui.widgets.calltree import CallTree

N_STEPS = 50
N_LAYERS = 100
N_OPS = 99
N_WIDE = 499_950  # children of the one huge span: 1,000,001 spans in all
N_PROCESSES = 3  # fresh viewers measured; each figure is the median of theirs
N_MOVES = 50  # single cursor moves measured
N_RUN = 30  # keys in the held-key run
REPEAT_HZ = 30  # a terminal's key repeat
N_SWITCH_ROUNDS = 4  # rounds through every view; the first one visits each for the first time


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


def _p95(values: list[float]) -> float:
    return float(np.percentile(values, 95))


def _busy(screen: Screen) -> bool:
    """Whether a widget on screen still holds messages, or a refresh not yet
    handed to the screen (it hands it over when its queue runs empty)."""
    if screen.message_queue_size:
        return True
    return any(
        w.message_queue_size or w._repaint_required or w._layout_required or w._scroll_required
        for w in screen._compositor.visible_widgets
        if w is not screen
    )


async def _settle(pilot: Pilot, done: Callable[[], bool]) -> None:
    """Waits until ``done()`` holds, then lays out and paints as the screen's timer would.

    Polls every millisecond instead of ``pilot.pause()``: Pilot sleeps at least
    20 ms per wait (until the process looks idle), a floor that would hide what
    a keypress itself costs. Nor ``Pilot._wait_for_screen()``: it posts a
    callback to every widget and waits for each, about 5 ms of CPU per call
    that no terminal key costs; polling the widgets' queues and refresh flags
    tells the same (every refresh request has become a dirty region).
    """
    deadline = time.perf_counter() + 10
    screen = pilot.app.screen
    while not done() or _busy(screen):
        if time.perf_counter() > deadline:
            raise TimeoutError("the panes never showed the cursor's span")
        await asyncio.sleep(0.001)
    screen._on_timer_update()  # layout and repaint, now (nothing when already painted)


def _key(app: App, key: str) -> None:
    """Sends a key the way a terminal's does (through the driver), without waiting."""
    from textual import events

    app._driver.send_message(events.Key(key, None))


async def _timed(
    pilot: Pilot, act: Callable[[], object], done: Callable[[], bool]
) -> tuple[float, float]:
    """Wall and CPU seconds from ``act()`` until ``done()`` holds and the screen is painted."""
    wall, cpu = time.perf_counter(), _cpu()
    act()
    await _settle(pilot, done)
    return time.perf_counter() - wall, _cpu() - cpu


async def _measure(path: str) -> dict[str, float]:
    process_start = time.perf_counter()
    from tui.app import TorchscopeApp
    from tui.views.calls import CallsView

    out: dict[str, float] = {"imports_s": time.perf_counter() - process_start}
    started, cpu0 = time.perf_counter(), _cpu()
    app = TorchscopeApp(path)
    async with app.run_test(size=(120, 40)) as pilot:
        tree = await first_screen(app, pilot)
        out["first_screen_s"] = time.perf_counter() - started
        out["first_screen_cpu_s"] = _cpu() - cpu0
        out["from_process_start_s"] = time.perf_counter() - process_start
        # Steady state: hidden views mount lazily after the first paint.
        await app.workers.wait_for_complete()
        await pilot.pause(0.5)
        view = app.screen.query_one(CallsView)
        t = tree.model.trace
        out.update(await _open_and_select(pilot, tree, view))
        out.update(await _moves(pilot, tree, view))
        out.update(await _key_run(pilot, tree, view))
        out.update(await _switches(pilot))
        out.update(await _pilot_floor(pilot, tree))
        out["spans"] = t.n
    out["peak_rss_mb"] = peak_rss_mb()
    return out


async def first_screen(app: App, pilot: Pilot) -> CallTree:
    """Waits until the call tree of the main screen has its first rows; returns it."""
    from tui.screens.main import MainScreen
    from tui.widgets.calltree import CallTree

    while not isinstance(app.screen, MainScreen) or not app.screen.query(CallTree):
        await pilot.pause(0.005)
    tree = app.screen.query_one("#calltree", CallTree)
    while not tree.root.children:
        await pilot.pause(0.005)
    await pilot.pause()
    return tree


def _shown(tree: CallTree, view: CallsView, line: int | None = None) -> Callable[[], bool]:
    """Whether the cursor is on ``line`` and every pane shows its span, nothing deferred."""
    return lambda: (line is None or tree.cursor_line == line) and view.shows(tree.cursor_row)


async def _open_and_select(pilot: Pilot, tree: CallTree, view: CallsView) -> dict[str, float]:
    """Opens five steps, then the huge span; selects each after opening it."""
    out: dict[str, float] = {}
    thread_node = tree.root.children[0].children[0]
    spans = [c for c in thread_node.children if c.data and c.data.kind == "span"]
    for label, nodes in (("step", spans[:5]), ("wide", spans[-1:])):
        opens, selects = [], []
        for node in nodes:
            began, cpu = time.perf_counter(), _cpu()
            tree.ensure_loaded(node)
            node.expand()
            built = time.perf_counter()
            await _settle(pilot, lambda: True)  # layout and repaint are part of opening
            opens.append((built - began, time.perf_counter() - began, _cpu() - cpu))
            await asyncio.sleep(0.2)  # a person looks before moving on
            selects.append(
                await _timed(pilot, lambda n=node: tree.move_cursor(n), _shown(tree, view))
            )
            await asyncio.sleep(0.2)
        build, wall, cpu_ms = (1e3 * median(x) for x in zip(*opens))
        out[f"build_{label}_ms"], out[f"open_{label}_ms"] = build, wall
        out[f"open_{label}_cpu_ms"] = cpu_ms
        out[f"select_{label}_ms"], out[f"select_{label}_cpu_ms"] = (
            1e3 * median(x) for x in zip(*selects)
        )
        out[f"open_{label}_children"] = len(tree.model.trace.children(nodes[0].data.row))
        out[f"open_{label}_nodes"] = len(nodes[0].children)
    return out


async def _moves(pilot: Pilot, tree: CallTree, view: CallsView) -> dict[str, float]:
    """Fifty single moves down the huge span's children, a pause after each."""
    walls, cpus = [], []
    for _ in range(N_MOVES):
        shown = _shown(tree, view, tree.cursor_line + 1)
        wall, cpu = await _timed(pilot, lambda: _key(pilot.app, "down"), shown)
        walls.append(wall)
        cpus.append(cpu)
        await asyncio.sleep(0.1)  # single presses, not a run
    return {
        "move_ms": 1e3 * median(walls),
        "move_p95_ms": 1e3 * _p95(walls),
        "move_cpu_ms": 1e3 * median(cpus),
        "move_p95_cpu_ms": 1e3 * _p95(cpus),
    }


async def _key_run(pilot: Pilot, tree: CallTree, view: CallsView) -> dict[str, float]:
    """Thirty presses of down at key-repeat speed; then until every pane is right."""
    shown = _shown(tree, view, tree.cursor_line + N_RUN)
    cpu = _cpu()
    began = time.perf_counter()
    for k in range(N_RUN):
        _key(pilot.app, "down")
        # the next key comes on the repeat clock, however long this one took
        await asyncio.sleep(max(0.0, began + (k + 1) / REPEAT_HZ - time.perf_counter()))
    last = began + (N_RUN - 1) / REPEAT_HZ
    await _settle(pilot, shown)
    ended = time.perf_counter()
    return {
        "run_settle_ms": 1e3 * (ended - last),
        "run_cpu_ms": 1e3 * (_cpu() - cpu),
        "run_wall_ms": 1e3 * (ended - began),
    }


def _view_shown(app: App, view_id: str) -> Callable[[], bool]:
    """Whether ``view_id``'s tab is open, its view on screen and the focus in it
    (or nowhere, for a view with nothing to focus)."""
    from textual.widgets import TabbedContent

    def shown() -> bool:
        screen = app.screen
        if screen.query_one(TabbedContent).active != view_id:
            return False
        view = screen.query_one(f"#{view_id}-view")
        if view not in screen._compositor.visible_widgets:
            return False
        focused = screen.focused
        return focused is None or view in focused.ancestors_with_self

    return shown


async def _switches(pilot: Pilot) -> dict[str, float]:
    """Each view's key in tab order and back to Calls, ``N_SWITCH_ROUNDS`` times:
    the first round visits each view for the first time, the others revisit."""
    from tui.views import VIEWS

    order = [*VIEWS[1:], VIEWS[0]]
    first: list[tuple[float, float]] = []
    again: list[tuple[float, float]] = []
    to_calls: list[tuple[float, float]] = []  # the heaviest view: tree, panes, timeline
    for round_ in range(N_SWITCH_ROUNDS):
        for view in order:
            key = str(VIEWS.index(view) + 1)
            done = _view_shown(pilot.app, view.ID)
            timed = await _timed(pilot, lambda k=key: _key(pilot.app, k), done)
            (first if round_ == 0 else again).append(timed)
            if round_ and view is VIEWS[0]:
                to_calls.append(timed)
            await asyncio.sleep(0.2)  # a person looks before moving on
            await pilot.app.workers.wait_for_complete()  # Stats fills its tables once
            await _settle(pilot, lambda: True)
    out = {}
    for label, times in (("switch_first", first), ("switch", again), ("switch_calls", to_calls)):
        walls, cpus = zip(*times)
        out[f"{label}_ms"], out[f"{label}_cpu_ms"] = 1e3 * median(walls), 1e3 * median(cpus)
        out[f"{label}_max_ms"], out[f"{label}_max_cpu_ms"] = 1e3 * max(walls), 1e3 * max(cpus)
    return out


async def _pilot_floor(pilot: Pilot, tree: CallTree) -> dict[str, float]:
    """``pilot.press`` + ``pilot.pause``, the way this benchmark measured a move before."""
    moves, idle = [], []
    for key, into in (("down", moves), ("f12", idle)):  # f12: bound to nothing
        for _ in range(10):
            began = time.perf_counter()
            await pilot.press(key)
            await pilot.pause()
            into.append(time.perf_counter() - began)
    return {"pilot_move_ms": 1e3 * median(moves), "pilot_idle_ms": 1e3 * median(idle)}


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


def _ms(r: dict[str, float], key: str) -> str:
    """``key`` in ms, wall then CPU."""
    return f"{r[key + '_ms']:.1f} ms ({r[key + '_cpu_ms']:.1f} ms)"


def run() -> str:
    """The markdown section for benchmarks/RESULTS.md."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "million.tsdb")
        began = time.perf_counter()
        n = make_trace(path)
        made = time.perf_counter() - began
        load = os.getloadavg()[0]
        runs = []
        for _ in range(N_PROCESSES):
            runs.append(measure(path))
            load = max(load, os.getloadavg()[0])
    r = {k: median(run[k] for run in runs) for k in runs[0]}
    from tui.views import VIEWS

    rows = [
        ("imports (textual, numpy, numba via tracer)", f"{r['imports_s']:.2f} s", "-"),
        (
            "first interactive screen: load + index + tree + paint, wall (CPU)",
            f"{r['first_screen_s']:.2f} s ({r['first_screen_cpu_s']:.2f} s)",
            "< 1 s",
        ),
        ("same, from process start", f"{r['from_process_start_s']:.2f} s", "-"),
    ]
    for label, what in (("step", "a step"), ("wide", "the huge span")):
        rows.append(
            (
                f"open {what} ({r[f'open_{label}_children']:,} children, "
                f"{r[f'open_{label}_nodes']:,} nodes made): build; with layout and "
                "repaint, wall (CPU)",
                f"{r[f'build_{label}_ms']:.1f} ms; {_ms(r, f'open_{label}')}",
                "<= 30 ms",
            )
        )
        rows.append(
            (
                f"then select it: details, sources and timeline of {what} painted, wall (CPU)",
                _ms(r, f"select_{label}"),
                "<= 50 ms",
            )
        )
    rows += [
        (
            f"move the cursor down one row, every pane painted: median of {N_MOVES} "
            "single presses, wall (CPU)",
            _ms(r, "move"),
            "<= 30 ms",
        ),
        ("same, 95th percentile, wall (CPU)", _ms(r, "move_p95"), "<= 30 ms"),
        (
            f"{N_RUN} presses of down at {REPEAT_HZ}/s: from the last key until every pane "
            "shows the cursor's span, painted (wall)",
            f"{r['run_settle_ms']:.0f} ms",
            "<= 100 ms",
        ),
        (
            f"same run: CPU of the whole run ({r['run_wall_ms'] / 1e3:.2f} s of wall), per key",
            f"{r['run_cpu_ms']:.0f} ms, {r['run_cpu_ms'] / N_RUN:.1f} ms",
            "-",
        ),
        (
            f"switch views (keys 2-5, then 1: Modules, Stats, Findings, Imports, Calls), "
            "the view shown, focused, laid out and painted: first visits, median of "
            f"{len(VIEWS)}, wall (CPU); the slowest",
            f"{_ms(r, 'switch_first')}; {_ms(r, 'switch_first_max')}",
            "<= 50 ms",
        ),
        (
            f"same, revisits: median of {(N_SWITCH_ROUNDS - 1) * len(VIEWS)}, wall (CPU); "
            "the slowest",
            f"{_ms(r, 'switch')}; {_ms(r, 'switch_max')}",
            "<= 50 ms",
        ),
        (
            f"same, back to Calls (tree, details, sources, timeline): median of "
            f"{N_SWITCH_ROUNDS - 1}, wall (CPU); the slowest",
            f"{_ms(r, 'switch_calls')}; {_ms(r, 'switch_calls_max')}",
            "<= 50 ms",
        ),
        (
            "move down measured as before (`pilot.press` + `pilot.pause`); the same for a "
            "key bound to nothing (Pilot's own floor)",
            f"{r['pilot_move_ms']:.0f} ms; {r['pilot_idle_ms']:.0f} ms",
            "-",
        ),
        ("peak memory of the viewer process (RSS)", f"{r['peak_rss_mb']:.0f} MB", "< 1 GB"),
    ]
    lines = [
        "### TUI on a million spans",
        "",
        f"A generated trace of {n:,} spans (written in {made:.1f} s): {N_STEPS} steps of "
        f"{N_LAYERS} layers x {N_OPS} ops, and one span with {N_WIDE:,} children. "
        f"Headless (`App.run_test`, 120x40); each figure is the median of {N_PROCESSES} "
        "fresh viewer processes. Keys go in as a terminal's "
        "do (through the driver), and a measure ends when the panes show the span and the "
        "screen is laid out and painted; `pilot.pause()` is not used for timing, since it "
        "sleeps at least 20 ms per wait until the process looks idle (the last row shows "
        "that floor). Wall times depend on what else runs (load average up to "
        f"{load:.1f} on {os.cpu_count()} cores during this run); CPU times much less so.",
        "",
        "| measure | result | goal |",
        "|---|---|---|",
        *[f"| {a} | {b} | {c} |" for a, b, c in rows],
        "",
        "The goals are wall times on a quiet machine; on a loaded one the CPU times are "
        "the figures to compare with them. A single move shows the span in every pane in "
        "the tree's own frame: the tree tells the view at once (`CallTree.on_span`), so a "
        "key costs one paint, not two. In a run of keys only the tree follows each key and "
        "the other panes show the last span 50 ms after it (`tui/views/calls.py`), which is "
        "most of the wait after the last key. Opening or selecting a node redraws most of "
        "the tree's 33 visible lines (the new children; the guides under a selected node "
        "light up): `CallTree` draws a line with the styles read once per paint, each "
        "node's label rendered once per look and placed on a line once, and a span's label "
        "made only when its line is first drawn (about 30 of a page of 200), measured from "
        "its text alone; a taller tree no longer lays the screen out (its own size is "
        "fixed: only its scrollbar follows), and the rest is Textual's per-line "
        "compositing. The huge span's timeline gathers at most the 4,000 rows it draws: its "
        "half a million children stay views of the trace's columns (each copy of them was "
        "a fresh allocation, 8 ms of page faults at the first draw). The viewer freezes its "
        "heap after loading (`gc.freeze`): a full collection no longer rescans the trace's "
        "objects (0.1-0.3 s, a stall now and then in a run of keys); one still comes about "
        "every 30 moves (12-19 ms, most of the move's 95th percentile). Measures settle by "
        "polling the widgets' queues and refresh flags, not `Pilot._wait_for_screen` (a "
        "callback to every widget, about 5 ms of the benchmark's own CPU per measure, in "
        "figures before this run). A view switch repaints the view that opens and nothing "
        "else, in one layout and one paint: the views stay mounted, the focus moves at once "
        "and the screen's own focus change repaints nothing, the footer relabels its key "
        "widgets in the switch's own handler and their new widths ask for no second layout, "
        "the call tree keeps its lines when shown again at its size, and a focus change "
        "redraws its lines without counting them all again (`docs/tui.md`). Before the "
        "lazy labels, the timeline's views and the single layout per switch (commit "
        "3cc2617, the same measure, three processes of each code interleaved at load "
        "0.7-0.9): open the huge span 19.6 ms, select it 32.7 ms, back "
        "to Calls 72 ms (CPU 71 ms); with them 15.5, 26.7 and 45 ms (CPU 44 ms), the move "
        "unchanged (14.5 ms median). Calls, the heaviest view, is left with Textual's "
        "layout and compositing of its panes. "
        "Peak memory now includes the Stats view's tables, computed on its first visit in "
        "the switch measure (334 MB before switches were measured). "
        "CPU times vary by about a third between runs on this shared machine.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        print(json.dumps(asyncio.run(_measure(sys.argv[2]))))
    else:
        print(run())
