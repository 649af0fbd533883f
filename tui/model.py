"""What the views show, computed from a loaded trace, with no Textual import.

memray's habit: the model knows nothing of the UI. Everything here works on
the trace's numpy columns, so a million spans cost vectorised passes, never a
Python loop per span; widgets ask for one page of rows at a time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from tracer.analyze.lanes import thread_names
from tracer.analyze.scope import aside_mask
from tracer.file.trace import Trace

KIND_COLOURS = {
    "step": "bold white",
    "module": "cyan",
    "hook": "magenta",
    "optim": "green",
    "sched": "green",
    "swa": "yellow",
    "bn": "bright_blue",
    "collective": "red",
    "dp": "bright_magenta",
    "data": "yellow",
    "import": "bright_black",
    "autograd": "bright_cyan",
}


def kind_style(kind: str) -> str:
    """Colour of a kind, by its family (the part before the dot)."""
    return KIND_COLOURS.get(kind.split(".", 1)[0], "white")


def fmt_ns(ns: float) -> str:
    """A duration in the unit that keeps three significant digits readable."""
    ns = float(ns)
    if abs(ns) < 1e3:
        return f"{ns:.0f} ns"
    if abs(ns) < 1e6:
        return f"{ns / 1e3:.1f} µs"
    if abs(ns) < 1e9:
        return f"{ns / 1e6:.2f} ms"
    return f"{ns / 1e9:.2f} s"


@dataclass(frozen=True)
class Lane:
    """One thread of one process: a group in the tree, a lane in the timeline."""

    thread: int
    part: int
    process: str
    label: str


@dataclass(frozen=True)
class Filter:
    """What the call tree and timeline show; None means everything."""

    part: int | None = None
    thread: int | None = None
    kind: int | None = None

    def describe(self, model: TraceModel) -> str:
        """A short text for the status line."""
        bits = []
        if self.part is not None:
            bits.append(f"process {model.process_label(self.part)}")
        if self.thread is not None:
            bits.append(f"thread {model.lanes_by_thread[self.thread].label}")
        if self.kind is not None:
            bits.append(f"kind {model.trace.strings[self.kind]}")
        return ", ".join(bits) or "everything"


@dataclass
class Stage:
    """One step of preparing a trace, for the progress bar."""

    label: str
    run: Callable[[], object]


@dataclass
class StatsRow:
    """Totals of one (kind, name) pair."""

    kind: str
    name: str
    count: int
    incl_ns: int
    self_ns: int
    key: int


class TraceModel:
    """A trace plus the indexes the views need, built once in the loading worker."""

    def __init__(self, trace: Trace) -> None:
        self.trace = trace
        self.t0 = int(trace.start_ns.min()) if trace.n else 0
        self.t1 = int(trace.end_ns.max()) if trace.n else 1
        self.filter = Filter()
        # Imports and numba compilations stand aside in the call tree, as in
        # summary and graph --kind calls (tracer/analyze/scope.py); a key brings them in.
        self.show_imports = False
        self._lane_rows: dict[tuple[int, int | None, bool], np.ndarray] = {}
        self._kids: dict[tuple[int, int], tuple[np.ndarray, ...]] = {}  # see _kids_on
        self._shown_kids: dict[int, np.ndarray] = {}  # see children

    def stages(self) -> list[Stage]:
        """The heavy indexes, in an order that lets the loader report progress."""
        t = self.trace
        return [
            Stage("indexing children", lambda: t.children_index),
            Stage("computing self times", lambda: t.self_ns),
            Stage("finding thread tops", lambda: self.is_top),
            Stage("grouping lanes", lambda: self.tops_by_thread),
            Stage("setting imports aside", lambda: self.hidden_kids),
        ]

    # -- processes, threads and lanes -----------------------------------------------

    @cached_property
    def lanes(self) -> list[Lane]:
        """Every thread that recorded spans, grouped by process in part order."""
        t = self.trace
        labels = {p.part: p.label for p in t.processes}
        out = [
            Lane(th.row, th.part, labels.get(th.part, f"part {th.part}"), th.label)
            for th in t.threads
        ]
        return sorted(out, key=lambda lane: (lane.part, lane.thread))

    @cached_property
    def lane_names(self) -> dict[int, str]:
        """Thread row -> a short name no other lane has, for the timeline.

        ``worker 0/worker 0`` said nothing: a process's main thread is named
        by its role and pid (two DataLoaders' workers differ by pid); another
        thread by its role and its own name; a thread name met again in one
        process (a replica thread of each step) is numbered.
        """
        t = self.trace
        pid = {p.part: p.pid for p in t.processes}
        numbered = thread_names(t)  # the label, "#k" added when the process met it before
        names: dict[int, str] = {}
        for lane in self.lanes:
            role = lane.process.split(" (")[0]
            thread = t.threads[lane.thread]
            if thread.name in (role, "MainThread"):
                name = f"{role} pid {pid.get(lane.part, '?')}"
                name += f" [{thread.device}]" if thread.device else ""
                names[lane.thread] = name + numbered[lane.thread][len(lane.label) :]
            else:
                names[lane.thread] = f"{role}/{numbered[lane.thread]}"
        return names

    @cached_property
    def lanes_by_thread(self) -> dict[int, Lane]:
        """Lane of each thread row."""
        return {lane.thread: lane for lane in self.lanes}

    def process_label(self, part: int) -> str:
        """How a process is named (``worker 1 (pid 42)``)."""
        return next((p.label for p in self.trace.processes if p.part == part), f"part {part}")

    def visible_lanes(self) -> list[Lane]:
        """Lanes that pass the current filter."""
        f = self.filter
        return [
            lane
            for lane in self.lanes
            if (f.part is None or lane.part == f.part)
            and (f.thread is None or lane.thread == f.thread)
        ]

    @cached_property
    def is_top(self) -> np.ndarray:
        """Spans that start a thread's call tree: no parent, or a parent on another thread."""
        t = self.trace
        parent = t.parent
        top = parent < 0
        linked = ~top
        top[linked] = t.thread[parent[linked]] != t.thread[linked]
        return top

    @cached_property
    def tops_by_thread(self) -> dict[int, np.ndarray]:
        """Each thread's top spans sorted by start (they never overlap)."""
        t = self.trace
        rows = np.flatnonzero(self.is_top)
        rows = rows[np.lexsort((t.start_ns[rows], t.thread[rows]))]
        threads = t.thread[rows]
        cuts = np.flatnonzero(np.diff(threads)) + 1
        return {int(t.thread[g[0]]): g for g in np.split(rows, cuts) if len(g)}

    def lane_rows(self, thread: int) -> np.ndarray:
        """Rows listed under a thread: its tops, or every span of the filtered kind
        (imports and compilations left out unless ``show_imports``)."""
        kind = self.filter.kind
        key = (thread, kind, self.show_imports)
        rows = self._lane_rows.get(key)
        if rows is None:
            if kind is None:
                rows = self.tops_by_thread.get(thread, np.empty(0, dtype=np.int64))
            else:
                t = self.trace
                rows = np.flatnonzero((t.kind == kind) & (t.thread == thread))
                rows = rows[np.argsort(t.start_ns[rows], kind="stable")]
            if not self.show_imports and self.aside.any():
                rows = rows[~self.aside[rows]]
            self._lane_rows[key] = rows
        return rows

    def in_lane_rows(self, row: int) -> bool:
        """Whether ``row`` is listed directly under its thread with the current filter."""
        if not self.show_imports and self.aside[row]:
            return False
        kind = self.filter.kind
        return bool(self.is_top[row]) if kind is None else int(self.trace.kind[row]) == kind

    # -- imports and compilations, standing aside -------------------------------------

    @cached_property
    def aside(self) -> np.ndarray:
        """Imports and numba compilations, and every span inside one."""
        return aside_mask(self.trace)

    @cached_property
    def aside_tops(self) -> np.ndarray:
        """Aside spans whose parent is not aside: where an aside subtree starts."""
        parent = self.trace.parent
        return self.aside & ((parent < 0) | ~self.aside[np.maximum(parent, 0)])

    @cached_property
    def hidden_kids(self) -> np.ndarray:
        """How many children of each span start an aside subtree (hidden by default)."""
        t = self.trace
        rows = np.flatnonzero(self.aside_tops & (t.parent >= 0))
        return np.bincount(t.parent[rows], minlength=t.n).astype(np.int64)

    def children(self, row: int) -> np.ndarray:
        """The children the call tree lists under ``row``: ``trace.children`` less
        the imports and compilations standing aside (unless ``show_imports``)."""
        kids = self.trace.children(row)
        if self.show_imports or not self.hidden_kids[row]:
            return kids
        shown = self._shown_kids.get(row)
        if shown is None:
            shown = self._shown_kids[row] = kids[~self.aside_tops[kids]]
        return shown

    def child_counts(self, rows: np.ndarray) -> np.ndarray:
        """``len(children(row))`` for many rows at once."""
        offsets, _ = self.trace.children_index
        counts = offsets[rows + 2] - offsets[rows + 1]
        return counts if self.show_imports else counts - self.hidden_kids[rows]

    def aside_text(self) -> str:
        """How the tree treats imports, for the status line ("" when the trace has none)."""
        n = int(self.aside.sum())
        if not n:
            return ""
        if self.show_imports:
            return f"imports and compilations shown ({n:,} spans; i sets them aside)"
        return f"{n:,} import and compilation spans set aside (i shows them)"

    # -- spans -----------------------------------------------------------------------

    def path_to(self, row: int) -> list[int]:
        """Ancestors of ``row`` from its root down to itself."""
        parent = self.trace.parent
        path = [row]
        while parent[path[-1]] >= 0:
            path.append(int(parent[path[-1]]))
        return path[::-1]

    @cached_property
    def finding_marks(self) -> dict[int, tuple[str, str]]:
        """Span row -> (worst severity, rule) of the findings it is evidence of,
        so the Calls tree can mark them. Evidence names spans by (part, seq),
        which stays right after ``record --append`` adds parts; the stored row
        is used when it still names that span."""
        t = self.trace
        order = {"info": 0, "warning": 1, "error": 2}
        marks: dict[int, tuple[str, str]] = {}
        for f in t.findings:
            data = f.get("data") if isinstance(f.get("data"), dict) else {}
            evidence = data.get("evidence") or [{"span": f.get("span")}]
            for e in evidence if isinstance(evidence, list) else []:
                row = self._evidence_row(e) if isinstance(e, dict) else None
                if row is None:
                    continue
                old = marks.get(row)
                if old is None or order.get(f["severity"], 0) > order.get(old[0], 0):
                    marks[row] = (f["severity"], f["detector"])
        return marks

    def _evidence_row(self, evidence: dict) -> int | None:
        t = self.trace
        row, part, seq = evidence.get("span"), evidence.get("part"), evidence.get("seq")
        valid = isinstance(row, int) and 0 <= row < t.n
        if valid and (part is None or (t.part[row] == part and t.seq[row] == seq)):
            return row
        if isinstance(part, int) and isinstance(seq, int):
            hits = np.flatnonzero((t.part == part) & (t.seq == seq))
            return int(hits[0]) if len(hits) else None
        return None

    def share(self, row: int) -> float:
        """Inclusive time as a fraction of the parent's (of the whole trace for roots)."""
        t = self.trace
        p = int(t.parent[row])
        total = t.dur_ns[p] if p >= 0 else self.t1 - self.t0
        return float(t.dur_ns[row]) / float(total) if total > 0 else 0.0

    @cached_property
    def steps(self) -> np.ndarray:
        """Training-step spans (kind ``step``) in start order: the loop's landmarks."""
        t = self.trace
        code = t.code("step")
        rows = np.flatnonzero(t.kind == code) if code >= 0 else np.empty(0, dtype=np.int64)
        return rows[np.argsort(t.start_ns[rows], kind="stable")]

    @cached_property
    def _rank(self) -> np.ndarray:
        """Position of each row in start order (to step through hits in order)."""
        order = self.trace.start_order
        rank = np.empty(len(order), dtype=np.int64)
        rank[order] = np.arange(len(order))
        return rank

    def search(self, query: str) -> np.ndarray:
        """Rows whose kind, name or func contains ``query`` (any case), in start order."""
        t = self.trace
        needle = query.lower()
        hit = np.fromiter(
            (needle in str(s).lower() for s in t.strings), dtype=bool, count=len(t.strings)
        )
        mask = hit[t.name] | hit[t.kind] | hit[t.func]
        order = t.start_order
        return order[mask[order]]

    def next_hit(self, hits: np.ndarray, row: int | None, forward: bool = True) -> int | None:
        """The hit after (or before) ``row`` in start order, wrapping around."""
        if not len(hits):
            return None
        if row is None:
            return int(hits[0] if forward else hits[-1])
        ranks = self._rank[hits]
        here = self._rank[row]
        if forward:
            k = int(np.searchsorted(ranks, here, side="right"))
            return int(hits[k % len(hits)])
        k = int(np.searchsorted(ranks, here, side="left")) - 1
        return int(hits[k % len(hits)])

    def lane_spans(
        self, thread: int, lo: int, hi: int, focus: tuple[int, int] | None = None, limit: int = 4000
    ) -> np.ndarray:
        """Spans of one thread to draw over [lo, hi).

        A span covering the whole ``focus`` range (the selected span, by default
        the window) is context rather than news: it is replaced by its children
        on the same thread, so the selected span shows as its children's bars.
        More than ``limit`` spans are thinned to ``limit`` spread over the window.

        Costs binary searches and at most ``limit`` rows gathered, however many
        children a span has: the spans stay pieces (views of the children)
        until the end, since a new array of half a million rows is a fresh
        allocation (page faults), several milliseconds per copy.
        """
        t = self.trace
        tops = self.tops_by_thread.get(thread)
        if tops is None:
            return np.empty(0, dtype=np.int64)
        a, b = focus if focus is not None else (lo, hi)
        rows, starts, ends = self._overlapping(tops, t.start_ns[tops], t.end_ns[tops], lo, hi)
        before: list[np.ndarray] = []  # rows left and right of the span descended into
        after: list[np.ndarray] = []
        for _ in range(64):  # depth bound
            # A lane's spans never overlap and are sorted, so only the last one
            # starting at or before ``a`` can cover the focus (the spans beside the
            # one descended into end before it starts, so the search stays in it).
            k = int(np.searchsorted(starts, a, side="right")) - 1
            if k < 0 or ends[k] < b or (k > 0 and ends[k - 1] >= b):
                break  # nothing, or more than one span, covers the focus
            kids, kid_starts, kid_ends = self._overlapping(
                *self._kids_on(int(rows[k]), thread), lo, hi
            )
            if not _any_longer(kid_starts, kid_ends):
                break  # no children, or only instants (bn.forward): the span itself shows
            before.append(rows[:k])
            after.append(rows[k + 1 :])
            rows, starts, ends = kids, kid_starts, kid_ends
        pieces = [*before, rows, *reversed(after)]
        total = sum(len(p) for p in pieces)
        if total > limit:  # every step-th row of the whole, piece by piece
            step, offset, thinned = -(-total // limit), 0, []
            for piece in pieces:
                thinned.append(piece[(-offset) % step :: step])
                offset += len(piece)
            pieces = thinned
        return np.concatenate(pieces) if len(pieces) > 1 else np.array(pieces[0])

    def _kids_on(self, row: int, thread: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The children of ``row`` on ``thread`` with their starts and ends.

        Kept for the last few rows asked: the cursor moving through a span with
        half a million children redraws the timeline at every key, and
        gathering those children again each time took milliseconds.
        """
        key = (row, thread)
        found = self._kids.pop(key, None)
        if found is None:
            t = self.trace
            kids = t.children(row)
            if len(kids) > 1 and _consecutive(kids):
                # Consecutive rows (a span recorded in one go): slices, not gathers.
                a, b = int(kids[0]), int(kids[-1]) + 1
                if _all_equal(t.thread[a:b], thread):
                    found = (kids, t.start_ns[a:b], t.end_ns[a:b])
            if found is None:
                kids = kids[t.thread[kids] == thread]
                found = (kids, t.start_ns[kids], t.end_ns[kids])
        self._kids[key] = found
        while len(self._kids) > 4:
            del self._kids[next(iter(self._kids))]
        return found

    @staticmethod
    def _overlapping(
        rows: np.ndarray, starts: np.ndarray, ends: np.ndarray, lo: int, hi: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The rows (sorted, never overlapping) that overlap [lo, hi), with their times."""
        first = int(np.searchsorted(ends, lo, side="right"))
        last = int(np.searchsorted(starts, hi, side="left"))
        return rows[first:last], starts[first:last], ends[first:last]

    # -- aggregates -------------------------------------------------------------------

    def stats(self, limit: int = 500) -> list[StatsRow]:
        """Totals per (kind, name), largest self time first."""
        t = self.trace
        key = (t.kind.astype(np.int64) << 32) | t.name.astype(np.int64)
        uniq, inverse = np.unique(key, return_inverse=True)
        count = np.bincount(inverse, minlength=len(uniq))
        incl = np.bincount(inverse, weights=t.dur_ns, minlength=len(uniq))
        own = np.bincount(inverse, weights=t.self_ns, minlength=len(uniq))
        order = np.argsort(-own, kind="stable")[:limit]
        s = t.strings
        return [
            StatsRow(
                str(s[uniq[i] >> 32]),
                str(s[uniq[i] & 0xFFFFFFFF]),
                int(count[i]),
                int(incl[i]),
                int(own[i]),
                int(uniq[i]),
            )
            for i in order
        ]

    def slowest_of_kind(self, kind: str) -> int | None:
        """The span of one kind with the largest self time."""
        t = self.trace
        rows = np.flatnonzero(t.kind == t.code(kind))
        return int(rows[np.argmax(t.self_ns[rows])]) if len(rows) else None

    def kind_totals(self) -> list[tuple[str, int, int]]:
        """(kind, spans, self ns) for every kind, largest self time first."""
        t = self.trace
        count = np.bincount(t.kind, minlength=len(t.strings))
        own = np.bincount(t.kind, weights=t.self_ns, minlength=len(t.strings))
        codes = np.flatnonzero(count)
        codes = codes[np.argsort(-own[codes], kind="stable")]
        return [(str(t.strings[c]), int(count[c]), int(own[c])) for c in codes]

    def slowest(self, key: int) -> int | None:
        """The span of a (kind, name) pair with the largest self time."""
        t = self.trace
        rows = np.flatnonzero((t.kind == key >> 32) & (t.name == key & 0xFFFFFFFF))
        return int(rows[np.argmax(t.self_ns[rows])]) if len(rows) else None

    def module_times(self) -> dict[str, tuple[int, int]]:
        """Module path -> (calls, total forward ns) from ``module.forward`` spans."""
        t = self.trace
        code = t.code("module.forward")
        if code < 0:
            return {}
        rows = np.flatnonzero(t.kind == code)
        names = t.name[rows]
        counts = np.bincount(names, minlength=len(t.strings))
        total = np.bincount(names, weights=t.dur_ns[rows], minlength=len(t.strings))
        return {str(t.strings[c]): (int(counts[c]), int(total[c])) for c in np.flatnonzero(counts)}

    def module_snapshots(self) -> list[dict]:
        """The latest ``module`` snapshot of each root, per process."""
        latest: dict[tuple[int, str], dict] = {}
        for snap in self.trace.snapshots:
            if snap["kind"] == "module":
                latest[(snap["part"], snap["key"])] = snap
        return list(latest.values())

    def import_roots(self) -> np.ndarray:
        """``import`` spans not inside another import, in start order."""
        t = self.trace
        code = t.code("import")
        if code < 0:
            return np.empty(0, dtype=np.int64)
        is_imp = t.kind == code
        parent = t.parent
        outer = is_imp & ((parent < 0) | (t.kind[np.maximum(parent, 0)] != code))
        rows = np.flatnonzero(outer)
        return rows[np.argsort(t.start_ns[rows], kind="stable")]

    def kind_counts(self) -> list[tuple[int, str, int]]:
        """(code, kind, spans) for every kind in the trace."""
        t = self.trace
        codes, counts = np.unique(t.kind, return_counts=True)
        return [(int(c), str(t.strings[c]), int(n)) for c, n in zip(codes, counts)]


@dataclass
class SearchState:
    """The last search and its hits, for n / N."""

    query: str = ""
    hits: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))


# Checks over the children of a huge span, a chunk at a time: a whole-array
# temporary of half a million elements is a fresh allocation, and its page
# faults cost more than the comparison itself.
_CHUNK = 32_768


def _consecutive(rows: np.ndarray) -> bool:
    """Whether ``rows`` are ``rows[0], rows[0] + 1, ...`` (one slice of the columns)."""
    if int(rows[-1]) - int(rows[0]) != len(rows) - 1:
        return False
    for i in range(0, len(rows) - 1, _CHUNK):
        part = rows[i : i + _CHUNK + 1]
        if not (part[1:] - part[:-1] == 1).all():
            return False
    return True


def _all_equal(values: np.ndarray, value: int) -> bool:
    """Whether every element of ``values`` is ``value``."""
    return all((values[i : i + _CHUNK] == value).all() for i in range(0, len(values), _CHUNK))


def _any_longer(starts: np.ndarray, ends: np.ndarray) -> bool:
    """Whether any span of these lasts longer than an instant (usually the first chunk says)."""
    return any(
        (ends[i : i + _CHUNK] > starts[i : i + _CHUNK]).any() for i in range(0, len(ends), _CHUNK)
    )
