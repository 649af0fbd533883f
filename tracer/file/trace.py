"""A loaded trace: span columns as numpy arrays, plus its tables.

Loading never executes code and never unpickles: blocks are raw numpy bytes
(``np.frombuffer``), attributes and snapshots are JSON. Everything a view
shows is computed from here, in any process, later.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from tracer import progress
from tracer.analyze import aggregate
from tracer.file import tables
from tracer.file.blocks import Block, BlockError, Context, decode
from tracer.file.errors import TraceError
from tracer.file.reading import open_for_reading
from tracer.file.store import BLOCK_COLUMNS
from tracer.file.tables import ProcessInfo, ThreadInfo

__all__ = ["ProcessInfo", "ThreadInfo", "Trace", "load"]


def _ranges(numbers: list[int]) -> str:
    """[1, 2, 3, 7] -> '1-3, 7'."""
    out: list[str] = []
    for k in numbers:
        if out and out[-1].split("-")[-1] == str(k - 1):
            out[-1] = f"{out[-1].split('-')[0]}-{k}"
        else:
            out.append(str(k))
    return ", ".join(out)


@dataclass
class _Blocks:
    """Where each block's rows start, and its attributes (checked at load)."""

    starts: np.ndarray
    attrs: list[tuple[np.ndarray | None, list | None]] = field(default_factory=list)


# What a damaged or crafted file can raise from SQLite, decoding or checking;
# each becomes one TraceError naming the file (never a traceback).
_DAMAGE = (
    sqlite3.Error, UnicodeError, ValueError, TypeError, OverflowError, RecursionError, IndexError,
)  # fmt: skip


class Trace:
    """A trace file loaded into columns; rows are spans in a stable order.

    Every value is checked once, here (``tracer.file.tables``,
    ``tracer.file.blocks``): a damaged table refuses the file with a
    ``TraceError`` naming it; a damaged block is left out and named in
    ``warnings``, which every command prints.
    """

    def __init__(self, path: str, show_internal: bool | None = None) -> None:
        """``show_internal``: keep the spans of torchscope's own machinery
        (lockstep's hooks); by default ``TORCHSCOPE_SHOW_INTERNAL=1`` decides."""
        self.path = path
        self.show_internal = (
            os.environ.get("TORCHSCOPE_SHOW_INTERNAL") == "1"
            if show_internal is None
            else show_internal
        )
        self.warnings: list[str] = []
        conn, notes = open_for_reading(path)
        self.warnings.extend(notes)
        try:
            self._load(conn)
        except TraceError:
            raise
        except _DAMAGE as exc:
            raise TraceError(
                f"{path}: the trace is damaged ({type(exc).__name__}: {exc}). "
                "Copy it again from its source, or record again."
            ) from exc
        finally:
            conn.close()

    # -- loading -----------------------------------------------------------------

    def _warn(self, message: str) -> None:
        self.warnings.append(message)

    def _load(self, conn: sqlite3.Connection) -> None:
        self.meta = tables.load_meta(conn, self.path)
        self.strings = tables.load_strings(conn, self.path)
        self.processes = tables.load_processes(conn, self.path)
        self.threads = tables.load_threads(conn, self.path, {p.part for p in self.processes})
        self._load_blocks(conn)
        self.findings = tables.load_findings(conn, self.path, self._warn)
        self.snapshots = tables.load_snapshots(conn, self.path, self._warn, self.processes)

    def _context(self) -> Context:
        thread_of: dict[int, np.ndarray] = {}
        for t in self.threads:
            table = thread_of.setdefault(t.part, np.full(0, -1, dtype=np.int64))
            if len(table) <= t.idx:
                grown = np.full(t.idx + 1, -1, dtype=np.int64)
                grown[: len(table)] = table
                table = thread_of[t.part] = grown
            table[t.idx] = t.row
        for p in self.processes:
            thread_of.setdefault(p.part, np.full(0, -1, dtype=np.int64))
        valid = np.array([s is not None for s in self.strings], dtype=bool)
        return Context(
            len(self.strings), bool(valid[1:].all()), valid, thread_of, self.show_internal
        )

    def _load_blocks(self, conn: sqlite3.Connection) -> None:
        ctx = self._context()
        blocks: list[Block] = []
        seen: dict[int, set[int]] = {}
        stored = sum(p.blocks for p in self.processes)
        for rowid, row, crc in progress.track(
            self._iter_blocks(conn), "loading trace blocks", total=stored or None
        ):
            try:
                block = decode(row, crc, ctx)
            except BlockError as exc:
                self._warn(f"block {rowid} (part {row[0]}, number {row[1]}): {exc}; left out")
                continue
            if block.seq in seen.setdefault(block.part, set()):
                self._warn(f"block {rowid}: a second copy of part {block.part}'s block "
                           f"{block.seq}; left out")  # fmt: skip
                continue
            seen[block.part].add(block.seq)
            blocks.append(block)
        for p in self.processes:
            got = seen.get(p.part, set())
            n_missing = p.blocks - sum(1 for s in got if 1 <= s <= p.blocks)
            if n_missing > 0:
                numbers = ""
                if n_missing <= 1000:  # p.blocks <= len(got) + 1000 here: a bounded range
                    missing = [k for k in range(1, p.blocks + 1) if k not in got]
                    numbers = f" (numbers {_ranges(missing)})"
                self._warn(
                    f"part {p.part} ({p.label}): {n_missing:,} of its {p.blocks:,} blocks "
                    f"missing{numbers}; their spans are left out"
                )
        blocks.sort(key=lambda b: (b.part, b.seq))  # write order within each part
        with progress.task("rebuilding call trees"):
            self._assemble(blocks)

    def _assemble(self, blocks: list[Block]) -> None:
        def cat(get, dtype) -> np.ndarray:
            return (
                np.concatenate([get(b) for b in blocks]).astype(dtype, copy=False)
                if blocks
                else np.empty(0, dtype=dtype)
            )

        self.seq = cat(lambda b: b.ids, np.int64)
        self.part = cat(lambda b: np.full(b.n, b.part, dtype=np.int32), np.int32)
        self.thread = cat(lambda b: b.threads, np.int32)
        self.start_ns = cat(lambda b: b.starts, np.int64)
        self.dur_ns = cat(lambda b: b.durs, np.int64)
        self.end_ns = self.start_ns + self.dur_ns
        self.kind = cat(lambda b: b.kinds, np.int32)
        self.name = cat(lambda b: b.names, np.int32)
        self.func = cat(lambda b: b.funcs, np.int32)
        self.n = total = len(self.seq)
        self.id = np.arange(total, dtype=np.int64)
        offsets = np.cumsum([0] + [b.n for b in blocks])[:-1].astype(np.int64)
        self._blocks = _Blocks(offsets, [(b.attr_index, b.attrs) for b in blocks])
        link_rows = [
            np.stack([b.links[:, 0] + start, b.links[:, 1]], axis=1)
            for b, start in zip(blocks, offsets.tolist())
            if b.links is not None
        ]
        self.parent = self._rebuild_parents(link_rows)

    def _iter_blocks(self, conn: sqlite3.Connection):
        """Yields (rowid, row, crc) in write order; a damaged file yields what is readable."""
        query = f"SELECT id, {BLOCK_COLUMNS}, crc FROM blocks"
        try:
            # rowid order: ORDER BY (part, seq) would copy every blob through a sorter
            # (0.13 s a million spans); the decoded blocks are sorted afterwards
            for r in conn.execute(query).fetchall():
                yield r[0], r[1:-1], r[-1]
            return
        except sqlite3.DatabaseError as exc:
            self._warn(f"reading blocks failed ({exc}); salvaging block by block")
        try:
            rowids = [r[0] for r in conn.execute("SELECT id FROM blocks")]
        except sqlite3.DatabaseError as exc:
            self._warn(f"the block index is damaged ({exc}); no span could be read")
            return
        for rowid in rowids:
            try:
                r = conn.execute(query + " WHERE id=?", (rowid,)).fetchone()
            except sqlite3.DatabaseError as exc:
                self._warn(f"block {rowid} unreadable ({exc}); left out")
                continue
            if r is not None:
                yield r[0], r[1:-1], r[-1]

    def _rebuild_parents(self, link_rows: list[np.ndarray]) -> np.ndarray:
        if self.n == 0:
            return np.empty(0, dtype=np.int64)
        # Threads of one part are distinct groups; rows are already in close
        # order within each part, because each part's blocks are in write order.
        parent = aggregate.parents(self.thread.astype(np.int64), self.seq, len(self.threads))
        if link_rows:
            # A link names a span of the same process on another thread, one
            # that started earlier (checked per block): no cycle can form.
            pairs = np.concatenate(link_rows)
            keys = (self.part.astype(np.int64) << 40) | self.seq
            order = np.argsort(keys, kind="stable")
            wanted = (self.part[pairs[:, 0]].astype(np.int64) << 40) | pairs[:, 1]
            pos = np.clip(np.searchsorted(keys[order], wanted), 0, self.n - 1)
            found = keys[order[pos]] == wanted  # not found: the parent was never flushed
            parent[pairs[found, 0]] = order[pos[found]]
        return parent

    # -- derived columns ------------------------------------------------------

    @cached_property
    def pid(self) -> np.ndarray:
        """The OS process id of each span."""
        by_part = np.zeros(max((p.part for p in self.processes), default=0) + 1, dtype=np.int64)
        for p in self.processes:
            by_part[p.part] = p.pid
        return by_part[self.part]

    @cached_property
    def tid(self) -> np.ndarray:
        """The OS thread id of each span."""
        table = np.array([t.tid for t in self.threads] + [0], dtype=np.int64)
        return table[self.thread]

    @cached_property
    def self_ns(self) -> np.ndarray:
        """Each span's own time: what its children on its own thread do not cover."""
        offsets, kids = self.children_index
        return aggregate.self_times_covered(self.start_ns, self.end_ns, self.thread, offsets, kids)

    @cached_property
    def start_order(self) -> np.ndarray:
        """Rows sorted so that every parent comes before its children."""
        return np.lexsort((self.seq, self.part))

    @cached_property
    def depth(self) -> np.ndarray:
        """Nesting depth of each span (0 for roots)."""
        return aggregate.depths(self.parent, self.start_order)

    @cached_property
    def children_index(self) -> tuple[np.ndarray, np.ndarray]:
        """CSR arrays (offsets, rows): the children of each span in start order."""
        order = self.start_order
        parents = self.parent[order]
        keyed = order[np.argsort(parents, kind="stable")]
        counts = np.bincount(parents + 1, minlength=self.n + 1)
        offsets = np.concatenate([[0], np.cumsum(counts)])
        return offsets, keyed

    def children(self, row: int) -> np.ndarray:
        """Rows of the direct children of ``row`` (-1: the roots), in start order."""
        offsets, rows = self.children_index
        return rows[offsets[row + 1] : offsets[row + 2]]

    def roots(self) -> np.ndarray:
        """Rows with no parent, in start order."""
        return self.children(-1)

    # -- strings and attributes ---------------------------------------------------

    def code(self, text: str) -> int:
        """The string code of ``text`` (-1 when the trace never used it)."""
        hits = np.flatnonzero(self.strings == text)
        return int(hits[0]) if len(hits) else -1

    def kind_of(self, row: int) -> str:
        """The kind of span ``row`` (``module.forward``...)."""
        return str(self.strings[self.kind[row]])

    def name_of(self, row: int) -> str:
        """The name of span ``row``."""
        return str(self.strings[self.name[row]])

    def func_of(self, row: int) -> str:
        """The reimpl function that produced span ``row``."""
        return str(self.strings[self.func[row]])

    def attrs(self, row: int) -> dict[str, Any]:
        """The attributes of span ``row`` (decoded and checked at load)."""
        blocks = self._blocks
        b = int(np.searchsorted(blocks.starts, row, side="right") - 1)
        index, values = blocks.attrs[b]
        if index is None or values is None:
            return {}
        slot = int(index[row - blocks.starts[b]])
        return dict(values[slot]) if slot >= 0 else {}

    def attr_values(self, rows: np.ndarray, key: str, default: Any = None) -> np.ndarray:
        """``attrs(row).get(key, default)`` for many rows at once (an object array):
        one lookup per distinct attribute object, not per row."""
        rows = np.asarray(rows, dtype=np.int64)
        out = np.full(len(rows), default, dtype=object)
        blocks = self._blocks
        which = np.searchsorted(blocks.starts, rows, side="right") - 1
        for b in np.unique(which).tolist():
            index, values = blocks.attrs[b]
            if index is None or not values:
                continue
            sel = np.flatnonzero(which == b)
            table = np.empty(len(values) + 1, dtype=object)  # slot -1: the last, the default
            table[:-1] = [v.get(key, default) for v in values]
            table[-1] = default
            out[sel] = table[index[rows[sel] - blocks.starts[b]]]
        return out

    def attr_sets(self) -> tuple[np.ndarray, list[dict[str, Any]]]:
        """(each row's index into the list, -1 for none; the distinct attribute
        dicts): every block's attributes numbered in one list, so a table of them
        (``torchscope query``'s ``attrs``) has one entry per distinct dict, not per span."""
        blocks = self._blocks
        out = np.full(self.n, -1, dtype=np.int64)
        sets: list[dict[str, Any]] = []
        ends = [*blocks.starts[1:].tolist(), self.n]
        for start, end, (index, values) in zip(blocks.starts.tolist(), ends, blocks.attrs):
            if index is None or not values:
                continue
            local = index.astype(np.int64)
            out[start:end] = np.where(local >= 0, local + len(sets), -1)
            sets.extend(values)
        return out, sets

    @cached_property
    def mirrors(self) -> dict[str, str]:
        """reimpl function -> the torch function it mirrors, as recorded."""
        return tables.mirrors(self.meta, self._warn)

    def process_of(self, row: int) -> ProcessInfo:
        """The process that recorded span ``row``."""
        part = int(self.part[row])
        return next(p for p in self.processes if p.part == part)


def load(path: str, show_internal: bool | None = None) -> Trace:
    """Loads a trace file written by the recorder (see ``Trace``)."""
    return Trace(str(path), show_internal)
