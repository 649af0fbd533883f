"""Opening a trace to read it: checks that it is one, and recovers a flush that a
killed writer left half done (its hot rollback journal)."""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile

from tracer.file.errors import TraceError
from tracer.file.store import SCHEMA_VERSION, SQLITE_MAGIC, connect, file_kind


def _hot_journal(path: str) -> bool:
    """A rollback journal left by a writer killed inside a flush."""
    try:
        return os.path.getsize(path + "-journal") > 0
    except OSError:
        return False


def _recover(path: str) -> tuple[str, str]:
    """Rolls back the flush a killed writer left half done.

    In place when the file may be written (any SQLite connection that may
    write does this on first read; a live writer holding its lock is waited
    for, not disturbed). Otherwise on a private copy of the file and its
    journal. Returns the path to read and a note for the warnings.
    """
    if os.access(path, os.W_OK) and os.access(os.path.dirname(os.path.abspath(path)), os.W_OK):
        conn = connect(path)
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        finally:
            conn.close()
        if _hot_journal(path):  # still there: a live writer's flush, not a killed one
            return path, ""
        return (
            path,
            "recovered: the recording was killed inside a flush; that flush was rolled back",
        )
    tmp = tempfile.mkdtemp(prefix="torchscope-recover-")
    copy = os.path.join(tmp, "trace.tsdb")
    shutil.copyfile(path, copy)
    shutil.copyfile(path + "-journal", copy + "-journal")
    conn = sqlite3.connect(copy)
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    finally:
        conn.close()
    return copy, (
        "recovered on a private copy (the file is read-only): the recording was killed "
        "inside a flush; that flush was left out"
    )


def open_for_reading(path: str) -> tuple[sqlite3.Connection, list[str]]:
    """Opens a trace read-only after checking it is one; clear errors otherwise.

    Returns the connection and notes for the trace's warnings (a recovered
    flush). A trace whose writer was killed inside a flush is recovered first.
    """
    if not os.path.exists(path):
        raise TraceError(f"{path}: no such trace file. Record one with `torchscope record`.")
    if os.path.isdir(path):
        raise TraceError(f"{path}: is a directory, not a trace file.")
    try:
        with open(path, "rb") as fh:
            head = fh.read(len(SQLITE_MAGIC))
    except OSError as exc:
        raise TraceError(f"{path}: cannot read the trace ({exc.strerror}).") from exc
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
    notes: list[str] = []
    read_path = path
    try:
        if _hot_journal(path):
            read_path, note = _recover(path)
            notes.extend([note] if note else [])
        conn = connect(read_path, readonly=True)
        kind, version = file_kind(conn)
    except OSError as exc:
        raise TraceError(f"{path}: cannot read the trace ({exc}).") from exc
    except (sqlite3.DatabaseError, UnicodeError) as exc:  # UnicodeError: a damaged schema
        raise TraceError(
            f"{path}: the trace is damaged ({exc}); no command can read it. "
            "If it is still being copied, wait for the copy to finish; otherwise record again."
        ) from exc
    if kind != "trace":
        raise TraceError(
            f"{path}: an SQLite file but not a torchscope trace (tables missing). "
            "Pass a file written by `torchscope record`."
        )
    if version is None or not version.isdigit():
        raise TraceError(f"{path}: the trace has no schema version; it was not fully created.")
    if int(version) > SCHEMA_VERSION:
        raise TraceError(
            f"{path}: written with trace schema {version}, newer than this torchscope reads "
            f"({SCHEMA_VERSION}). Upgrade torchscope."
        )
    if int(version) < SCHEMA_VERSION:
        raise TraceError(
            f"{path}: written with trace schema {version} by an older torchscope, without "
            "checksums or run ids; this one reads schema 2. Record it again."
        )
    return conn, notes
