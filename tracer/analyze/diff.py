"""Two traces side by side: which spans one has and the other lacks, and where time moved.

Spans are aligned by what they are, never by span id, thread id, pid or time:

- a **lane** is a process role and thread name ("main / MainThread",
  "worker 0 / worker 0", "rank 1 / MainThread"), numbered when the same role
  comes back (each DataLoader iteration starts new "worker 0" processes);
- a **segment** is one training step of a lane: its ``step`` span and the
  top-level spans that follow it up to the next step (segment 0 holds what
  comes before the first step). A lane where only one trace marks steps is
  aligned as one segment, its ``step`` spans left out (a note says so);
- a **node** is a span's place: the node of its parent (or its segment),
  its kind, its name (a module's path) and how many siblings of the same
  kind and name came before it.

Two spans align when they have the same node. A node of one trace only is
*missing* (A only) or *extra* (B only); only the topmost such node of a
subtree is reported, with the number of spans under it. Aligned siblings
that run in another order are *reordered*: those outside the longest run
kept in the same order. Everything is done over the columnar arrays with
numba loops (one shared node table for both traces), so a pair of
million-span traces diffs in seconds. Imports and numba compilations stand
aside (``tracer.analyze.scope``), as torchscope's own spans already do.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from functools import cached_property
from typing import Any

import numpy as np
from numba import njit

from tracer.analyze import aggregate
from tracer.analyze.lanes import thread_names
from tracer.analyze.scope import aside_mask
from tracer.file.trace import Trace

SCHEMA_VERSION = 1
CHANGES = ("missing", "extra", "reordered")
# What `--kinds public` compares: the module, hook, optimizer, scheduler and
# DataLoader level, with steps, DataParallel and collectives, which both targets
# record (docs/torch-target.md); deeper spans (optim.group...) are transparent.
PUBLIC_KINDS = (
    "step", "module.forward", "module.backward", "hook.*", "optim.step", "optim.zero_grad",
    "sched.step", "data.*", "dp.*", "collective.*",
)  # fmt: skip
_SEG_BITS = 32  # a segment code is -(2 + lane << 32 | segment): never a node id


# -- kernels (plain Python first, compiled at the bottom) -----------------------


# Open addressing over numpy arrays: numba's typed Dict hashes a tuple key in
# about 150 ns, and each row needs two lookups; this is a few times faster.
_M1, _M2, _M3, _M4 = 0x5851F42D4C957F2D, 0x14057B7EF767814F, 0x2545F4914F6CDD1D, 0x1B873593


def _hash(a: int, b: int, c: int, d: int, mask: int) -> int:
    # int(): plain Python ints when run uncompiled (no numpy overflow warning);
    # compiled, int64 arithmetic that wraps. Either is a good hash.
    h = (int(a) * _M1) ^ (int(b) * _M2) ^ (int(c) * _M3) ^ (int(d) * _M4)
    return (h ^ (h >> 29)) & mask


def _assign_nodes(
    order: np.ndarray,
    parent: np.ndarray,
    keep: np.ndarray,
    segment: np.ndarray,
    kind: np.ndarray,
    name: np.ndarray,
    slots: np.ndarray,
    node_parent: np.ndarray,
    node_kind: np.ndarray,
    node_name: np.ndarray,
    node_occ: np.ndarray,
    count: int,
) -> tuple[np.ndarray, int]:
    """Each kept row's node; ``order`` visits parents first and siblings in start
    order. A row that is not kept is transparent: its kept descendants hang
    from its nearest kept ancestor, or from their segment code when there is
    none (a root, a step left out). ``slots`` (a hash table: rows of parent,
    kind, name, occurrence and node id, -1 empty; a power of two at least
    twice the nodes) and the node arrays are
    shared by both traces: the second trace finds the first one's nodes there."""
    n = len(order)
    node = np.full(n, -1, dtype=np.int64)
    anchor = np.full(n, -1, dtype=np.int64)  # node of the nearest kept ancestor-or-self
    # this trace's occurrences of (parent node, kind, name) so far, the same way;
    # a row of a table holds its whole key, so a probe touches one cache line
    size = 1
    while size < 2 * n + 2:
        size *= 2
    seen = np.full((size, 4), -1, dtype=np.int64)  # up, kind, name, count (-1: empty)
    mask = len(slots) - 1
    for row in order:
        p = parent[row]
        up = segment[row]
        if p >= 0 and anchor[p] >= 0:
            up = anchor[p]
        if not keep[row]:
            if up >= 0:
                anchor[row] = up
            continue
        k = np.int64(kind[row])
        nm = np.int64(name[row])
        i = _hash(up, k, nm, 0, size - 1)
        while seen[i, 3] >= 0 and not (seen[i, 0] == up and seen[i, 1] == k and seen[i, 2] == nm):
            i = (i + 1) & (size - 1)
        if seen[i, 3] < 0:
            seen[i, 0], seen[i, 1], seen[i, 2], seen[i, 3] = up, k, nm, 0
        occ = seen[i, 3]
        seen[i, 3] = occ + 1
        j = _hash(up, k, nm, occ, mask)
        while slots[j, 4] >= 0 and not (
            slots[j, 0] == up and slots[j, 1] == k and slots[j, 2] == nm and slots[j, 3] == occ
        ):
            j = (j + 1) & mask
        found = slots[j, 4]
        if found < 0:
            found = count
            slots[j, 0], slots[j, 1], slots[j, 2], slots[j, 3], slots[j, 4] = up, k, nm, occ, found
            node_parent[count] = up
            node_kind[count] = k
            node_name[count] = nm
            node_occ[count] = occ
            count += 1
        node[row] = found
        anchor[row] = found
    return node, count


def _out_of_order(group: np.ndarray, pos_b: np.ndarray) -> np.ndarray:
    """Rows sorted by (group, position in A): marks those outside the longest
    increasing run of B positions within their group (patience sorting)."""
    n = len(group)
    out = np.zeros(n, dtype=np.bool_)
    tails = np.empty(n, dtype=np.int64)  # index of the smallest tail of each run length
    prev = np.empty(n, dtype=np.int64)
    start = 0
    while start < n:
        end = start
        while end < n and group[end] == group[start]:
            end += 1
        length = 0
        for i in range(start, end):
            lo, hi = 0, length
            while lo < hi:
                mid = (lo + hi) // 2
                if pos_b[tails[mid]] < pos_b[i]:
                    lo = mid + 1
                else:
                    hi = mid
            prev[i] = tails[lo - 1] if lo > 0 else -1
            tails[lo] = i
            if lo == length:
                length += 1
        for i in range(start, end):
            out[i] = True
        i = tails[length - 1] if length > 0 else -1
        while i >= 0:
            out[i] = False
            i = prev[i]
        start = end
    return out


_hash = njit(cache=True, nogil=True)(_hash)
assign_nodes = njit(cache=True, nogil=True)(_assign_nodes)
out_of_order = njit(cache=True, nogil=True)(_out_of_order)


# -- one side ------------------------------------------------------------------


@dataclass
class Side:
    """One trace prepared for alignment: its rows' nodes, lanes and segments."""

    trace: Trace
    label: str
    kind: np.ndarray  # kind and name codes in the shared string table
    name: np.ndarray
    keep: np.ndarray  # not an import, compilation or left-out step
    lane: np.ndarray  # lane of each row's top ancestor (shared lane numbers)
    segment: np.ndarray  # segment code of each row (negative)
    own_lane: np.ndarray  # lane of each row's own thread
    steps: dict[int, list[int]] = field(default_factory=dict)  # lane -> step rows
    node: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))

    @property
    def n_kept(self) -> int:
        return int(self.keep.sum())


def _shared_codes(trace: Trace, table: dict[Any, int]) -> np.ndarray:
    """The trace's string codes renumbered into ``table`` (both traces share it)."""
    codes = [table.setdefault(s, len(table)) for s in trace.strings.tolist()]
    return np.asarray(codes, dtype=np.int64)


def lane_labels(trace: Trace) -> dict[int, str]:
    """Thread row -> "process role / thread label", numbered like the views number
    them; ids never enter the label, so two runs of a program name lanes alike."""
    seen: dict[str, int] = {}
    role_of: dict[int, str] = {}
    for p in sorted(trace.processes, key=lambda p: (p.start_ns or 0, p.part)):
        role = p.role if p.role_index is None else f"{p.role} {p.role_index}"
        seen[role] = seen.get(role, 0) + 1
        role_of[p.part] = role if seen[role] == 1 else f"{role} #{seen[role]}"
    names = thread_names(trace)
    return {t.row: f"{role_of.get(t.part, '?')} / {names[t.row]}" for t in trace.threads}


def _segment_code(lane: np.ndarray, seg: np.ndarray) -> np.ndarray:
    return -(2 + ((lane.astype(np.int64) << _SEG_BITS) | seg.astype(np.int64)))


def kinds_matching(trace: Trace, patterns: Sequence[str]) -> list[int]:
    """String codes of the kinds ``patterns`` name (``module.forward``, ``hook.*``)."""
    names = {str(trace.strings[c]) for c in np.unique(trace.kind).tolist()}
    return [trace.code(k) for k in sorted(names) if any(fnmatchcase(k, p) for p in patterns)]


def _prepare(
    trace: Trace,
    label: str,
    strings: dict[Any, int],
    lanes: dict[str, int],
    drop: set[str],
    kinds: Sequence[str] | None,
) -> Side:
    codes = _shared_codes(trace, strings)
    kind = codes[trace.kind] if trace.n else np.empty(0, dtype=np.int64)
    name = codes[trace.name] if trace.n else np.empty(0, dtype=np.int64)
    keep = ~aside_mask(trace)
    if kinds is not None:  # the other kinds are transparent: their children rise
        keep &= np.isin(trace.kind, kinds_matching(trace, kinds))
    dropped = [trace.code(k) for k in drop if trace.code(k) >= 0]
    if dropped:  # a dropped span takes its subtree with it, as an import does
        seed = np.where(np.isin(trace.kind, dropped), np.arange(trace.n), -1).astype(np.int64)
        keep &= aggregate.inherit(trace.parent, trace.start_order, seed) < 0
    labels = lane_labels(trace)
    thread_lane = np.array(
        [lanes.setdefault(labels[t.row], len(lanes)) for t in trace.threads]
        + [lanes.setdefault("? / unknown thread", len(lanes))],
        dtype=np.int64,
    )
    roots = trace.parent < 0
    seed = np.where(roots, thread_lane[trace.thread], -1).astype(np.int64)
    lane = aggregate.inherit(trace.parent, trace.start_order, seed) if trace.n else seed
    own = thread_lane[trace.thread] if trace.n else seed
    side = Side(trace, label, kind, name, keep, lane, np.zeros(trace.n, dtype=np.int64), own)
    step_code = trace.code("step")
    if step_code >= 0:
        root_rows = trace.start_order[roots[trace.start_order]]
        for r in root_rows[(trace.kind[root_rows] == step_code) & keep[root_rows]].tolist():
            side.steps.setdefault(int(lane[r]), []).append(int(r))
    return side


def _segment(side: Side, step_lanes: set[int], flat_lanes: set[int]) -> None:
    """Numbers the top-level spans of each lane by the step they follow (0: before
    the first); in ``flat_lanes`` the steps are left out and their children rise."""
    trace = side.trace
    if trace.n == 0:
        return
    order = trace.start_order
    is_root = trace.parent[order] < 0
    roots = order[is_root]
    in_steps = np.isin(side.lane[roots], list(step_lanes))
    is_step = np.zeros(len(roots), dtype=np.int64)
    if step_lanes:
        is_step = (
            in_steps & np.isin(roots, [r for rows in side.steps.values() for r in rows])
        ).astype(np.int64)
    by_lane = np.argsort(side.lane[roots], kind="stable")  # start order kept within a lane
    counts = np.cumsum(is_step[by_lane])
    lane_sorted = side.lane[roots][by_lane]
    first = np.searchsorted(lane_sorted, lane_sorted, side="left")
    before = np.where(first > 0, counts[first - 1], 0)
    seg = np.zeros(len(roots), dtype=np.int64)
    seg[by_lane] = counts - before
    seed = np.full(trace.n, 0, dtype=np.int64)
    seed[roots] = _segment_code(side.lane[roots], seg)
    # every row carries its root's segment code: inherit from the nearest seeded row
    marker = np.where(trace.parent < 0, np.arange(trace.n), -1).astype(np.int64)
    top = aggregate.inherit(trace.parent, order, marker)
    side.segment = seed[top]
    for lane in flat_lanes:
        for r in side.steps.get(lane, []):
            side.keep[r] = False


# -- the comparison -------------------------------------------------------------


@dataclass
class Diff:
    """Two traces aligned: nodes, who has them, and what differs."""

    a: Side
    b: Side
    strings: list[Any]
    lanes: list[str]
    node_parent: np.ndarray
    node_kind: np.ndarray
    node_name: np.ndarray
    node_occ: np.ndarray
    row_a: np.ndarray  # node -> row in A (-1: none)
    row_b: np.ndarray
    change: np.ndarray  # node -> 0 same, 1 missing, 2 extra, 3 reordered (reported nodes)
    size: np.ndarray  # spans under a reported missing/extra node, itself included
    notes: list[str]
    step_lanes: set[int]

    @property
    def n_nodes(self) -> int:
        return len(self.node_parent)

    def counts(self) -> dict[str, int]:
        """Reported changes of each kind, and aligned spans."""
        out = {c: int((self.change == i + 1).sum()) for i, c in enumerate(CHANGES)}
        out["aligned"] = int(((self.row_a >= 0) & (self.row_b >= 0)).sum())
        return out

    @cached_property
    def lane_rank(self) -> np.ndarray:
        """Each lane's place when listed: by name, numbers in numeric order
        (``main``, ``rank 0``, ``rank 1``, ``worker 0``, ``worker 0 #2``...)."""

        def natural(label: str) -> list:
            label = label.replace("#", "~")  # "worker 0 / ..." before "worker 0 #2 / ..."
            return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", label)]

        order = sorted(range(len(self.lanes)), key=lambda k: natural(self.lanes[k]))
        rank = np.empty(len(self.lanes), dtype=np.int64)
        rank[order] = np.arange(len(order))
        return rank

    @property
    def structural(self) -> bool:
        """Whether the two traces differ in structure (not only in time)."""
        return bool((self.change > 0).any())

    def label(self, node: int) -> str:
        """``kind name`` (and ``#k`` from the second of its siblings on)."""
        text = f"{self.strings[self.node_kind[node]]} {self.strings[self.node_name[node]]}"
        return text if self.node_occ[node] == 0 else f"{text} #{self.node_occ[node] + 1}"

    def path(self, node: int) -> list[int]:
        """Nodes from the segment's top-level span down to ``node``."""
        out = []
        while node >= 0:
            out.append(int(node))
            node = int(self.node_parent[node])
        return out[::-1]

    def segments(self, nodes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(lane, segment) of each node, read from its row in A or else in B."""
        code = np.full(len(nodes), -2, dtype=np.int64)
        for side, rows in ((self.b, self.row_b[nodes]), (self.a, self.row_a[nodes])):
            has = rows >= 0  # A's segment where the node is in A, else B's
            code[has] = side.segment[rows[has]]
        value = -code - 2
        return value >> _SEG_BITS, value & ((1 << _SEG_BITS) - 1)

    def segment_of(self, node: int) -> tuple[int, int]:
        """(lane, segment) of one node."""
        lane, seg = self.segments(np.array([node], dtype=np.int64))
        return int(lane[0]), int(seg[0])

    def step_info(self, lane: int, seg: int) -> dict[str, Any] | None:
        """The step a segment follows: its position, index and name (either trace's)."""
        if seg == 0 or lane not in self.step_lanes:
            return None
        for side in (self.a, self.b):
            rows = side.steps.get(lane, [])
            if seg <= len(rows):
                row = rows[seg - 1]
                index = side.trace.attrs(row).get("index")
                return {
                    "ordinal": seg - 1,
                    "index": index if isinstance(index, int) else None,
                    "name": side.trace.name_of(row),
                }
        return None


def _drop_kinds(a: Trace, b: Trace, notes: list[str]) -> set[str]:
    """Kinds only one trace could record: left out of the alignment, with a note."""
    on_a = a.meta.get("backward_spans", "yes") != "no"
    on_b = b.meta.get("backward_spans", "yes") != "no"
    if on_a != on_b:
        notes.append(
            f"{'B' if on_a else 'A'} was recorded with --no-backward-spans: "
            "module.backward spans are left out of the comparison"
        )
        return {"module.backward"}
    return set()


def diff(a: Trace, b: Trace, kinds: Sequence[str] | None = None) -> Diff:
    """Aligns ``b`` against ``a`` (see the module docstring). ``kinds``: compare
    only spans of these kinds (patterns; ``["public"]`` is ``PUBLIC_KINDS``),
    the others transparent; None compares every kind. ValueError when no
    span of either trace is of those kinds (a mistyped pattern)."""
    notes: list[str] = []
    drop = _drop_kinds(a, b, notes)
    if kinds is not None:
        kinds = [k for p in kinds for k in (PUBLIC_KINDS if p == "public" else (p,))]
        notes.append(f"compared kinds: {', '.join(kinds)} (the others are transparent)")
    strings: dict[Any, int] = {}
    lanes: dict[str, int] = {}
    sa = _prepare(a, "A", strings, lanes, drop, kinds)
    sb = _prepare(b, "B", strings, lanes, drop, kinds)
    if kinds is not None and sa.n_kept + sb.n_kept == 0 and a.n + b.n > 0:
        there = sorted({str(t.strings[c]) for t in (a, b) for c in np.unique(t.kind).tolist()})
        raise ValueError(
            f"no span of the kinds {', '.join(kinds)} in either trace; the traces hold "
            f"{', '.join(there)} (patterns: 'module.*', or 'public')"
        )
    lane_names = list(lanes)
    step_lanes, flat_lanes = set(), set()
    for lane in set(sa.steps) | set(sb.steps):
        if lane in sa.steps and lane in sb.steps:
            step_lanes.add(lane)
        else:
            flat_lanes.add(lane)
            has, lacks = ("A", "B") if lane in sa.steps else ("B", "A")
            notes.append(
                f"lane {lane_names[lane]}: only {has} marks steps ({lacks} has no step "
                "spans); aligned as one segment, the step spans left out"
            )
    for side in (sa, sb):
        _segment(side, step_lanes, flat_lanes)
    cap = max(sa.n_kept + sb.n_kept, 1)
    node_parent = np.empty(cap, dtype=np.int64)
    node_kind = np.empty(cap, dtype=np.int64)
    node_name = np.empty(cap, dtype=np.int64)
    node_occ = np.empty(cap, dtype=np.int64)
    size = 1
    while size < 2 * cap + 2:
        size *= 2
    slots = np.full((size, 5), -1, dtype=np.int64)
    count = 0
    for side in (sa, sb):
        tr = side.trace
        side.node, count = assign_nodes(
            tr.start_order, tr.parent, side.keep, side.segment, side.kind, side.name,
            slots, node_parent, node_kind, node_name, node_occ, count,
        )  # fmt: skip
    row_a = _rows_of(sa, count)
    row_b = _rows_of(sb, count)
    node_parent = node_parent[:count]
    change, size = _changes(sa, sb, node_parent, row_a, row_b)
    targets = {t.meta.get("target", "reimpl") for t in (a, b)}
    if kinds is None and len(targets) > 1 and change.any():
        notes.append(
            "the traces come from different targets; reimpl records deeper spans than torch "
            "lets the torch target see: --kinds public compares what both record"
        )
    return Diff(
        sa, sb, list(strings), lane_names, node_parent, node_kind[:count], node_name[:count],
        node_occ[:count], row_a, row_b, change, size, notes, step_lanes,
    )  # fmt: skip


def _rows_of(side: Side, count: int) -> np.ndarray:
    out = np.full(count, -1, dtype=np.int64)
    rows = np.flatnonzero(side.node >= 0)
    out[side.node[rows]] = rows
    return out


def _changes(
    sa: Side, sb: Side, node_parent: np.ndarray, row_a: np.ndarray, row_b: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    count = len(node_parent)
    change = np.zeros(count, dtype=np.int8)
    size = np.zeros(count, dtype=np.int64)
    in_a, in_b = row_a >= 0, row_b >= 0
    up = np.maximum(node_parent, 0)
    parent_both = (node_parent < 0) | (in_a[up] & in_b[up])
    for code, mine, theirs, side, rows in ((1, in_a, in_b, sa, row_a), (2, in_b, in_a, sb, row_b)):
        top = mine & ~theirs & parent_both
        change[top] = code
        # spans under each reported node: its row, inherited down the tree and counted
        tr = side.trace
        seed = np.full(tr.n, -1, dtype=np.int64)
        seed[rows[top]] = rows[top]
        below = aggregate.inherit(tr.parent, tr.start_order, seed) if tr.n else seed
        counted = below[(below >= 0) & side.keep]
        per_row = np.bincount(counted, minlength=tr.n) if tr.n else np.zeros(0, np.int64)
        size[top] = per_row[rows[top]]
    both = np.flatnonzero(in_a & in_b & parent_both)
    if len(both):
        pos_a = np.empty(sa.trace.n, dtype=np.int64)
        pos_a[sa.trace.start_order] = np.arange(sa.trace.n)
        pos_b = np.empty(sb.trace.n, dtype=np.int64)
        pos_b[sb.trace.start_order] = np.arange(sb.trace.n)
        pa, pb = pos_a[row_a[both]], pos_b[row_b[both]]
        # siblings on two threads (replicas under parallel_apply) run side by side:
        # only the order of siblings on one thread says anything
        lane = sa.own_lane[row_a[both]]
        order = np.lexsort((pa, lane, node_parent[both]))
        up, ln = node_parent[both][order], lane[order]
        group = np.cumsum(np.r_[False, (up[1:] != up[:-1]) | (ln[1:] != ln[:-1])])
        moved = out_of_order(group, pb[order])
        change[both[order][moved]] = 3
    return change, size
