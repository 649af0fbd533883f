"""The trace file survives crashes, and bad files get clear errors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

import tracer
from reimpl import _trace
from tracer.file.errors import TraceError

KILLED_CHILD = textwrap.dedent(
    """
    import sys
    from reimpl import _trace
    from tracer.recording.recorder import Recorder

    rec = Recorder(sys.argv[1], flush_interval=3600).start()  # only explicit flushes
    for i in range(5000):
        with _trace.span("step", "flushed"):
            _trace.instant("mark", "in-step")
    rec.flush()
    for i in range(3000):
        with _trace.span("step", "never-flushed"):
            pass
    print("flushed", flush=True)
    sys.stdin.read()  # wait to be killed
    """
)


@pytest.mark.multiprocess
def test_sigkill_keeps_everything_up_to_the_last_flush(trace_path):
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED_CHILD, trace_path],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout.readline().strip() == "flushed"
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        child.kill()
    t = tracer.load(trace_path)
    assert t.n == 10_000
    assert {t.name_of(r) for r in range(t.n)} == {"flushed", "in-step"}
    marks = t.kind == t.code("mark")
    assert (t.kind[t.parent[marks]] == t.code("step")).all()
    assert t.processes[0].status.startswith("died")  # it never closed: killed


def _write_trace(path: str, blocks: int = 20) -> None:
    with tracer.record(path) as rec:
        for _ in range(blocks):
            for i in range(2000):
                with _trace.span("step", f"s{i % 7}", i=i):
                    pass
            rec.flush()


def test_empty_file_gets_a_clear_error(trace_path):
    open(trace_path, "wb").close()
    with pytest.raises(TraceError, match=r"t\.tsdb: the file is empty"):
        tracer.load(trace_path)


def test_garbage_file_gets_a_clear_error(trace_path):
    with open(trace_path, "wb") as fh:
        fh.write(os.urandom(10_000))
    with pytest.raises(TraceError, match=r"t\.tsdb: not a torchscope trace"):
        tracer.load(trace_path)


def test_missing_file_names_it(tmp_path):
    with pytest.raises(TraceError, match=r"nope\.tsdb: no such trace file"):
        tracer.load(str(tmp_path / "nope.tsdb"))


def test_foreign_sqlite_file_is_refused(trace_path):
    import sqlite3

    conn = sqlite3.connect(trace_path)
    conn.execute("CREATE TABLE x(a)")
    conn.commit()
    conn.close()
    with pytest.raises(TraceError, match="not a torchscope trace"):
        tracer.load(trace_path)


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9])
def test_truncated_file_errors_clearly_or_keeps_what_is_readable(trace_path, keep):
    _write_trace(trace_path)
    size = os.path.getsize(trace_path)
    with open(trace_path, "r+b") as fh:
        fh.truncate(int(size * keep))
    try:
        t = tracer.load(trace_path)
    except TraceError as exc:
        assert "t.tsdb" in str(exc) and ("truncated" in str(exc) or "damaged" in str(exc))
    else:
        assert t.n % 2000 == 0 and t.n < 40_000
        assert t.warnings


def test_newer_schema_is_refused(trace_path):
    import sqlite3

    _write_trace(trace_path, blocks=1)
    conn = sqlite3.connect(trace_path)
    conn.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(TraceError, match="newer than this torchscope reads"):
        tracer.load(trace_path)


def test_no_pickles_in_the_file(trace_path):
    """Attribute values that are not JSON become strings, never pickles."""

    class Opaque:
        def __repr__(self) -> str:
            return "Opaque()"

    with tracer.record(trace_path):
        _trace.instant("x", "y", obj=Opaque(), shape=(2, 3))
    t = tracer.load(trace_path)
    assert t.attrs(0) == {"obj": "Opaque()", "shape": [2, 3]}
    with open(trace_path, "rb") as fh:
        data = fh.read()
    assert b"\x80\x04\x95" not in data and b"\x80\x05\x95" not in data  # pickle headers
