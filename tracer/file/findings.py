"""Storing a check's findings in the trace, each row with its checksum."""

from __future__ import annotations

import sqlite3

from tracer.file.errors import TraceError
from tracer.file.store import connect, row_crc


def replace_findings(path: str, detectors: list[str], rows: list[tuple]) -> None:
    """Stores one check's findings: those of ``detectors`` are replaced as a
    whole, so running a check twice never duplicates them.

    ``rows`` are (detector, severity, message, span, data JSON text).
    """
    try:
        conn = connect(path)
    except sqlite3.DatabaseError as exc:
        raise TraceError(f"{path}: cannot store findings here ({exc}).") from exc
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            marks = ", ".join("?" * len(detectors))
            conn.execute(f"DELETE FROM findings WHERE detector IN ({marks})", detectors)
            for row in rows:
                insert_finding(conn, *row)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    except sqlite3.DatabaseError as exc:
        raise TraceError(f"{path}: cannot store findings here ({exc}).") from exc
    finally:
        conn.close()


def insert_finding(
    conn: sqlite3.Connection,
    detector: str,
    severity: str,
    message: str,
    span: int | None,
    data: str | None,
) -> int:
    """Adds one finding row with its checksum; returns its id."""
    cur = conn.execute(
        "INSERT INTO findings(detector, severity, message, span, data, crc) "
        "VALUES (?, ?, ?, ?, ?, 0)",
        (detector, severity, message, span, data),
    )
    fid = int(cur.lastrowid)
    fields = (fid, detector, severity, message, span, data)
    conn.execute("UPDATE findings SET crc=? WHERE id=?", (row_crc(*fields), fid))
    return fid
