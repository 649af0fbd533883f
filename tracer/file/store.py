"""The trace file: one SQLite database whose spans are stored as columnar blocks.

Layout (schema version 2):

* ``meta(key, value)``: format, schema version, run id, command, versions,
  the mirror map.
* ``strings(id, text)``: kinds, names and function names, interned once.
* ``processes(part, run, pid, ppid, role, ...)``: one row per process that
  wrote into the trace (its *part*); a forked DataLoader worker or a
  distributed rank gets its own part. ``run`` says which recording the part
  belongs to, ``blocks`` and ``spans`` how much it has written so far (the
  loader finds a lost block by its number).
* ``threads(part, idx, tid, name, device)``.
* ``blocks``: one row per flushed batch, numbered per part (``seq``); each
  span column is a numpy array stored as a raw little-endian blob (never a
  pickle). Writing a million spans is a handful of inserts instead of a
  million, which is what keeps writing and loading in tenths of a second.
* ``snapshots`` (model structure and the like, JSON) and ``findings``.

Every row carries a CRC-32 of its fields (``row_crc``), so a flipped byte
is found at load instead of shown as a different name or time.

Every flush is one transaction. ``journal_mode=DELETE``: a process killed
inside a flush leaves a *hot* rollback journal beside the file, and the next
connection that may write rolls the unfinished flush back (readers do that
too, see ``open_for_reading``), so a SIGKILL at any moment loses at most the
flush it interrupted. ``synchronous=OFF``: the data survives the *process*
dying (it is in the OS page cache), not a power cut, which is the right trade
for a debugging trace.
"""

from __future__ import annotations

import json
import os
import sqlite3
import struct
import uuid
import zlib
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from tracer.file.errors import TraceError

FORMAT = "torchscope trace"
SCHEMA_VERSION = 2
SQLITE_MAGIC = b"SQLite format 3\x00"

TABLES = ("meta", "strings", "processes", "threads", "blocks", "snapshots", "findings")
SCHEMA = """
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL, crc INTEGER NOT NULL);
CREATE TABLE strings(id INTEGER PRIMARY KEY, text TEXT NOT NULL UNIQUE, crc INTEGER NOT NULL);
CREATE TABLE processes(
    part INTEGER PRIMARY KEY AUTOINCREMENT, run TEXT NOT NULL, pid INTEGER NOT NULL,
    ppid INTEGER, role TEXT NOT NULL, role_index INTEGER, host TEXT, argv TEXT,
    start_ns INTEGER, end_ns INTEGER, status TEXT NOT NULL, blocks INTEGER NOT NULL,
    spans INTEGER NOT NULL, crc INTEGER NOT NULL);
CREATE TABLE threads(
    part INTEGER NOT NULL, idx INTEGER NOT NULL, tid INTEGER NOT NULL,
    name TEXT NOT NULL, device TEXT, crc INTEGER NOT NULL, PRIMARY KEY(part, idx));
CREATE TABLE blocks(
    id INTEGER PRIMARY KEY, part INTEGER NOT NULL, seq INTEGER NOT NULL, n INTEGER NOT NULL,
    id_base INTEGER NOT NULL, ids BLOB, threads BLOB, starts BLOB, durs BLOB,
    kinds BLOB, names BLOB, funcs BLOB, links BLOB, attr_index BLOB, attrs BLOB,
    attrs_size INTEGER NOT NULL, crc INTEGER NOT NULL);
CREATE TABLE snapshots(
    id INTEGER PRIMARY KEY, part INTEGER NOT NULL, t_ns INTEGER NOT NULL,
    kind TEXT NOT NULL, key TEXT NOT NULL, payload TEXT NOT NULL, crc INTEGER NOT NULL);
CREATE TABLE findings(
    id INTEGER PRIMARY KEY, detector TEXT NOT NULL, severity TEXT NOT NULL,
    message TEXT NOT NULL, span INTEGER, data TEXT, crc INTEGER NOT NULL);
"""
# Tables a version-1 trace has: a file holding only these (and SQLite's own) is a trace.
V1_TABLES = {"meta", "strings", "processes", "threads", "blocks", "snapshots", "findings"}
PROCESS_FIELDS = (
    "run", "pid", "ppid", "role", "role_index", "host", "argv",
    "start_ns", "end_ns", "status", "blocks", "spans",
)  # fmt: skip
BLOCK_COLUMNS = (
    "part, seq, n, id_base, ids, threads, starts, durs, kinds, names, funcs, links, "
    "attr_index, attrs, attrs_size"
)

# Column dtypes on disk. ids are offsets from the block's id_base; a block
# whose id range does not fit 32 bits stores int64 (told apart by blob size).
THREAD_DTYPE = np.dtype("<u2")
STRING_DTYPE = np.dtype("<u4")
TIME_DTYPE = np.dtype("<i8")

_INT = struct.Struct("<Bq")


def row_crc(*fields: object) -> int:
    """CRC-32 of a row's fields, each tagged with its type and length.

    Covers keys too (a string's id, a block's part and number), so a damaged
    key cannot silently re-point a row. Blobs are fed to zlib as they are:
    a million-span block costs about 10 ms.
    """
    crc = 0
    for value in fields:
        if value is None:
            crc = zlib.crc32(b"\x00", crc)
        elif isinstance(value, int):
            crc = zlib.crc32(_INT.pack(1, value), crc)
        elif isinstance(value, bytes):
            crc = zlib.crc32(_INT.pack(2, len(value)), crc)
            crc = zlib.crc32(value, crc)
        else:
            data = str(value).encode("utf-8", "surrogatepass")
            crc = zlib.crc32(_INT.pack(3, len(data)), crc)
            crc = zlib.crc32(data, crc)
    return crc


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


def new_run_id() -> str:
    """A fresh run id: the parts of one recording share it."""
    return uuid.uuid4().hex


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


def file_kind(conn: sqlite3.Connection) -> tuple[str, str | None]:
    """('empty' | 'trace' | 'foreign', schema version) of an open SQLite file."""
    tables = {
        r[0]
        for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
        if not r[0].startswith("sqlite_")
    }
    if not tables:
        return "empty", None
    if not {"meta", "blocks", "strings", "processes", "threads"} <= tables <= V1_TABLES:
        return "foreign", None
    row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    return "trace", None if row is None else str(row[0])


class StoreWriter:
    """Writes one process's part of a trace. Not shared across fork.

    ``mode`` says what to do with what is already at ``path``:

    * ``"new"``: a trace of another run is replaced (``self.replaced`` says
      so), one of the same run (``run_id``) is joined: the parts of one
      recording (forked, spawned, torchrun ranks) meet in one file;
    * ``"append"``: an existing trace keeps its runs and gains this one;
    * ``"join"``: the file must hold run ``run_id`` already (a child's part).

    A file that is not a trace (SQLite or not) is never touched: TraceError.
    """

    def __init__(self, path: str, *, run_id: str | None = None, mode: str = "new") -> None:
        self.path = path
        self.run_id = run_id or new_run_id()
        self.replaced: str | None = None  # what was replaced, for the notice
        self._string_ids: dict[str, int] = {}
        self._process: dict[int, dict] = {}
        _refuse_non_trace(path)
        try:
            self.conn = connect(path)
            self.conn.create_function("ts_crc", 2, row_crc, deterministic=True)
            self._open(mode)
        except (sqlite3.DatabaseError, UnicodeError) as exc:
            raise TraceError(
                f"{path}: cannot write a trace here ({exc}). "
                "Choose another output file with -o, or delete this one."
            ) from exc

    def _open(self, mode: str) -> None:
        conn = self.conn
        conn.execute("BEGIN EXCLUSIVE")  # one decision per file, even with many ranks
        try:
            kind, version = file_kind(conn)
            if kind == "foreign":
                raise TraceError(
                    f"{self.path}: an SQLite database that is not a torchscope trace; "
                    "refusing to write into it. Choose another output file with -o."
                )
            runs = self._runs() if kind == "trace" and version == str(SCHEMA_VERSION) else set()
            if kind == "trace" and self.run_id not in runs:
                if mode == "join":
                    raise TraceError(
                        f"{self.path}: holds another recording, not run {self.run_id}; "
                        "this process's part was not written."
                    )
                if mode == "append" and version != str(SCHEMA_VERSION):
                    raise TraceError(
                        f"{self.path}: written by another torchscope (trace schema {version}); "
                        "cannot append to it. Record without --append to replace it."
                    )
                if mode == "new":
                    self.replaced = self._describe_old()
                    for table in V1_TABLES:
                        conn.execute(f"DROP TABLE IF EXISTS {table}")
                    kind = "empty"
            if kind == "empty":
                if mode == "join":
                    raise TraceError(f"{self.path}: no trace to join (run {self.run_id}).")
                for statement in SCHEMA.split(";"):  # executescript would commit first
                    if statement.strip():
                        conn.execute(statement)
                self.set_meta({"format": FORMAT, "schema_version": str(SCHEMA_VERSION)})
            if self.run_id not in runs:
                self.set_meta({"run_id": self.run_id})
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        if self.replaced is not None:
            conn.execute("VACUUM")  # give the old trace's pages back

    def _runs(self) -> set[str]:
        return {r[0] for r in self.conn.execute("SELECT DISTINCT run FROM processes")}

    def _describe_old(self) -> str:
        try:
            row = self.conn.execute("SELECT value FROM meta WHERE key='created'").fetchone()
        except sqlite3.DatabaseError:
            row = None
        return f"the trace recorded {row[0]}" if row else "an older trace"

    def set_meta(self, items: dict[str, str]) -> None:
        """Stores metadata keys (command, versions, mirror map), each with its checksum."""
        self.conn.executemany(
            "INSERT OR REPLACE INTO meta VALUES (?, ?, ?)",
            [(k, str(v), row_crc(k, str(v))) for k, v in items.items()],
        )

    def add_process(
        self, pid: int, ppid: int, role: str, index: int | None, argv: str, host: str, start_ns: int
    ) -> int:
        """Registers this process as a new part and returns the part number."""
        fields = dict(
            run=self.run_id, pid=pid, ppid=ppid, role=role, role_index=index, host=host,
            argv=argv, start_ns=start_ns, end_ns=None, status="running", blocks=0, spans=0,
        )  # fmt: skip
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            cur = conn.execute(
                f"INSERT INTO processes({', '.join(PROCESS_FIELDS)}, crc) "
                f"VALUES ({', '.join('?' * (len(PROCESS_FIELDS) + 1))})",
                (*fields.values(), 0),
            )
            part = int(cur.lastrowid)
            self._process[part] = fields
            self._write_process(part)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return part

    def _write_process(self, part: int) -> None:
        values = [self._process[part][f] for f in PROCESS_FIELDS]
        sets = ", ".join(f"{f}=?" for f in PROCESS_FIELDS)
        self.conn.execute(
            f"UPDATE processes SET {sets}, crc=? WHERE part=?",
            (*values, row_crc(part, *values), part),
        )

    def update_process(self, part: int, **fields: object) -> None:
        """Updates role, end time or status of a part."""
        unknown = set(fields) - set(PROCESS_FIELDS)
        if unknown:
            raise ValueError(f"unknown process fields: {sorted(unknown)}")
        self._process[part].update(fields)
        self._write_process(part)

    def string_ids(self, texts: Iterable[str]) -> dict[str, int]:
        """Interns strings, shared by every process writing the same file.

        One statement per new string picks its id and checksum together, in
        one transaction: a kill cannot leave a string without its checksum.
        """
        cache = self._string_ids
        missing = [t for t in texts if t not in cache]
        if missing:
            conn = self.conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(
                    "INSERT OR IGNORE INTO strings(id, text, crc) "
                    "SELECT m + 1, ?1, ts_crc(m + 1, ?1) "
                    "FROM (SELECT coalesce(max(id), 0) AS m FROM strings)",
                    [(t,) for t in missing],
                )
                for text in missing:
                    (cache[text],) = conn.execute(
                        "SELECT id FROM strings WHERE text=?", (text,)
                    ).fetchone()
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
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
                    "INSERT OR REPLACE INTO threads(part, idx, tid, name, device, crc) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    [(part, *t, row_crc(part, *t)) for t in threads],
                )
            if snapshots:
                rows = [(part, t, k, key, encode_json(p)) for t, k, key, p in snapshots]
                conn.executemany(
                    "INSERT INTO snapshots(part, t_ns, kind, key, payload, crc) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    [(*row, row_crc(*row)) for row in rows],
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
        attrs, attrs_size = None, 0
        if b.attrs:
            text = encode_json(b.attrs).encode()
            attrs, attrs_size = zlib.compress(text, 1), len(text)
        process = self._process[part]
        seq = process["blocks"] + 1
        row = (
            part,
            seq,
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
            attrs_size,
        )
        self.conn.execute(
            f"INSERT INTO blocks({BLOCK_COLUMNS}, crc) VALUES ({', '.join('?' * 16)})",
            (*row, row_crc(*row)),
        )
        # the part's row counts its blocks, in the same transaction: a lost block shows
        self.update_process(part, blocks=seq, spans=process["spans"] + len(b.ids))

    def close(self) -> None:
        """Closes the connection; the file is complete and can be copied."""
        self.conn.close()


def _refuse_non_trace(path: str) -> None:
    """Never write into a file that is not SQLite (an empty one is fine)."""
    if os.path.isdir(path):
        raise TraceError(f"{path}: is a directory; give a file name with -o.")
    try:
        with open(path, "rb") as fh:
            head = fh.read(len(SQLITE_MAGIC))
    except FileNotFoundError:
        return
    except OSError as exc:
        raise TraceError(f"{path}: cannot write a trace here ({exc.strerror}).") from exc
    if head and head != SQLITE_MAGIC:
        raise TraceError(
            f"{path}: exists and is not a torchscope trace; refusing to overwrite it. "
            "Choose another output file with -o, or delete this one."
        )
