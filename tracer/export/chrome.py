"""Chrome Trace Event format export: opens in Perfetto and chrome://tracing.

Spans become complete events (``ph: X``) with the kind as ``cat`` and the
attributes as ``args``; zero-length spans become instants (``ph: i``);
process and thread names go in metadata events (``ph: M``). Timestamps are
microseconds with nanosecond decimals, so nesting survives the conversion.

Flow arrows (``ph: s`` / ``ph: f``, bound to slices) join each DataParallel
scatter to every replica and every replica to its gather, and the matching
collectives of different ranks. A span whose parent is on another thread
(a replica under ``parallel_apply``) carries ``ts_parent``, and that parent
``ts_span``: keys viewers ignore and ``tracer.export.import_chrome`` reads back, so
a round trip keeps the whole tree.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, TextIO

import numpy as np

from tracer import progress
from tracer.analyze.lanes import thread_names
from tracer.distributed.peers import peers
from tracer.file.output import atomic_output
from tracer.file.trace import Trace


def chrome_tids(trace: Trace) -> np.ndarray:
    """A Chrome tid per thread row (last slot: unknown thread).

    Chrome names threads by (pid, tid) alone, but the OS gives a finished
    replica's tid to the next replica thread; a reused tid gets a fresh
    number so each lane keeps its own name.
    """
    out = np.zeros(len(trace.threads) + 1, dtype=np.int64)
    taken: set[tuple[int, int]] = set()
    spare = max((t.tid for t in trace.threads), default=0) + 1
    for t in trace.threads:
        tid = t.tid
        if (t.part, tid) in taken:
            tid, spare = spare, spare + 1
        taken.add((t.part, tid))
        out[t.row] = tid
    return out


def _metadata(trace: Trace) -> Iterator[dict[str, Any]]:
    pid_of = {p.part: p.pid for p in trace.processes}
    for p in trace.processes:
        yield {
            "ph": "M",
            "name": "process_name",
            "pid": p.pid,
            "tid": 0,
            "ts": 0,
            "args": {"name": p.label},
        }
        yield {
            "ph": "M",
            "name": "process_sort_index",
            "pid": p.pid,
            "tid": 0,
            "ts": 0,
            "args": {"sort_index": p.part},
        }
    tids = chrome_tids(trace)
    names = thread_names(trace)
    for t in trace.threads:
        yield {
            "ph": "M",
            "name": "thread_name",
            "pid": pid_of.get(t.part, 0),
            "tid": int(tids[t.row]),
            "ts": 0,
            "args": {"name": names[t.row]},
        }


def _linked(trace: Trace) -> tuple[set[int], dict[int, int]]:
    """Parents on another thread (``ts_span``) and their children (-> ``ts_parent``)."""
    parent = trace.parent
    rows = np.flatnonzero(parent >= 0)
    cross = rows[trace.thread[rows] != trace.thread[parent[rows]]]
    return set(parent[cross].tolist()), dict(zip(cross.tolist(), parent[cross].tolist()))


def events(trace: Trace, with_args: bool = True) -> Iterator[dict[str, Any]]:
    """Every Chrome event of the trace, metadata first, spans in start order, then flows."""
    yield from _metadata(trace)
    strings = trace.strings
    pid, tid = trace.pid, chrome_tids(trace)[trace.thread]
    t0 = int(trace.start_ns.min()) if trace.n else 0
    targets, links = _linked(trace)
    for row in trace.start_order:
        row = int(row)
        ev: dict[str, Any] = {
            "name": str(strings[trace.name[row]]),
            "cat": str(strings[trace.kind[row]]),
            "pid": int(pid[row]),
            "tid": int(tid[row]),
            "ts": (int(trace.start_ns[row]) - t0) / 1000.0,
        }
        dur = int(trace.dur_ns[row])
        if dur > 0:
            ev["ph"] = "X"
            ev["dur"] = dur / 1000.0
        else:
            ev["ph"] = "i"
            ev["s"] = "t"
        if with_args:
            args = trace.attrs(row)
            args["func"] = str(strings[trace.func[row]])
            ev["args"] = args
        if row in targets:
            ev["ts_span"] = row
        if row in links:
            ev["ts_parent"] = links[row]
        yield ev
    yield from flows(trace, t0)


def _flow(
    trace: Trace, tid: np.ndarray, fid: int, src: int, dst: int, name: str, t0: int
) -> list[dict]:
    """A flow arrow from inside slice ``src`` (at its end) to the start of slice ``dst``."""
    pid = trace.pid
    at_src = max(int(trace.start_ns[src]), int(trace.end_ns[src]) - 1)
    return [
        {"ph": "s", "id": fid, "name": name, "cat": "flow", "pid": int(pid[src]),
         "tid": int(tid[src]), "ts": (at_src - t0) / 1000.0},
        {"ph": "f", "bp": "e", "id": fid, "name": name, "cat": "flow", "pid": int(pid[dst]),
         "tid": int(tid[dst]), "ts": (int(trace.start_ns[dst]) - t0) / 1000.0},
    ]  # fmt: skip


def dp_flow_pairs(trace: Trace) -> list[tuple[int, int, str]]:
    """(from, to, name): scatter -> each replica -> gather, matched by time in each process."""
    code = {k: trace.code(k) for k in ("dp.scatter", "dp.replica", "dp.gather")}
    if code["dp.replica"] < 0:
        return []
    pairs = []
    for part in np.unique(trace.part).tolist():
        here = trace.part == part
        found = {k: np.flatnonzero(here & (trace.kind == c)) for k, c in code.items() if c >= 0}
        scatters = found.get("dp.scatter", np.zeros(0, int))
        gathers = found.get("dp.gather", np.zeros(0, int))
        scatters = scatters[np.argsort(trace.start_ns[scatters])]
        gathers = gathers[np.argsort(trace.start_ns[gathers])]
        for rep in found["dp.replica"].tolist():
            i = np.searchsorted(trace.start_ns[scatters], trace.start_ns[rep], side="right") - 1
            if i >= 0:
                pairs.append((int(scatters[i]), rep, "scatter"))
            j = np.searchsorted(trace.start_ns[gathers], trace.end_ns[rep], side="left")
            if j < len(gathers):
                pairs.append((rep, int(gathers[j]), "gather"))
    return pairs


def collective_flow_pairs(trace: Trace) -> list[tuple[int, int, str]]:
    """Each collective of the first rank -> the same collective on every other rank
    (by group and sequence number; by position for spans recorded without them)."""
    codes = [i for i, text in enumerate(trace.strings) if str(text).startswith("collective.")]
    rows = np.flatnonzero(np.isin(trace.kind, codes))
    ranked = sorted(
        (p for p in trace.processes if p.role == "rank"),
        key=lambda p: (p.role_index if p.role_index is not None else 1 << 30, p.part),
    )
    per_rank = []
    for p in ranked:
        mine = rows[trace.part[rows] == p.part]
        per_rank.append(mine[np.argsort(trace.start_ns[mine], kind="stable")].tolist())
    pairs = []
    for a in per_rank[0] if per_rank else []:
        op = trace.kind_of(a).removeprefix("collective.")
        matched = peers(trace, a)  # numbered spans: the same (group, seq) on every rank
        pairs.extend((a, b, op) for b in matched if b != a)
    if pairs:
        return pairs
    for other in per_rank[1:]:  # recorded without numbers: the k-th of each rank
        for a, b in zip(per_rank[0], other):
            pairs.append((a, b, trace.kind_of(a).removeprefix("collective.")))
    return pairs


def flows(trace: Trace, t0: int = 0) -> Iterator[dict[str, Any]]:
    """Flow events for DataParallel and for collectives across ranks."""
    pairs = dp_flow_pairs(trace) + collective_flow_pairs(trace)
    tid = chrome_tids(trace)[trace.thread]
    for fid, (src, dst, name) in enumerate(pairs, start=1):
        yield from _flow(trace, tid, fid, src, dst, name, t0)


def write(trace: Trace, out: TextIO) -> int:
    """Writes the JSON object form ``{"traceEvents": [...]}``; returns the event count."""
    count = 0
    out.write('{"displayTimeUnit": "ns", "traceEvents": [\n')
    encode = json.JSONEncoder(default=str, separators=(",", ":")).encode
    for ev in progress.track(events(trace), "writing Chrome events", total=trace.n):
        if count:
            out.write(",\n")
        out.write(encode(ev))
        count += 1
    out.write("\n]}\n")
    return count


def export(trace: Trace, path: str) -> int:
    """Writes the Chrome JSON file at ``path``."""
    with atomic_output(path) as fh:
        return write(trace, fh)


__all__ = ["events", "export", "flows", "write"]
