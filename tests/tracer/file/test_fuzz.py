"""Damaged and crafted traces through every reading command.

Each case mutates a small real trace (truncation, flipped bits, overwritten
bytes, or one field set to a hostile value, with or without its checksum
recomputed as a crafted file would) and runs ``tracer.load``, ``summary``,
``export`` (both formats) and ``graph`` on it. Every command must either
give the pristine file's result, give a different one only beside a
warning, or exit 2 with one line naming the file. Never a traceback, never
a hang (pytest-timeout), never a gigabyte of memory.

CI runs a few hundred cases with a fixed seed; a longer run:
``TORCHSCOPE_FUZZ_EXAMPLES=5000 pytest tests/tracer/file/test_fuzz.py --timeout 0``
(about 3 minutes; 5,000 cases passed on the final code of issue 17).
"""

from __future__ import annotations

import contextlib
import io
import os
import resource
import shutil
import sqlite3
import threading
import zlib

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import tracer
from reimpl import _trace
from tracer.cli import main
from tracer.file.store import BLOCK_COLUMNS, PROCESS_FIELDS, row_crc

EXAMPLES = int(os.environ.get("TORCHSCOPE_FUZZ_EXAMPLES", "300"))

# (table, columns whose crc is recomputed in this order, the key columns)
CRC_COLUMNS = {
    "meta": "key, value",
    "strings": "id, text",
    "processes": "part, " + ", ".join(PROCESS_FIELDS),
    "threads": "part, idx, tid, name, device",
    "blocks": BLOCK_COLUMNS,
    "snapshots": "part, t_ns, kind, key, payload",
}
FIELDS = [
    (table, column.strip())
    for table, columns in CRC_COLUMNS.items()
    for column in columns.split(",")
    if column.strip() != "key" or table != "meta"
] + [("meta", "value")]
HOSTILE = st.one_of(
    st.sampled_from([0, -1, 1, 7, 2**31, 2**32 + 1, 2**40, 10**12, 2**63 - 1, -(2**63), None]),
    st.text(max_size=24),
    st.binary(max_size=80),
    st.sampled_from(["{", "[1,", '{"a": 1}', "[]", "null", "\ud800", "x" * 1000]),
)


def _record(path: str) -> None:
    """Two threads, links across them, attributes, several blocks, a snapshot."""
    with tracer.record(path, flush_interval=3600) as rec:
        for step in range(4):
            with _trace.span("step", "step", index=step) as outer:

                def replica(k: int, parent: int = outer.id) -> None:
                    _trace.set_thread_info(f"replica {k}", f"sim:{k}")
                    with _trace.span("dp.replica", f"replica {k}", link=parent, device=k):
                        with _trace.span("module.forward", "net.fc", cls="Linear"):
                            pass

                threads = [threading.Thread(target=replica, args=(k,)) for k in range(2)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                with _trace.span("optim.step", "SGD", lr=0.1 * (step + 1)):
                    pass
            _trace.snapshot("module", f"Net@{step}", {"root": "Net", "modules": []})
            rec.flush()


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz")
    path = str(folder / "pristine.tsdb")
    _record(path)
    case = str(folder / "case.tsdb")
    shutil.copy(path, case)
    baseline = _run_all(case, str(folder))
    assert all(rc == 0 and not err for rc, _out, err in baseline.values()), baseline
    return path, case, str(folder), baseline


def _run_all(path: str, folder: str) -> dict[str, tuple[int, str, str]]:
    """Every reading command on ``path``: (exit code, result, stderr)."""
    results = {}
    for name, argv, out_file in (
        ("summary", ["summary", path, "--json"], None),
        ("chrome", ["export", path, "-o", f"{folder}/o.json"], f"{folder}/o.json"),
        ("jsonl", ["export", path, "--format", "jsonl", "-o", f"{folder}/o.jsonl"],
         f"{folder}/o.jsonl"),
        ("graph", ["graph", path, "--kind", "calls", "-o", f"{folder}/o.dot"], f"{folder}/o.dot"),
        ("dp", ["graph", path, "--kind", "dataparallel", "-o", f"{folder}/d.dot"],
         f"{folder}/d.dot"),
    ):  # fmt: skip
        if out_file and os.path.exists(out_file):
            os.remove(out_file)
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main(argv)
        result = out.getvalue()
        if out_file and rc == 0:
            with open(out_file, encoding="utf-8") as fh:
                result = fh.read()
        results[name] = (rc, result, err.getvalue())
    return results


def _mutate(path: str, mutation: tuple) -> None:
    kind = mutation[0]
    size = os.path.getsize(path)
    if kind == "truncate":
        with open(path, "r+b") as fh:
            fh.truncate(int(size * mutation[1]))
    elif kind in ("flip", "overwrite"):
        with open(path, "r+b") as fh:
            data = bytearray(fh.read())
            if kind == "flip":
                for where, bit in mutation[1]:
                    data[min(int(where * size), size - 1)] ^= 1 << bit
            else:
                at = min(int(mutation[1] * size), size - 1)
                data[at : at + len(mutation[2])] = mutation[2]
            fh.seek(0)
            fh.write(bytes(data[:size]))
    else:
        _, (table, column), pick, value, recompute = mutation
        _edit(path, table, column, pick, value, recompute)


def _edit(path: str, table: str, column: str, pick: int, value: object, recompute: bool) -> None:
    """Sets one field; with ``recompute`` the row's checksum matches again (crafted)."""
    conn = sqlite3.connect(path)
    conn.text_factory = lambda raw: raw.decode("utf-8", "surrogateescape")
    try:
        rowids = [r[0] for r in conn.execute(f"SELECT rowid FROM {table} ORDER BY rowid")]
        if not rowids:
            return
        rowid = rowids[pick % len(rowids)]
        setter = "?"
        if isinstance(value, str) and not value.isascii():
            # text that is not UTF-8, stored as SQLite TEXT all the same
            value, setter = value.encode("utf-8", "surrogatepass"), "CAST(? AS TEXT)"
        try:
            conn.execute(f"UPDATE {table} SET {column}={setter} WHERE rowid=?", (value, rowid))
        except sqlite3.IntegrityError:  # NOT NULL, UNIQUE: no edit
            return
        if column in ("id", "part") and isinstance(value, int) and table != "meta":
            rowid = value  # the row moved with its key
        if recompute:
            _recompute_crc(conn, table, rowid)
        conn.commit()
    finally:
        conn.close()


def _recompute_crc(conn: sqlite3.Connection, table: str, rowid: int) -> None:
    fields = conn.execute(
        f"SELECT {CRC_COLUMNS[table]} FROM {table} WHERE rowid=?", (rowid,)
    ).fetchone()
    if fields is not None:
        conn.execute(f"UPDATE {table} SET crc=? WHERE rowid=?", (row_crc(*fields), rowid))


@contextlib.contextmanager
def memory_budget(extra: int = 1 << 30):
    """Allocations beyond ``extra`` bytes more than now raise MemoryError (RLIMIT_DATA)."""
    with open("/proc/self/status") as fh:
        data_kb = next(int(line.split()[1]) for line in fh if line.startswith("VmData:"))
    soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    resource.setrlimit(resource.RLIMIT_DATA, (data_kb * 1024 + extra, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_DATA, (soft, hard))


def _check_case(pristine, mutation) -> None:
    path, case, folder, baseline = pristine
    shutil.copy(path, case)
    _mutate(case, mutation)
    with memory_budget():
        _check_mutant(case, folder, baseline, mutation)


def _check_mutant(case: str, folder: str, baseline: dict, mutation: tuple) -> None:
    # A field edited *with* its checksum recomputed is a crafted file, valid by
    # construction (a renamed span is just a name): it may change the result,
    # but must still never crash, hang or blow up.
    crafted = mutation[0] == "edit" and mutation[-1]
    try:
        warned = bool(tracer.load(case).warnings)
    except tracer.TraceError as exc:
        assert str(exc).startswith(case), exc  # the error names the file
        warned = True
    results = _run_all(case, folder)
    for name, (rc, result, err) in results.items():
        lines = err.strip().splitlines()
        if rc != 0:
            assert rc == 2 and len(lines) == 1, (name, mutation, err)
            assert lines[0].startswith("torchscope: ") and case in lines[0], (name, err)
        elif result != baseline[name][1] and not crafted:
            # a different result only beside the warning the loader gave
            assert warned and "torchscope: warning:" in err, (name, mutation, err)


MUTATIONS = st.one_of(
    st.tuples(st.just("truncate"), st.floats(0, 1)),
    st.tuples(
        st.just("flip"),
        st.lists(st.tuples(st.floats(0, 1), st.integers(0, 7)), min_size=1, max_size=8),
    ),
    st.tuples(st.just("overwrite"), st.floats(0, 1), st.binary(min_size=1, max_size=64)),
    st.tuples(st.just("edit"), st.sampled_from(FIELDS), st.integers(0, 40), HOSTILE, st.booleans()),
)


@pytest.mark.slow
@settings(
    max_examples=EXAMPLES,
    derandomize=True,  # a fixed seed: CI runs the same cases every time
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(mutation=MUTATIONS)
@example(mutation=("overwrite", 0.1503186561431862, b"\x00"))  # count(*) disagreed with rows
@example(mutation=("edit", ("blocks", "n"), 0, 10**12, True))
@example(mutation=("edit", ("blocks", "n"), 1, 2**40, True))
@example(mutation=("edit", ("strings", "id"), 3, 10**12, True))
@example(mutation=("edit", ("processes", "blocks"), 0, 10**12, True))
@example(mutation=("edit", ("processes", "argv"), 0, "{not json", True))
@example(mutation=("edit", ("snapshots", "payload"), 0, "[[[[", True))
@example(mutation=("edit", ("meta", "value"), 0, "\udcff", True))
@example(mutation=("edit", ("strings", "text"), 2, b"\xff\xfe", True))
def test_damaged_traces_are_refused_or_flagged(pristine, mutation):
    _check_case(pristine, mutation)


def _edit_blob(path: str, column: str, make, **more: object) -> None:
    """Rewrites one blob (and other fields) of the first block that has one, crc
    recomputed: a crafted file."""
    conn = sqlite3.connect(path)
    rowid, blob = conn.execute(
        f"SELECT rowid, {column} FROM blocks WHERE {column} IS NOT NULL LIMIT 1"
    ).fetchone()
    conn.execute(f"UPDATE blocks SET {column}=? WHERE rowid=?", (make(blob), rowid))
    for key, value in more.items():
        conn.execute(f"UPDATE blocks SET {key}=? WHERE rowid=?", (value, rowid))
    _recompute_crc(conn, "blocks", rowid)
    conn.commit()
    conn.close()


def _first_links_block(path: str, change) -> None:
    conn = sqlite3.connect(path)
    rowid, links = conn.execute(
        "SELECT rowid, links FROM blocks WHERE links IS NOT NULL LIMIT 1"
    ).fetchone()
    pairs = list(memoryview(links).cast("q"))
    change(pairs, conn, rowid)
    blob = memoryview(bytearray(len(pairs) * 8)).cast("q")
    for k, v in enumerate(pairs):
        blob[k] = v
    conn.execute("UPDATE blocks SET links=? WHERE rowid=?", (blob.tobytes(), rowid))
    _recompute_crc(conn, "blocks", rowid)
    conn.commit()
    conn.close()


def _ids_of(conn, rowid: int) -> list[int]:
    base, ids = conn.execute("SELECT id_base, ids FROM blocks WHERE rowid=?", (rowid,)).fetchone()
    return [base + v for v in memoryview(ids).cast("I")]


CRAFTED = {  # (row, linked id) pairs of the first block with links, changed
    "negative link": lambda pairs, conn, rowid: pairs.__setitem__(1, -5),
    "link to itself": lambda pairs, conn, rowid: pairs.__setitem__(
        1, _ids_of(conn, rowid)[pairs[0]]
    ),
    "link forward (a cycle)": lambda pairs, conn, rowid: pairs.__setitem__(
        1, _ids_of(conn, rowid)[pairs[0]] + 1
    ),
    "link to a row outside": lambda pairs, conn, rowid: pairs.__setitem__(0, 10**6),
}


@pytest.mark.parametrize("what", sorted(CRAFTED))
def test_crafted_links_never_reparent_silently(pristine, what):
    path, case, _folder, _baseline = pristine
    shutil.copy(path, case)
    _first_links_block(case, CRAFTED[what])
    t = tracer.load(case)
    assert any("link" in w for w in t.warnings), t.warnings
    has = t.parent >= 0  # every parent started earlier, in the same process: no cycle
    assert (t.seq[t.parent[has]] < t.seq[has]).all()
    assert (t.part[t.parent[has]] == t.part[has]).all()
    assert t.n < tracer.load(path).n  # the damaged block is left out, and said


@pytest.mark.parametrize(
    "make, why",
    [
        (
            lambda blob: bytes(blob[:8]) + b"\xff\xff\xff\x7f" + bytes(blob[12:]),
            "code out of range",
        ),
        (
            lambda blob: bytes(blob[:8]) + b"\x00\x00\x00\x80" + bytes(blob[12:]),
            "code out of range",
        ),
    ],
)
def test_string_codes_beyond_the_table_are_refused(pristine, make, why):
    path, case, _folder, _baseline = pristine
    shutil.copy(path, case)
    _edit_blob(case, "names", make)
    t = tracer.load(case)
    assert any(why in w for w in t.warnings), t.warnings
    assert t.n < tracer.load(path).n


def test_zlib_bomb_in_attributes_costs_no_memory(pristine):
    path, case, _folder, _baseline = pristine
    shutil.copy(path, case)
    deflate = zlib.compressobj(1)
    chunk = b" " * (1 << 24)
    bomb = b"".join(deflate.compress(chunk) for _ in range(64)) + deflate.flush()  # 1 GiB
    for size in (100, 256 << 20, 1 << 30):  # a lie, the largest allowed, too large
        _edit_blob(case, "attrs", lambda blob, b=bomb: b, attrs_size=size)
        with memory_budget(600 << 20):
            t = tracer.load(case)
        assert any("attribute" in w for w in t.warnings), t.warnings
