"""Where a recording may write: never into a file that is not a trace; an old
trace is replaced with a notice unless --append; the parts of one run join it."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import textwrap

import numpy as np
import pytest
from torchscope_cli import torchscope

import tracer
from reimpl import _trace

SCRIPT = textwrap.dedent(
    """
    import sys
    from reimpl import _trace

    for i in range(int(sys.argv[1])):
        with _trace.span("step", sys.argv[2], index=i):
            pass
    """
)


@pytest.fixture
def script(tmp_path):
    path = tmp_path / "train.py"
    path.write_text(SCRIPT)
    return str(path)


def _one_error_line(result: subprocess.CompletedProcess, *words: str) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert all(w in lines[0] for w in words), lines[0]
    return lines[0]


def test_a_file_that_is_not_sqlite_is_refused_and_left_alone(tmp_path, script):
    out = tmp_path / "notes.txt"
    out.write_text("my notes")
    result = torchscope("record", "-o", str(out), script, "2", "a")
    _one_error_line(result, str(out), "not a torchscope trace", "refusing")
    assert out.read_text() == "my notes"


def test_an_sqlite_database_that_is_not_a_trace_is_refused_and_left_alone(tmp_path, script):
    out = str(tmp_path / "app.db")
    with sqlite3.connect(out) as conn:
        conn.execute("CREATE TABLE users(name TEXT)")
        conn.execute("INSERT INTO users VALUES ('ada')")
    result = torchscope("record", "-o", out, script, "2", "a")
    _one_error_line(result, out, "not a torchscope trace")
    with sqlite3.connect(out) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master")]
        assert tables == ["users"]
        assert conn.execute("SELECT name FROM users").fetchall() == [("ada",)]


def test_an_existing_trace_is_replaced_with_a_notice(tmp_path, script):
    out = str(tmp_path / "run.tsdb")
    assert torchscope("record", "-o", out, script, "5", "first").returncode == 0
    first = tracer.load(out)
    result = torchscope("record", "-o", out, script, "2", "second")
    assert result.returncode == 0, result.stderr
    assert f"replacing the trace recorded {first.meta['created']} in {out}" in result.stderr
    t = tracer.load(out)
    assert t.n == 2 and {t.name_of(r) for r in range(t.n)} == {"second"}
    assert len(t.processes) == 1 and t.meta["run_id"] != first.meta["run_id"]


def test_append_keeps_the_old_run_beside_the_new_one(tmp_path, script):
    out = str(tmp_path / "run.tsdb")
    assert torchscope("record", "-o", out, script, "5", "first").returncode == 0
    result = torchscope("record", "--append", "-o", out, script, "2", "second")
    assert result.returncode == 0 and "replacing" not in result.stderr
    t = tracer.load(out)
    assert t.n == 7 and len({p.run for p in t.processes}) == 2
    names = {p.run: {t.name_of(r) for r in np.flatnonzero(t.part == p.part)} for p in t.processes}
    assert sorted(map(sorted, names.values())) == [["first"], ["second"]]


def _old_schema_trace(path: str) -> None:
    """The tables a version-1 trace has (no checksums, no run ids)."""
    with sqlite3.connect(path) as conn:
        conn.executescript(
            """
            CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
            CREATE TABLE strings(id INTEGER PRIMARY KEY, text TEXT NOT NULL UNIQUE);
            CREATE TABLE processes(part INTEGER PRIMARY KEY, pid INTEGER NOT NULL);
            CREATE TABLE threads(part INTEGER, idx INTEGER, tid INTEGER, name TEXT);
            CREATE TABLE blocks(id INTEGER PRIMARY KEY, part INTEGER, n INTEGER);
            INSERT INTO meta VALUES ('schema_version', '1');
            """
        )


def test_an_old_schema_trace_is_named_replaced_and_never_appended_to(tmp_path, script):
    out = str(tmp_path / "old.tsdb")
    _old_schema_trace(out)
    with pytest.raises(tracer.TraceError, match=r"old\.tsdb: written with trace schema 1"):
        tracer.load(out)
    _one_error_line(torchscope("record", "--append", "-o", out, script, "1", "x"), "schema 1")
    assert torchscope("record", "-o", out, script, "3", "new").returncode == 0
    assert tracer.load(out).n == 3


def test_forked_parts_join_the_run_of_their_parent(tmp_path):
    out = str(tmp_path / "t.tsdb")
    with tracer.record(out) as rec:
        pid = os.fork()
        if pid == 0:
            with _trace.span("step", "in-child"):
                pass
            rec.stop()
            os._exit(0)
        os.waitpid(pid, 0)
    t = tracer.load(out)
    assert len(t.processes) == 2 and {p.run for p in t.processes} == {rec.run_id}
    assert t.meta["run_id"] == rec.run_id


def test_a_worker_killed_before_its_first_flush_is_still_named(tmp_path):
    out = str(tmp_path / "t.tsdb")
    with tracer.record(out, flush_interval=3600):
        pid = os.fork()
        if pid == 0:
            _trace.set_process_role("worker", 3)
            os.kill(os.getpid(), signal.SIGKILL)
        os.waitpid(pid, 0)
    worker = next(p for p in tracer.load(out).processes if p.pid == pid)
    assert (worker.role, worker.role_index) == ("worker", 3)
    assert worker.status.startswith("died")


def test_a_missing_module_is_one_line_and_touches_no_trace(tmp_path):
    out = tmp_path / "m.tsdb"
    result = torchscope("record", "-o", str(out), "-m", "no_such_module_anywhere")
    _one_error_line(result, "no module named 'no_such_module_anywhere'")
    assert not out.exists()


def test_a_missing_submodule_is_one_line_without_a_traceback(tmp_path):
    out = tmp_path / "m.tsdb"
    result = torchscope("record", "-o", str(out), "-m", "json.no_such_part")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "No module named json.no_such_part" in result.stderr
    assert tracer.load(str(out)).processes[0].status.startswith("error: ImportError")


def test_an_import_error_inside_the_program_keeps_its_traceback(tmp_path):
    (tmp_path / "broken_pkg").mkdir()
    (tmp_path / "broken_pkg" / "__init__.py").write_text("")
    (tmp_path / "broken_pkg" / "train.py").write_text("import no_such_dependency_here\n")
    result = torchscope("record", "-o", "b.tsdb", "-m", "broken_pkg.train", cwd=tmp_path)
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "no_such_dependency_here" in result.stderr
