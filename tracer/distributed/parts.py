"""Reading the part files of a distributed run, one host's file at a time.

A part file is an ordinary trace (one per host: the ranks of a host share
it, each in its own part). Its small tables are loaded and checked by
``tracer.file.tables``; its blocks are streamed one at a time through the
same checks the loader uses (``tracer.file.blocks.decode``), so merging
never holds more than one block of spans in memory.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from tracer.distributed import clock
from tracer.file import tables
from tracer.file.blocks import Block, BlockError, Context, decode
from tracer.file.reading import open_for_reading
from tracer.file.store import BLOCK_COLUMNS
from tracer.file.tables import ProcessInfo, ThreadInfo


@dataclass
class PartFile:
    """One input of a merge: a host's trace, its tables, and its clock offset."""

    path: str
    conn: sqlite3.Connection
    meta: dict[str, str]
    strings: np.ndarray
    processes: list[ProcessInfo]
    threads: list[ThreadInfo]
    snapshots: list[dict]
    warnings: list[str] = field(default_factory=list)
    shift_ns: int = 0  # added to every time: this host's clock -> rank 0's
    error_ns: int | None = None  # the bound on that shift (None: no estimate)
    estimates: list[dict] = field(default_factory=list)

    def shifted(self, times: np.ndarray) -> np.ndarray:
        """Local times of this host moved onto rank 0's timeline: by the offset
        estimated at start, or interpolated between a long run's estimates."""
        if len(self.estimates) < 2:
            return times + self.shift_ns
        return times + clock.offset_at(self.estimates, times)

    def shifted_one(self, t: int | None) -> int | None:
        """``shifted`` for one time (None stays None)."""
        return None if t is None else int(self.shifted(np.array([t], dtype=np.int64))[0])

    @property
    def ranks(self) -> dict[int, int]:
        """part -> rank, from each part's role or its ``rank`` snapshot."""
        out = {p.part: p.role_index for p in self.processes if p.role == "rank"}
        for s in self.snapshots:
            if s["kind"] == "rank" and isinstance(s["payload"].get("rank"), int):
                out[s["part"]] = s["payload"]["rank"]
        return {k: v for k, v in out.items() if isinstance(v, int)}

    @property
    def host(self) -> str:
        """The host that wrote it (the first part's)."""
        return next((p.host for p in self.processes if p.host), "?")

    def context(self) -> Context:
        """What each block is checked against (strings, each part's threads)."""
        thread_of = {p.part: np.full(0, -1, np.int64) for p in self.processes}
        for t in self.threads:
            table = thread_of[t.part]
            if len(table) <= t.idx:
                table = thread_of[t.part] = np.concatenate(
                    [table, np.full(t.idx + 1 - len(table), -1, np.int64)]
                )
            table[t.idx] = t.row
        valid = np.array([s is not None for s in self.strings], dtype=bool)
        return Context(len(self.strings), bool(valid[1:].all()), valid, thread_of, True)

    def blocks(self) -> Iterator[Block]:
        """Every readable block, in write order; a damaged one is named in ``warnings``."""
        ctx = self.context()
        query = f"SELECT id, {BLOCK_COLUMNS}, crc FROM blocks ORDER BY id"
        for r in self.conn.execute(query):
            try:
                yield decode(r[1:-1], r[-1], ctx)
            except BlockError as exc:
                self.warnings.append(f"{self.path}: block {r[0]}: {exc}; left out")

    def close(self) -> None:
        """Closes the connection."""
        self.conn.close()


def open_part_file(path: str) -> PartFile:
    """Opens one input and decides its clock shift (TraceError when it is no trace)."""
    conn, notes = open_for_reading(path)
    try:
        meta = tables.load_meta(conn, path)
        strings = tables.load_strings(conn, path)
        processes = tables.load_processes(conn, path)
        threads = tables.load_threads(conn, path, {p.part for p in processes})
        warnings = [f"{path}: {n}" for n in notes]
        snapshots = tables.load_snapshots(conn, path, warnings.append, processes)
    except BaseException:
        conn.close()
        raise
    pf = PartFile(path, conn, meta, strings, processes, threads, snapshots, warnings)
    if 0 in pf.ranks.values():
        pf.error_ns = 0  # rank 0's own host: the reference timeline
    else:
        found = clock.alignment(snapshots, set(pf.ranks))
        if found is not None:
            pf.shift_ns, pf.error_ns, pf.estimates = found
    return pf


def thread_index(pf: PartFile) -> np.ndarray:
    """Thread row -> the thread's index within its part (what blocks store)."""
    return np.array([t.idx for t in pf.threads] + [0], dtype=np.int64)


def label(path: str) -> str:
    """A short name for an input in messages."""
    return os.path.basename(path)
