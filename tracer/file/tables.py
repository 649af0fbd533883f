"""Loading the trace's small tables, each row checked against its checksum.

Meta, strings, processes and threads hold what every span refers to: one bad
row there refuses the whole file (``TraceError`` naming the table and row).
A bad snapshot or finding is only left out, with a warning.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from tracer.file.errors import TraceError
from tracer.file.store import FORMAT, PROCESS_FIELDS, row_crc

MAX_JSON_CHARS = 64 << 20  # one snapshot, argv or mirror map
MAX_STRINGS = 1 << 26  # distinct names in one trace
Warn = Callable[[str], None]
_OPT_INT = (int, type(None))
_OPT_STR = (str, type(None))


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
    run: str = ""
    blocks: int = 0
    spans: int = 0

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
    idx: int = 0  # the thread's index within its part (what blocks store)

    @property
    def label(self) -> str:
        """How views name the thread's lane."""
        return self.name if self.device is None else f"{self.name} [{self.device}]"


def _damaged(path: str, table: str, key: object, why: str) -> TraceError:
    return TraceError(
        f"{path}: the trace is damaged: {table} row {key} {why}. "
        "Copy it again from its source, or record again."
    )


def _checked(path: str, table: str, rows: list[tuple], key_of: Callable = lambda r: r[0]):
    """Yields each row without its trailing checksum, refusing one that fails it."""
    for r in rows:
        if row_crc(*r[:-1]) != r[-1]:
            raise _damaged(path, table, key_of(r), "fails its checksum")
        yield r[:-1]


def _types(path: str, table: str, key: object, values: tuple, types: tuple) -> None:
    for value, allowed in zip(values, types):
        if not isinstance(value, allowed) or isinstance(value, bool):
            raise _damaged(path, table, key, f"holds a {type(value).__name__} where it should not")


def _json(text: object, path: str, what: str) -> Any:
    if not isinstance(text, str) or len(text) > MAX_JSON_CHARS:
        raise TraceError(f"{path}: the trace is damaged: {what} is not JSON text of a sane size.")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise TraceError(
            f"{path}: the trace is damaged: {what} is not valid JSON ({type(exc).__name__})."
        ) from None


def load_meta(conn: sqlite3.Connection, path: str) -> dict[str, str]:
    """The meta table, every row checked; the format must be torchscope's."""
    rows = conn.execute("SELECT key, value, crc FROM meta").fetchall()
    meta = {}
    for key, value in _checked(path, "meta", rows):
        _types(path, "meta", key, (key, value), (str, str))
        meta[key] = value
    if meta.get("format") != FORMAT or "run_id" not in meta:
        raise TraceError(f"{path}: not a complete torchscope trace (its format row is missing).")
    return meta


def mirrors(meta: dict[str, str], warn: Warn) -> dict[str, str]:
    """reimpl function -> the torch function it mirrors, as recorded (checked)."""
    text = meta.get("mirrors", "{}")
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        value = None
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        warn("the mirror map is not a JSON object of names; torch sources are not shown")
        return {}
    return value


def load_strings(conn: sqlite3.Connection, path: str) -> np.ndarray:
    """Code -> text; the ids must be dense (1..n), as SQLite hands them out."""
    (count,) = conn.execute("SELECT count(*) FROM strings").fetchone()
    (top,) = conn.execute("SELECT coalesce(max(id), 0) FROM strings").fetchone()
    if not isinstance(top, int) or top > min(count, MAX_STRINGS) or top < 0:
        raise _damaged(path, "strings", top, f"has an id beyond the table's {count} rows")
    table = np.empty(top + 1, dtype=object)
    rows = conn.execute("SELECT id, text, crc FROM strings").fetchall()
    for sid, text in _checked(path, "strings", rows):
        _types(path, "strings", sid, (sid, text), (int, str))
        if not 0 < sid < len(table):  # a damaged index can disagree with the rows
            raise _damaged(path, "strings", sid, f"has an id beyond the table's {count} rows")
        table[sid] = text
    return table


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    return True


def load_processes(conn: sqlite3.Connection, path: str) -> list[ProcessInfo]:
    """One ProcessInfo per part; a part that never closed and whose process is
    gone from this host says it died."""
    rows = conn.execute(
        f"SELECT part, {', '.join(PROCESS_FIELDS)}, crc FROM processes ORDER BY part"
    ).fetchall()
    out = []
    host_here = socket.gethostname()
    for part, run, pid, ppid, role, idx, host, argv, start, end, status, blocks, spans in _checked(
        path, "processes", rows
    ):
        _types(path, "processes", part, (part, run, pid, role, status, blocks, spans),
               (int, str, int, str, str, int, int))  # fmt: skip
        _types(path, "processes", part, (ppid, idx, host, argv, start, end),
               (_OPT_INT, _OPT_INT, _OPT_STR, _OPT_STR, _OPT_INT, _OPT_INT))  # fmt: skip
        args = _json(argv or "[]", path, f"the command line of part {part}")
        if not isinstance(args, list):
            raise _damaged(path, "processes", part, "holds a command line that is not a list")
        if status == "running" and host == host_here and not _alive(pid):
            status = "died (never closed its part: killed, or crashed)"
        out.append(ProcessInfo(part, pid, ppid, role, idx, host, [str(a) for a in args],
                               start, end, status, run, blocks, spans))  # fmt: skip
    return out


def load_threads(conn: sqlite3.Connection, path: str, parts: set[int]) -> list[ThreadInfo]:
    """Thread rows in (part, index) order; each names a part that exists."""
    rows = conn.execute(
        "SELECT part, idx, tid, name, device, crc FROM threads ORDER BY part, idx"
    ).fetchall()
    out = []
    for row, (part, idx, tid, name, device) in enumerate(
        _checked(path, "threads", rows, key_of=lambda r: f"({r[0]}, {r[1]})")
    ):
        key = f"({part}, {idx})"
        _types(path, "threads", key, (part, idx, tid, name, device),
               (int, int, int, str, (str, type(None))))  # fmt: skip
        if part not in parts or not 0 <= idx < 1 << 16:
            raise _damaged(path, "threads", key, "names a part or index that cannot exist")
        out.append(ThreadInfo(row, part, tid, name, device, idx))
    return out


def load_findings(conn: sqlite3.Connection, path: str, warn: Warn) -> list[dict[str, Any]]:
    """Stored findings; a damaged one is left out with a warning."""
    out = []
    for *fields, crc in conn.execute(
        "SELECT id, detector, severity, message, span, data, crc FROM findings ORDER BY id"
    ).fetchall():
        fid, detector, severity, message, span, data = fields
        try:
            if row_crc(*fields) != crc:
                raise TraceError("fails its checksum")
            payload = _json(data, path, f"finding {fid}") if data else None
        except TraceError as exc:
            warn(f"finding {fid}: {exc}; left out")
            continue
        out.append({"id": fid, "detector": detector, "severity": severity,
                    "message": message, "span": span, "data": payload})  # fmt: skip
    return out


def load_snapshots(
    conn: sqlite3.Connection, path: str, warn: Warn, processes: list[ProcessInfo]
) -> list[dict[str, Any]]:
    """Structure snapshots (JSON); a damaged one is left out with a warning."""
    parts = {p.part for p in processes}
    out = []
    for *fields, crc in conn.execute(
        "SELECT id, part, t_ns, kind, key, payload, crc FROM snapshots ORDER BY id"
    ).fetchall():
        sid, part, t_ns, kind, key, payload = fields
        try:
            if row_crc(*fields[1:]) != crc:
                raise TraceError("fails its checksum")
            if part not in parts or not isinstance(t_ns, int):
                raise TraceError("names no process")
            value = _json(payload, path, f"snapshot {sid}")
        except TraceError as exc:
            warn(f"snapshot {sid}: {exc}; left out")
            continue
        out.append({"part": part, "t_ns": t_ns, "kind": kind, "key": key, "payload": value})
    return out
