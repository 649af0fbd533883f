"""Chrome trace JSON -> a torchscope trace file, so any profile opens in the TUI.

Reads what viztracer and ``torch.profiler`` write (and what
``tracer.export.chrome`` writes): the object form ``{"traceEvents": [...]}``
or the bare array form (even cut short, as the format allows), complete
events (``X``), begin/end pairs (``B``/``E``), instants (``i``/``I``) and
metadata (``M``: process and thread names). Counters, flows and async events
are counted and skipped.

The trace is written through ``tracer.file.store.StoreWriter`` in the recorder's
own form: one part per process, records with ids in start order and in
close order per thread, so the reader rebuilds nesting exactly as for a
live recording. Nesting comes from time containment per thread (a span
starting exactly where another ends is its sibling), and cross-thread
parents come back from the ``ts_span``/``ts_parent`` keys of our export.
Timestamps are parsed as decimals, so absolute microsecond timestamps of
``torch.profiler`` keep their nanoseconds.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import numpy as np

from tracer.file.errors import TraceError
from tracer.file.store import Batch, StoreWriter

_PROCESS_LABEL = re.compile(r"^(?P<role>.+?)(?: (?P<index>\d+))? \(pid \d+\)$")
_THREAD_LABEL = re.compile(r"^(?P<name>.*) \[(?P<device>[^\[\]]+)\]$")


@dataclass
class Imported:
    """What an import produced and what it had to skip."""

    path: str
    spans: int = 0
    processes: int = 0
    threads: int = 0
    skipped: Counter = field(default_factory=Counter)


def load_events(path: str) -> list[dict]:
    """The event list of a Chrome trace file in either form."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise TraceError(f"{path}: cannot read ({exc.strerror}).") from exc
    try:
        doc = json.loads(text, parse_float=Decimal)
    except json.JSONDecodeError as exc:
        body = text.rstrip().rstrip(",")
        if not body.lstrip().startswith("["):
            raise TraceError(f"{path}: not Chrome trace JSON ({exc}).") from exc
        try:  # the array form may end without "]" (a profiler stopped mid-write)
            doc = json.loads(body + "]", parse_float=Decimal)
        except json.JSONDecodeError:
            raise TraceError(f"{path}: not Chrome trace JSON ({exc}).") from exc
    events = doc.get("traceEvents", []) if isinstance(doc, dict) else doc
    if not isinstance(events, list):
        raise TraceError(f"{path}: traceEvents is not a list; not a Chrome trace.")
    return [e for e in events if isinstance(e, dict)]


def _ns(value: Any) -> int:
    """Microseconds (int, float or Decimal) -> integer nanoseconds."""
    return int((Decimal(value) if not isinstance(value, Decimal) else value) * 1000)


def _plain(value: Any) -> Any:
    """Attribute values back to JSON types (the parser made floats Decimals)."""
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


_NESTED = (Decimal, dict, list)


class _Ids:
    """Chrome pids/tids may be strings ("stream 7"): give those stable integers."""

    def __init__(self) -> None:
        self.names: dict[Any, int] = {}
        self.text: dict[int, str] = {}  # synthetic id -> the original name, for lane labels

    def __call__(self, value: Any) -> int:
        if isinstance(value, int):
            return value
        if isinstance(value, str) and value.lstrip("-").isdigit():
            return int(value)
        number = self.names.get(value)
        if number is None:
            number = self.names[value] = (1 << 31) + len(self.names)
            self.text[number] = str(value)
        return number


@dataclass
class _Span:
    start: int
    end: int
    kind: str
    name: str
    func: str
    attrs: dict | None
    span_key: int | None = None  # ts_span: other spans may name it as their parent
    parent_key: int | None = None  # ts_parent: a parent on another thread


def _span(e: dict, start: int, end: int, args: dict) -> _Span:
    if not args:
        args = {}
    elif any(type(v) in _NESTED for v in args.values()):
        args = _plain(args)
    else:
        args = dict(args)
    func = args.pop("func", "") if isinstance(args.get("func"), str) else ""
    return _Span(
        start,
        end,
        str(e.get("cat") or "chrome"),
        str(e.get("name", "?")),
        func,
        args or None,
        e.get("ts_span"),
        e.get("ts_parent"),
    )


def collect(events: list[dict], result: Imported) -> tuple[dict, dict, dict]:
    """Spans per (pid, tid), process names, thread names."""
    ids = _Ids()
    spans: dict[tuple[int, int], list[_Span]] = defaultdict(list)
    open_b: dict[tuple[int, int], list[dict]] = defaultdict(list)
    procs: dict[int, str] = {}
    threads: dict[tuple[int, int], str] = {}
    for e in events:
        ph = e.get("ph")
        pid, tid = ids(e.get("pid", 0)), ids(e.get("tid", 0))
        key = (pid, tid)
        if ph == "M":
            name = (e.get("args") or {}).get("name")
            if e.get("name") == "process_name" and name is not None:
                procs[pid] = str(name)
            elif e.get("name") == "thread_name" and name is not None:
                threads[key] = str(name)
            continue
        if "ts" not in e:
            result.skipped[f"{ph} without ts"] += 1
            continue
        start = _ns(e["ts"])
        if ph == "X":
            spans[key].append(_span(e, start, start + _ns(e.get("dur", 0)), e.get("args")))
        elif ph in ("i", "I"):
            spans[key].append(_span(e, start, start, e.get("args")))
        elif ph == "B":
            open_b[key].append(e)
        elif ph == "E":
            if not open_b[key]:
                result.skipped["E without B"] += 1
                continue
            b = open_b[key].pop()
            args = {**(b.get("args") or {}), **(e.get("args") or {})}
            spans[key].append(_span(b, _ns(b["ts"]), start, args))
        else:
            result.skipped[f"ph {ph}"] += 1
    for key, left in open_b.items():  # never ended: close at the thread's last moment
        if not left:
            continue
        last = max((s.end for s in spans[key]), default=0)
        for b in left:
            start = _ns(b["ts"])
            span = _span(b, start, max(start, last), b.get("args"))
            span.attrs = {**(span.attrs or {}), "unclosed": True}
            spans[key].append(span)
    for pid, tid in spans:
        procs.setdefault(pid, ids.text.get(pid, f"process (pid {pid})"))
        threads.setdefault((pid, tid), ids.text.get(tid, f"thread {tid}"))
    return spans, procs, threads


def _thread_order(spans: list[_Span]) -> tuple[list[_Span], list[int]]:
    """Spans in start order and the close order (post-order of time containment)."""
    spans = sorted(spans, key=lambda s: (s.start, -s.end))
    close: list[int] = []
    stack: list[int] = []
    for i, s in enumerate(spans):
        while stack:
            top = spans[stack[-1]]
            inside = s.end <= top.end and s.start < top.end and top.end > top.start
            if inside:
                break
            close.append(stack.pop())
        stack.append(i)
    close.extend(reversed(stack))
    return spans, close


def _process_role(label: str) -> tuple[str, int | None]:
    match = _PROCESS_LABEL.match(label)
    if not match:
        return label, None
    index = match.group("index")
    return match.group("role"), int(index) if index is not None else None


def _batch(writer: StoreWriter, records: list, ids: dict, key_ids: dict) -> Batch:
    """The recorder's columnar block for records (lane, index, span) in close order."""
    spans = [s for _l, _i, s in records]
    strings = writer.string_ids({t for s in spans for t in (s.kind, s.name, s.func)})
    id_col = np.array([ids[(lane, i)] for lane, i, _s in records], dtype=np.int64)
    links = [  # a cross-thread parent started first: a flow the other way is no parent
        (row, key_ids[s.parent_key])
        for row, s in enumerate(spans)
        if s.parent_key is not None
        and s.parent_key in key_ids
        and key_ids[s.parent_key] < id_col[row]
    ]
    present = [k for k, s in enumerate(spans) if s.attrs]
    attr_index = np.full(len(spans), -1, dtype=np.int32)
    attr_index[present] = np.arange(len(present), dtype=np.int32)
    starts = np.array([s.start for s in spans], dtype=np.int64)
    return Batch(
        id_base=int(id_col.min()),
        ids=id_col,
        threads=np.array([lane for lane, _i, _s in records], dtype=np.int64),
        starts=starts,
        durs=np.array([s.end for s in spans], dtype=np.int64) - starts,
        kinds=np.array([strings[s.kind] for s in spans], dtype=np.int64),
        names=np.array([strings[s.name] for s in spans], dtype=np.int64),
        funcs=np.array([strings[s.func] for s in spans], dtype=np.int64),
        links=np.array(links, dtype=np.int64).reshape(-1, 2) if links else None,
        attr_index=attr_index if present else None,
        attrs=[spans[k].attrs for k in present] if present else None,
    )


def _write_part(writer: StoreWriter, pid: int, label: str, threads: list, result: Imported) -> None:
    """One process: its threads' spans as one block, ids in start order, close order."""
    role, index = _process_role(label)
    everything = [s for _tid, _name, spans in threads for s in spans]
    start = min((s.start for s in everything), default=0)
    part = writer.add_process(pid, None, role, index, "[]", None, start)  # type: ignore[arg-type]
    ordered = []
    for lane, (_tid, _name, spans) in enumerate(threads):
        in_start, close = _thread_order(spans)
        ordered.append((lane, in_start, close))
    # ids in start order across the whole process, so links between threads resolve
    by_start = sorted(
        ((s.start, lane, i) for lane, in_start, _c in ordered for i, s in enumerate(in_start))
    )
    ids = {(lane, i): n + 1 for n, (_t, lane, i) in enumerate(by_start)}
    key_ids = {}
    for lane, in_start, _c in ordered:
        for i, s in enumerate(in_start):
            if s.span_key is not None:
                key_ids[s.span_key] = ids[(lane, i)]
    records = [(lane, i, in_start[i]) for lane, in_start, close in ordered for i in close]
    batch = _batch(writer, records, ids, key_ids) if records else None
    thread_rows = []
    for lane, (tid, name, _spans) in enumerate(threads):
        match = _THREAD_LABEL.match(name)
        device = match.group("device") if match else None
        thread_rows.append((lane, tid, match.group("name") if match else name, device))
    writer.write(part, batch, thread_rows, [])
    end = max((s.end for s in everything), default=start)
    writer.update_process(part, end_ns=end, status="ok")
    result.spans += len(records)
    result.processes += 1
    result.threads += len(threads)


def import_chrome(src: str, out: str) -> Imported:
    """Converts the Chrome trace ``src`` into the torchscope trace file ``out``."""
    events = load_events(src)
    result = Imported(out)
    spans, procs, thread_names = collect(events, result)
    writer = StoreWriter(out)  # replaces an older trace, refuses any other file
    try:
        writer.set_meta(
            {
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "argv": json.dumps(["torchscope", "import-chrome", src]),
                "clock": "chrome trace microseconds",
                "imported_from": os.path.abspath(src),
                "target": "chrome",
            }
        )
        for pid in procs:
            threads = [  # in the order each thread first appears
                (tid, thread_names.get((p, tid), f"thread {tid}"), s)
                for (p, tid), s in spans.items()
                if p == pid
            ]
            if threads:
                _write_part(writer, pid, procs[pid], threads, result)
    finally:
        writer.close()
    return result


__all__ = ["Imported", "import_chrome", "load_events"]
