"""The trace file: one SQLite database whose spans are stored as columnar blocks.

Layout (schema version 1):

* ``meta(key, value)``: schema version, command, versions, the mirror map.
* ``strings(id, text)``: kinds, names and function names, interned once.
* ``processes(part, pid, ppid, role, role_index, ...)``: one row per process
  that wrote into the trace (its *part*); a forked DataLoader worker or a
  distributed rank gets its own part.
* ``threads(part, idx, tid, name, device)``.
* ``blocks``: one row per flushed batch; each span column is a numpy array
  stored as a raw little-endian blob (never a pickle). Writing a million
  spans is a handful of inserts instead of a million, which is what keeps
  writing and loading in tenths of a second.
* ``snapshots`` (model structure and the like, JSON) and ``findings``.

Every flush is one transaction, so a process killed with SIGKILL leaves a
file holding everything up to its last flush. ``synchronous=OFF``: the data
survives the *process* dying (it is in the OS page cache), not a power cut,
which is the right trade for a debugging trace.
"""

from __future__ import annotations

import json
import os
import sqlite3
import zlib
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from tracer.file.errors import TraceError

SCHEMA_VERSION = 1
SQLITE_MAGIC = b"SQLite format 3\x00"

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS strings(id INTEGER PRIMARY KEY, text TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS processes(
    part INTEGER PRIMARY KEY AUTOINCREMENT, pid INTEGER NOT NULL, ppid INTEGER,
    role TEXT NOT NULL, role_index INTEGER, host TEXT, argv TEXT,
    start_ns INTEGER, end_ns INTEGER, status TEXT NOT NULL DEFAULT 'running');
CREATE TABLE IF NOT EXISTS threads(
    part INTEGER NOT NULL, idx INTEGER NOT NULL, tid INTEGER NOT NULL,
    name TEXT NOT NULL, device TEXT, PRIMARY KEY(part, idx));
CREATE TABLE IF NOT EXISTS blocks(
    id INTEGER PRIMARY KEY, part INTEGER NOT NULL, n INTEGER NOT NULL,
    id_base INTEGER NOT NULL, ids BLOB, threads BLOB, starts BLOB, durs BLOB,
    kinds BLOB, names BLOB, funcs BLOB, links BLOB, attr_index BLOB, attrs BLOB);
CREATE TABLE IF NOT EXISTS snapshots(
    id INTEGER PRIMARY KEY, part INTEGER NOT NULL, t_ns INTEGER NOT NULL,
    kind TEXT NOT NULL, key TEXT NOT NULL, payload TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS findings(
    id INTEGER PRIMARY KEY, detector TEXT NOT NULL, severity TEXT NOT NULL,
    message TEXT NOT NULL, span INTEGER, data TEXT);
"""

# Column dtypes on disk. ids are offsets from the block's id_base; a block
# whose id range does not fit 32 bits stores int64 (told apart by blob size).
THREAD_DTYPE = np.dtype("<u2")
STRING_DTYPE = np.dtype("<u4")
TIME_DTYPE = np.dtype("<i8")


def connect(path: str, *, readonly: bool = False) -> sqlite3.Connection:
    """Opens the SQLite file with the pragmas every torchscope connection uses."""
    if readonly:
        uri = f"file:{os.path.abspath(path)}?mode=ro"
        conn = sqlite3.connect(uri, uri=True, timeout=30, check_same_thread=False)
    else:
        conn = sqlite3.connect(path, timeout=30, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA journal_mode=DELETE")
        conn.execute("PRAGMA synchronous=OFF")
    return conn


def _jsonable(value: object) -> object:
    """Fallback for attribute values json cannot encode: shapes, dtypes, devices."""
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=str)
    shape = getattr(value, "shape", None)
    if shape is not None and hasattr(value, "dtype"):
        return {"shape": list(shape), "dtype": str(value.dtype)}
    return str(value)


def encode_json(obj: object) -> str:
    """JSON text for attributes and snapshots; unknown objects become strings."""
    return json.dumps(obj, default=_jsonable, separators=(",", ":"))


@dataclass
class Batch:
    """One flushed batch in columnar form, ready to be written as a block."""

    id_base: int
    ids: np.ndarray
    threads: np.ndarray
    starts: np.ndarray
    durs: np.ndarray
    kinds: np.ndarray
    names: np.ndarray
    funcs: np.ndarray
    links: np.ndarray | None  # (k, 2) int64 pairs (row, linked id) or None
    attr_index: np.ndarray | None  # int32 per row, -1 where no attributes
    attrs: list | None  # the distinct attribute dicts of the batch


class StoreWriter:
    """Writes one process's part of a trace. Not shared across fork."""

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            self.conn = connect(path)
            self.conn.executescript(SCHEMA)
            self._check_version()
        except sqlite3.DatabaseError as exc:
            raise TraceError(
                f"{path}: cannot write a trace here ({exc}). "
                "Choose a new output file with -o, or delete this one."
            ) from exc
        self._string_ids: dict[str, int] = {}

    def _check_version(self) -> None:
        row = self.conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if row is None:
            self.conn.execute(
                "INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )
        elif int(row[0]) != SCHEMA_VERSION:
            raise TraceError(
                f"{self.path}: trace schema {row[0]} differs from this torchscope's "
                f"{SCHEMA_VERSION}; record into a new file."
            )

    def set_meta(self, items: dict[str, str]) -> None:
        """Stores metadata keys (command, versions, mirror map)."""
        self.conn.executemany(
            "INSERT OR REPLACE INTO meta VALUES (?, ?)", [(k, str(v)) for k, v in items.items()]
        )

    def add_process(
        self, pid: int, ppid: int, role: str, index: int | None, argv: str, host: str, start_ns: int
    ) -> int:
        """Registers this process as a new part and returns the part number."""
        cur = self.conn.execute(
            "INSERT INTO processes(pid, ppid, role, role_index, host, argv, start_ns) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (pid, ppid, role, index, host, argv, start_ns),
        )
        return int(cur.lastrowid)

    def update_process(self, part: int, **fields: object) -> None:
        """Updates role, end time or status of a part."""
        sets = ", ".join(f"{key}=?" for key in fields)
        self.conn.execute(f"UPDATE processes SET {sets} WHERE part=?", (*fields.values(), part))

    def string_ids(self, texts: Iterable[str]) -> dict[str, int]:
        """Interns strings, shared by every process writing the same file."""
        cache = self._string_ids
        missing = [t for t in texts if t not in cache]
        if missing:
            self.conn.executemany(
                "INSERT OR IGNORE INTO strings(text) VALUES (?)", [(t,) for t in missing]
            )
            for text in missing:
                (cache[text],) = self.conn.execute(
                    "SELECT id FROM strings WHERE text=?", (text,)
                ).fetchone()
        return cache

    def write(
        self, part: int, batch: Batch | None, threads: list[tuple], snapshots: list[tuple]
    ) -> None:
        """Writes one flush as a single transaction (all of it or nothing)."""
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            if threads:
                conn.executemany(
                    "INSERT OR REPLACE INTO threads(part, idx, tid, name, device) "
                    "VALUES (?, ?, ?, ?, ?)",
                    [(part, *t) for t in threads],
                )
            if snapshots:
                conn.executemany(
                    "INSERT INTO snapshots(part, t_ns, kind, key, payload) VALUES (?, ?, ?, ?, ?)",
                    [(part, t, k, key, encode_json(p)) for t, k, key, p in snapshots],
                )
            if batch is not None:
                self._write_block(part, batch)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _write_block(self, part: int, b: Batch) -> None:
        span = int(b.ids.max()) - b.id_base if len(b.ids) else 0
        ids = (b.ids - b.id_base).astype("<u4" if span < 2**32 else "<i8")
        attrs = None
        if b.attrs:
            attrs = zlib.compress(encode_json(b.attrs).encode(), 1)
        self.conn.execute(
            "INSERT INTO blocks(part, n, id_base, ids, threads, starts, durs, kinds, names, "
            "funcs, links, attr_index, attrs) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                part,
                len(b.ids),
                b.id_base,
                ids.tobytes(),
                b.threads.astype(THREAD_DTYPE).tobytes(),
                b.starts.astype(TIME_DTYPE).tobytes(),
                b.durs.astype(TIME_DTYPE).tobytes(),
                b.kinds.astype(STRING_DTYPE).tobytes(),
                b.names.astype(STRING_DTYPE).tobytes(),
                b.funcs.astype(STRING_DTYPE).tobytes(),
                None if b.links is None else b.links.astype("<i8").tobytes(),
                None if b.attr_index is None else b.attr_index.astype("<i4").tobytes(),
                attrs,
            ),
        )

    def close(self) -> None:
        """Closes the connection; the file is complete and can be copied."""
        self.conn.close()


def open_for_reading(path: str) -> sqlite3.Connection:
    """Opens a trace read-only after checking it is one; clear errors otherwise."""
    if not os.path.exists(path):
        raise TraceError(f"{path}: no such trace file. Record one with `torchscope record`.")
    if os.path.isdir(path):
        raise TraceError(f"{path}: is a directory, not a trace file.")
    with open(path, "rb") as fh:
        head = fh.read(len(SQLITE_MAGIC))
    if not head:
        raise TraceError(
            f"{path}: the file is empty: the recording stopped before its first flush. "
            "Record it again."
        )
    if head != SQLITE_MAGIC:
        raise TraceError(
            f"{path}: not a torchscope trace (it is not an SQLite file). "
            "Pass a file written by `torchscope record`; Chrome JSON goes through import-chrome."
        )
    try:
        conn = connect(path, readonly=True)
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not {"meta", "blocks", "strings", "processes", "threads"} <= tables:
            raise TraceError(
                f"{path}: an SQLite file but not a torchscope trace (tables missing). "
                "Pass a file written by `torchscope record`."
            )
        row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    except sqlite3.DatabaseError as exc:
        raise TraceError(
            f"{path}: the trace is damaged or truncated ({exc}). "
            "If it was being copied or written, wait for it to finish and copy it again."
        ) from exc
    if row is None or not row[0].isdigit():
        raise TraceError(f"{path}: the trace has no schema version; it was not fully created.")
    if int(row[0]) > SCHEMA_VERSION:
        raise TraceError(
            f"{path}: written with trace schema {row[0]}, newer than this torchscope reads "
            f"({SCHEMA_VERSION}). Upgrade torchscope."
        )
    return conn
