"""A loaded trace: span columns as numpy arrays, plus its tables.

Loading never executes code and never unpickles: blocks are raw numpy bytes
(``np.frombuffer``), attributes and snapshots are JSON. Everything a view
shows is computed from here, in any process, later.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import zlib
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from tracer.analyze import aggregate
from tracer.file.errors import TraceError
from tracer.file.store import STRING_DTYPE, THREAD_DTYPE, TIME_DTYPE, open_for_reading

_NO_THREADS = np.full(1 << 16, -1, dtype=np.int64)  # a part whose thread rows were lost


@dataclass(frozen=True)
class ProcessInfo:
    """One process that wrote into the trace (main, worker k, rank r)."""

    part: int
    pid: int
    ppid: int | None
    role: str
    role_index: int | None
    host: str | None
    argv: list[str]
    start_ns: int | None
    end_ns: int | None
    status: str

    @property
    def label(self) -> str:
        """How views name the process's lane."""
        role = self.role if self.role_index is None else f"{self.role} {self.role_index}"
        return f"{role} (pid {self.pid})"


@dataclass(frozen=True)
class ThreadInfo:
    """One thread of one process, with the device it serves when known."""

    row: int
    part: int
    tid: int
    name: str
    device: str | None

    @property
    def label(self) -> str:
        """How views name the thread's lane."""
        return self.name if self.device is None else f"{self.name} [{self.device}]"


@dataclass
class _Blocks:
    """Where each block's rows start, to find a row's attributes lazily."""

    starts: np.ndarray
    rowids: list[int]
    cache: dict[int, tuple[np.ndarray | None, list | None]] = field(default_factory=dict)


class Trace:
    """A trace file loaded into columns; rows are spans in a stable order."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.warnings: list[str] = []
        self._attr_conn: sqlite3.Connection | None = None
        self._attr_lock = threading.Lock()
        conn = open_for_reading(path)
        try:
            self._load(conn)
        except sqlite3.DatabaseError as exc:
            raise TraceError(
                f"{path}: the trace is damaged or truncated ({exc}). "
                "Copy it again from its source, or record again."
            ) from exc
        finally:
            conn.close()

    # -- loading -----------------------------------------------------------------

    def _load(self, conn: sqlite3.Connection) -> None:
        self.meta: dict[str, str] = dict(conn.execute("SELECT key, value FROM meta"))
        self.strings = self._load_strings(conn)
        self.processes = [
            ProcessInfo(part, pid, ppid, role, idx, host, json.loads(argv or "[]"), s, e, st)
            for part, pid, ppid, role, idx, host, argv, s, e, st in conn.execute(
                "SELECT part, pid, ppid, role, role_index, host, argv, start_ns, end_ns, status "
                "FROM processes ORDER BY part"
            )
        ]
        thread_rows = conn.execute(
            "SELECT part, idx, tid, name, device FROM threads ORDER BY part, idx"
        ).fetchall()
        self.threads = [
            ThreadInfo(row, part, tid, name, device)
            for row, (part, _idx, tid, name, device) in enumerate(thread_rows)
        ]
        thread_of: dict[int, np.ndarray] = {}
        for row, (part, idx, *_rest) in enumerate(thread_rows):
            table = thread_of.get(part)
            if table is None or len(table) <= idx:
                grown = np.full(max(idx + 1, 2 * len(table) if table is not None else 8), -1)
                if table is not None:
                    grown[: len(table)] = table
                table = thread_of[part] = grown
            table[idx] = row
        self._load_blocks(conn, thread_of)
        self.findings = [
            {
                "id": i,
                "detector": d,
                "severity": s,
                "message": m,
                "span": sp,
                "data": json.loads(data) if data else None,
            }
            for i, d, s, m, sp, data in conn.execute(
                "SELECT id, detector, severity, message, span, data FROM findings ORDER BY id"
            )
        ]
        self.snapshots = [
            {"part": part, "t_ns": t, "kind": kind, "key": key, "payload": json.loads(payload)}
            for part, t, kind, key, payload in conn.execute(
                "SELECT part, t_ns, kind, key, payload FROM snapshots ORDER BY id"
            )
        ]

    @staticmethod
    def _load_strings(conn: sqlite3.Connection) -> np.ndarray:
        rows = conn.execute("SELECT id, text FROM strings").fetchall()
        size = max((r[0] for r in rows), default=0) + 1
        table = np.empty(size, dtype=object)
        for sid, text in rows:
            table[sid] = text
        return table

    def _load_blocks(self, conn: sqlite3.Connection, thread_of: dict) -> None:
        cols: dict[str, list[np.ndarray]] = {
            k: [] for k in ("ids", "part", "thread", "start", "dur", "kind", "name", "func")
        }
        link_rows: list[np.ndarray] = []
        block_starts: list[int] = []
        rowids: list[int] = []
        total = 0
        for rowid, part, n, base, ids, thr, st, du, ki, na, fu, links in self._iter_blocks(conn):
            try:
                id_col = np.frombuffer(ids, dtype="<u4" if len(ids) == 4 * n else "<i8")
                local_threads = np.frombuffer(thr, dtype=THREAD_DTYPE)
                columns = (
                    id_col.astype(np.int64) + base,
                    np.full(n, part, dtype=np.int32),
                    thread_of.get(part, _NO_THREADS)[local_threads],
                    np.frombuffer(st, dtype=TIME_DTYPE),
                    np.frombuffer(du, dtype=TIME_DTYPE),
                    np.frombuffer(ki, dtype=STRING_DTYPE),
                    np.frombuffer(na, dtype=STRING_DTYPE),
                    np.frombuffer(fu, dtype=STRING_DTYPE),
                )
                if any(len(c) != n for c in columns):
                    raise ValueError("column lengths differ")
            except (ValueError, TypeError, IndexError) as exc:
                self.warnings.append(f"block {rowid} unreadable ({exc}); skipped")
                continue
            for key, col in zip(cols, columns):
                cols[key].append(col)
            if links is not None:
                pairs = np.frombuffer(links, dtype="<i8").reshape(-1, 2).copy()
                pairs[:, 0] += total
                link_rows.append(pairs)
            block_starts.append(total)
            rowids.append(rowid)
            total += n
        joined = {
            k: (np.concatenate(v) if v else np.empty(0, dtype=np.int64)) for k, v in cols.items()
        }
        self.n = total
        self.seq = joined["ids"]
        self.part = joined["part"].astype(np.int32)
        self.thread = joined["thread"].astype(np.int32)
        self.start_ns = joined["start"].astype(np.int64)
        self.dur_ns = joined["dur"].astype(np.int64)
        self.end_ns = self.start_ns + self.dur_ns
        self.kind = joined["kind"].astype(np.int32)
        self.name = joined["name"].astype(np.int32)
        self.func = joined["func"].astype(np.int32)
        self.id = np.arange(total, dtype=np.int64)
        self._blocks = _Blocks(np.array(block_starts, dtype=np.int64), rowids)
        self.parent = self._rebuild_parents(link_rows)

    def _iter_blocks(self, conn: sqlite3.Connection):
        """Yields blocks in write order; a damaged file yields what is readable."""
        query = (
            "SELECT id, part, n, id_base, ids, threads, starts, durs, kinds, names, funcs, links "
            "FROM blocks"
        )
        try:
            yield from conn.execute(query + " ORDER BY part, id").fetchall()
            return
        except sqlite3.DatabaseError as exc:
            self.warnings.append(f"reading blocks failed ({exc}); salvaging block by block")
        rowids = [r[0] for r in conn.execute("SELECT id FROM blocks ORDER BY part, id")]
        for rowid in rowids:
            try:
                row = conn.execute(query + " WHERE id=?", (rowid,)).fetchone()
            except sqlite3.DatabaseError:
                self.warnings.append(f"block {rowid} unreadable; skipped")
                continue
            if row is not None:
                yield row

    def _rebuild_parents(self, link_rows: list[np.ndarray]) -> np.ndarray:
        if self.n == 0:
            return np.empty(0, dtype=np.int64)
        # Threads of one part are distinct groups; rows are already in close
        # order within each part, because each part's blocks are in write order.
        group = self.thread.astype(np.int64)
        group[group < 0] = len(self.threads)
        parent = aggregate.parents(group, self.seq, len(self.threads) + 1)
        if link_rows:
            # A link names a span of the same process on another thread.
            pairs = np.concatenate(link_rows)
            keys = (self.part.astype(np.int64) << 40) | self.seq
            order = np.argsort(keys, kind="stable")
            wanted = (self.part[pairs[:, 0]].astype(np.int64) << 40) | pairs[:, 1]
            pos = np.clip(np.searchsorted(keys[order], wanted), 0, self.n - 1)
            found = keys[order[pos]] == wanted
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
        """Each span's own time, children excluded."""
        return aggregate.self_times(self.parent, self.dur_ns)

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
        """The attributes of span ``row``, decoded on demand."""
        blocks = self._blocks
        b = int(np.searchsorted(blocks.starts, row, side="right") - 1)
        if b not in blocks.cache:
            blocks.cache[b] = self._read_block_attrs(blocks.rowids[b])
        index, values = blocks.cache[b]
        if index is None or values is None:
            return {}
        slot = int(index[row - blocks.starts[b]])
        return dict(values[slot]) if slot >= 0 else {}

    def _read_block_attrs(self, rowid: int) -> tuple[np.ndarray | None, list | None]:
        # One read-only connection for every later attribute read (a trace of
        # one-second flushes has thousands of blocks), opened on first use.
        with self._attr_lock:
            if self._attr_conn is None:
                self._attr_conn = open_for_reading(self.path)
            index, blob = self._attr_conn.execute(
                "SELECT attr_index, attrs FROM blocks WHERE id=?", (rowid,)
            ).fetchone()
        if index is None or blob is None:
            return None, None
        return np.frombuffer(index, dtype="<i4"), json.loads(zlib.decompress(blob))

    @cached_property
    def mirrors(self) -> dict[str, str]:
        """reimpl function -> the torch function it mirrors, as recorded."""
        return json.loads(self.meta.get("mirrors", "{}"))

    def process_of(self, row: int) -> ProcessInfo:
        """The process that recorded span ``row``."""
        part = int(self.part[row])
        return next(p for p in self.processes if p.part == part)


def load(path: str) -> Trace:
    """Loads a trace file written by the recorder."""
    return Trace(str(path))
