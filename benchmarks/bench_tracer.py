"""What recording costs: per instrumentation point, per span, per million spans."""

from __future__ import annotations

import os
import tempfile
import threading
import time
from statistics import median

import numpy as np
import torch

import tracer
from reimpl import _trace
from tracer.analyze import aggregate
from tracer.recording.recorder import Recorder

N_CALLS = 200_000
N_SPANS = 1_000_000


def _per_call_ns(fn, repeats: int = 7) -> float:
    """Median over repeats of the time per call of ``fn(N_CALLS)``."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter_ns()
        fn(N_CALLS)
        times.append((time.perf_counter_ns() - t0) / N_CALLS)
    return median(times)


def empty_calls(n: int) -> None:
    def f() -> None:
        pass

    for _ in range(n):
        f()


def detached_points(n: int) -> None:
    def f() -> None:
        if _trace.sink is not None:
            raise AssertionError("attached")

    for _ in range(n):
        f()


def detached_with_span(n: int) -> None:
    def f() -> None:
        with _trace.span("k", "n", func="f"):
            pass

    for _ in range(n):
        f()


def attached_inline(n: int) -> None:
    perf = time.perf_counter_ns
    get_ident = threading.get_ident

    def f() -> None:
        sink = _trace.sink
        if sink is not None:
            sid = sink.next_id()
            t0 = perf()
        if sink is not None:
            sink.append((sid, 0, get_ident(), t0, perf(), "k", "n", "f", None))

    for _ in range(n):
        f()


def module_calls(n: int) -> None:
    """A module whose forward does nothing, called n times (reimpl's ``_call_impl``
    without hooks: traced, one ``module.forward`` record per call)."""
    from reimpl import nn as rnn

    class Empty(rnn.Module):
        def forward(self, x: object) -> object:
            return x

    module = Empty()
    for _ in range(n):
        module(None)


def python_module_calls(n: int) -> None:
    """``module_calls`` with the record made in Python (``_record_forward_py``, the
    fallback) instead of the native stamp's ``Forward``."""
    from reimpl.nn.modules import module as module_mod

    native = module_mod._record_forward
    module_mod._record_forward = module_mod._record_forward_py
    try:
        module_calls(n)
    finally:
        module_mod._record_forward = native


def attached_with_span(n: int) -> None:
    def f() -> None:
        with _trace.span("k", "n", func="f"):
            pass

    for _ in range(n):
        f()


def _records(n: int) -> list[tuple]:
    """A realistic million: 4 threads, nested pairs, 50 names, attrs on a tenth."""
    attrs = [{"path": f"layer{i}", "cls": "Linear"} for i in range(50)]
    tids = [threading.get_ident() + k for k in range(4)]
    out = []
    t = 0
    for i in range(0, n, 2):
        tid = tids[(i // 1000) % 4]
        out.append(
            (
                i + 2,
                0,
                tid,
                t + 1,
                t + 2,
                "module.forward",
                f"layer{i % 50}",
                "f",
                attrs[i % 50] if i % 10 == 0 else None,
            )
        )
        out.append((i + 1, 0, tid, t, t + 3, "step", "step", "g", None))
        t += 4
    return out


def store_costs(path: str) -> dict[str, float]:
    """Flush (tuples -> columns -> one block), load, file size, aggregation."""
    records = _records(N_SPANS)
    rec = Recorder(path, flush_interval=3600).start()
    _trace.detach()
    t0 = time.perf_counter()
    batch = rec._columns(records)
    columns_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    rec._store.write(rec._part, batch, rec._threads_dirty, [])
    write_s = time.perf_counter() - t0
    rec._threads_dirty = []
    rec.stop()
    crc_s = _checksum_seconds(path)
    size = os.path.getsize(path)
    tracer.load(path)  # warm-up: the first load in a process imports numba (about 0.3 s)
    loads = []
    for _ in range(3):
        t0 = time.perf_counter()
        trace = tracer.load(path)
        loads.append(time.perf_counter() - t0)
    assert trace.n == N_SPANS
    aggregate.self_times(trace.parent, trace.dur_ns)  # warm (compiled or cached)
    aggregate.call_paths(trace.parent, trace.kind, trace.name, trace.start_order)
    t0 = time.perf_counter()
    own = aggregate.self_times(trace.parent, trace.dur_ns)
    paths = aggregate.call_paths(trace.parent, trace.kind, trace.name, trace.start_order)
    aggregate.sum_by(paths[0], own, len(paths[1]))
    agg_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    aggregate.parents(trace.thread.astype(np.int64), trace.seq, len(trace.threads))
    parents_s = time.perf_counter() - t0
    check_s, check_findings = _check_seconds(os.path.join(os.path.dirname(path), "dp.tsdb"))
    return {
        "columns_s": columns_s,
        "write_s": write_s,
        "load_s": median(loads),
        "bytes": size,
        "agg_s": agg_s,
        "parents_s": parents_s,
        "crc_s": crc_s,
        "check_s": check_s,
        "check_findings": check_findings,
    }


def _dp_records(n: int) -> list[tuple]:
    """A million spans of DataParallel forwards: per step a parallel_apply, two
    replica threads linked to it, 8 modules each with a forward hook whose
    object rebinds its state (the DeOldify shape), in close order per thread."""
    main, replicas = 1, (2, 3)
    hooks = [{"hook": f"Hook{k}.fn", "hook_id": 1000 + k, "module": f"enc.{k}",
              "rebound": ["stored"]} for k in range(8)]  # fmt: skip
    out: list[tuple] = []
    next_id, t = 1, 0
    while len(out) < n:
        apply_id, next_id = next_id, next_id + 1
        t_apply = t
        for tid in replicas:
            rep_id, next_id = next_id, next_id + 1
            t_rep = t
            for k in range(8):
                mod_id, hook_id, next_id = next_id, next_id + 1, next_id + 2
                out.append((hook_id, 0, tid, t + 2, t + 3, "hook.forward", hooks[k]["hook"],
                            "h", hooks[k]))  # fmt: skip
                out.append((mod_id, 0, tid, t + 1, t + 4, "module.forward", f"enc.{k}", "f", None))
                t += 5
            out.append((rep_id, apply_id, tid, t_rep, t, "dp.replica", f"replica {tid}", "r", None))
        out.append((apply_id, 0, main, t_apply, t + 1, "dp.parallel_apply", "apply", "p", None))
        t += 2
    return out


def _check_seconds(path: str) -> tuple[float, int]:
    """Every rule on the DataParallel million (its 16 hook calls per step all match)."""
    from tracer.analyze.check import run_rules

    rec = Recorder(path, flush_interval=3600).start()
    _trace.detach()
    rec._store.write(rec._part, rec._columns(_dp_records(N_SPANS)), rec._threads_dirty, [])
    rec._threads_dirty = []
    rec.stop()
    trace = tracer.load(path)
    run_rules(trace)  # warm: the rules' first call imports them and compiles a kernel
    t0 = time.perf_counter()
    findings = run_rules(trace)
    return time.perf_counter() - t0, len(findings)


def _checksum_seconds(path: str) -> float:
    """What the block's CRC-32 costs (paid once when writing, once when loading)."""
    import sqlite3

    from tracer.file.store import BLOCK_COLUMNS, row_crc

    with sqlite3.connect(path) as conn:
        row = conn.execute(f"SELECT {BLOCK_COLUMNS} FROM blocks").fetchone()
    t0 = time.perf_counter()
    row_crc(*row)
    return time.perf_counter() - t0


class _StoringHook:
    """A DeOldify-style hook object: a few attributes, one rebound per call."""

    def __init__(self) -> None:
        self.stored: object = None
        self.seen: dict = {}
        self.name = "skip"
        self.count = 0

    def hook_fn(self, module: object, args: tuple, output: object) -> None:
        self.stored = output


def hook_call(n: int) -> None:
    """A forward hook call as reimpl runs it while recording (span + evidence)."""
    from reimpl.nn.modules.module import _run_hook

    hook, out = _StoringHook(), torch.zeros(1)
    for _ in range(n):
        _run_hook("enc.0", "hook.forward", hook.hook_fn, None, (), out)


def hook_evidence(n: int) -> None:
    """Only what `check` added to a hook call: attribute marks before and after,
    the source line, the output's identity."""
    from reimpl.nn.modules.module import _hook_source, _state_changes, _state_marks

    hook, out = _StoringHook(), torch.zeros(1)
    state = vars(hook)
    for _ in range(n):
        before = _state_marks(state)
        _hook_source(hook.hook_fn)
        id(out)
        hook.stored = out
        after = _state_marks(state)
        if after != before:
            _state_changes({}, before, after)


def bn_evidence(n: int) -> None:
    """What `check`'s bn-* rules and the running-statistics spans add to each
    BatchNorm forward while recording: the state test (unchanged in a steady
    loop, so nothing is appended)."""
    from reimpl.nn import BatchNorm1d
    from reimpl.nn.modules.batchnorm import _evidence

    layer, x = BatchNorm1d(8), torch.zeros(16, 8)
    _evidence(layer, x, 1, 0.1, True)  # the first call records; the rest find it unchanged
    for _ in range(n):
        _evidence(layer, x, 1, 0.1, True)


def run() -> str:
    """Measures and returns the markdown section."""
    empty = _per_call_ns(empty_calls)
    detached = _per_call_ns(detached_points) - empty
    detached_cm = _per_call_ns(detached_with_span) - empty
    untraced_module = _per_call_ns(module_calls)
    with tempfile.TemporaryDirectory() as tmp:
        with tracer.record(os.path.join(tmp, "a.tsdb")) as rec:
            native = rec.stamps is not None
            module_native = _per_call_ns(module_calls) - untraced_module
            module_python = _per_call_ns(python_module_calls) - untraced_module
            inline = _per_call_ns(attached_inline) - empty
            cm = _per_call_ns(attached_with_span) - empty
            hook = _per_call_ns(hook_call) - empty
            evidence = _per_call_ns(hook_evidence) - empty
            bn = _per_call_ns(bn_evidence) - empty
        costs = store_costs(os.path.join(tmp, "m.tsdb"))
    rows = [
        ("empty Python function call", f"{empty:.0f} ns", "1.00"),
        (
            "instrumentation point, detached (`if _trace.sink is not None`)",
            f"{detached:.0f} ns",
            f"{detached / empty:.2f}",
        ),
        (
            "`with span(...)`, detached (shared no-op)",
            f"{detached_cm:.0f} ns",
            f"{detached_cm / empty:.2f}",
        ),
        ("span, attached, inline hot-path pattern", f"{inline:.0f} ns", f"{inline / empty:.2f}"),
        ("span, attached, `with span(...)` context manager", f"{cm:.0f} ns", f"{cm / empty:.2f}"),
        (
            "a module call's `module.forward` span (reimpl's `_call_impl`, no hooks), over "
            "the untraced call: recorded in C by the native stamp's `Forward`"
            + ("" if native else " (not available in this run: Python)"),
            f"{module_native:.0f} ns",
            f"{module_native / empty:.2f}",
        ),
        (
            "same, recorded in Python (`_record_forward_py`, the fallback)",
            f"{module_python:.0f} ns",
            f"{module_python / empty:.2f}",
        ),
        (
            "a forward hook call, recorded with `check`'s evidence (4-attribute hook object)",
            f"{hook:.0f} ns",
            f"{hook / empty:.2f}",
        ),
        (
            f"of which the evidence (rebound and resized attributes, source line): "
            f"{100 * evidence / hook:.0f}%",
            f"{evidence:.0f} ns",
            f"{evidence / empty:.2f}",
        ),
        (
            "BatchNorm evidence and running-statistics test per forward in a steady loop "
            "(state unchanged: nothing appended; the module benchmark's BatchNorm MLP has "
            "50 per step)",
            f"{bn:.0f} ns",
            f"{bn / empty:.2f}",
        ),
    ]
    per_span = costs["bytes"] / N_SPANS
    lines = [
        "### Recording (tracer)",
        "",
        "Per instrumentation point, minus the cost of the empty call that holds it "
        f"(median of 7 x {N_CALLS:,} calls). Ratio: against an empty function call.",
        "",
        "| what | cost | ratio to an empty call |",
        "| --- | ---: | ---: |",
        *[f"| {a} | {b} | {c} |" for a, b, c in rows],
        "",
        "One million spans (4 threads, 50 names, attributes on a tenth), one block:",
        "",
        "| what | measured | goal |",
        "| --- | ---: | ---: |",
        f"| write: numpy columns -> one SQLite block, committed | {costs['write_s']:.3f} s | "
        "<= 0.3 s |",
        f"| flush, before writing: record tuples -> numpy columns (writer thread) | "
        f"{costs['columns_s']:.3f} s | |",
        "| load: file -> columns, parents rebuilt (median of 3, after one warm-up load) | "
        f"{costs['load_s']:.3f} s | "
        "<= 0.3 s |",
        f"| of which the block's CRC-32, paid once in each (trace format 2) | "
        f"{costs['crc_s']:.3f} s | |",
        f"| file size per span (columns + a tenth with attributes) | {per_span:.1f} B | <= 48 B |",
        f"| numba: self time + merged call paths + totals per path | {costs['agg_s']:.3f} s | |",
        f"| numba: parents from close order alone | {costs['parents_s']:.3f} s | |",
        f"| `check`: every rule on a loaded million of DataParallel spans (457,000 hook "
        f"calls, {costs['check_findings']} findings) | {costs['check_s']:.3f} s | < 5 s |",
        "",
        "Trace format 2 (checksums, every value checked at load) against format 1, side by "
        "side in one run: `python -m benchmarks.ab_trace_format REV` (the `trace_format` "
        "section below; goal: within 20% of format 1 for both).",
        "",
        "For reference on this kind of machine (from the issue): SQLite `executemany` of 1M rows "
        "wrote in 1.15 s and loaded in 1.32 s; orjson Chrome JSON took 0.85 s / 1.31 s.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(run())
