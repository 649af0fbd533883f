"""The writer's C transpose (tracer/recording/_columns.c) against its Python reference."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import tracer
from reimpl import _trace
from tracer.recording import native_columns
from tracer.recording.recorder import Recorder

native = native_columns.load()
COLUMNS = ("ids", "links", "tids", "starts", "durs", "kinds", "names", "funcs", "attrs")
needs_native = pytest.mark.skipif(native is None, reason="no C compiler: fallback only")


def _records(n: int, shared: tuple, fresh_names: int) -> list[tuple]:
    """Records like the hot paths make: shared attr tuples, None, dicts, links, new names."""
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        start = int(rng.integers(0, 10**12))
        attrs = (shared, None, {"k": i}, shared)[i % 4]
        link = int(rng.integers(1, i + 1)) if i % 7 == 3 else 0
        out.append(
            (i + 1, link, 1000 + i % 3, start, start + int(rng.integers(0, 10**6)),
             ("module.forward", "hook.forward", f"kind.{i % 5}")[i % 3],
             f"name.{i % fresh_names}", ("f", "g")[i % 2], attrs)
        )  # fmt: skip
    return out


@pytest.fixture
def recorder(tmp_path):
    rec = Recorder(str(tmp_path / "t.tsdb"), flush_interval=1000).start()
    yield rec
    rec.stop()


def _batch_arrays(batch) -> dict:
    return {
        k: v
        for k, v in vars(batch).items()
        if k != "attrs"  # compared separately: dicts
    }


@needs_native
def test_native_transpose_equals_python(recorder):
    records = _records(5000, (("path", "a.b"), ("cls", "Linear")), fresh_names=97)
    python = recorder._transpose(records)  # interns every string first
    native_cols = recorder._transpose_native(native, records)
    for name, a, b in zip(COLUMNS, python, native_cols, strict=True):
        np.testing.assert_array_equal(a, b, err_msg=name)


@needs_native
def test_native_interns_strings_it_has_not_seen(recorder):
    records = _records(300, (("x", 1),), fresh_names=300)  # every name is new
    cols = recorder._transpose_native(native, records)
    strings = recorder._store.string_ids(())
    assert [strings[r[6]] for r in records] == cols[6].tolist()
    assert (cols[5:8] > 0).all()


@needs_native
def test_batches_are_identical_either_way(recorder, monkeypatch):
    records = _records(2000, (("path", "a"),), fresh_names=11)
    with_native = recorder._columns(records)
    monkeypatch.setattr(native_columns, "_loaded", [None])
    with_python = recorder._columns(records)
    for key, value in _batch_arrays(with_native).items():
        other = getattr(with_python, key)
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(value, other, err_msg=key)
        else:
            assert value == other, key
    assert with_native.attrs == with_python.attrs
    assert with_native.attrs[0] == {"path": "a"}  # shared pair tuples become dicts


@needs_native
@pytest.mark.parametrize(
    "bad, error",
    [
        ((1, 0, 1, 2), TypeError),  # not a 9-tuple
        ((1, 0, "tid", 2, 3, "k", "n", "f", None), TypeError),  # not an int
        ((1, 0, 2**70, 2, 3, "k", "n", "f", None), OverflowError),
    ],
)
def test_malformed_records_raise_not_crash(bad, error):
    cols = np.zeros((9, 1), dtype=np.int64)
    with pytest.raises(error):
        native.fill([bad], {"k": 1, "n": 2, "f": 3}, *cols)


def test_short_buffers_are_refused():
    if native is None:
        pytest.skip("no C compiler")
    cols = np.zeros((9, 1), dtype=np.int64)
    with pytest.raises(ValueError, match="len\\(records\\)"):
        native.fill([(1, 0, 1, 2, 3, "k", "n", "f", None)] * 2, {}, *cols)


def _record_threads(path: str) -> None:
    both = threading.Barrier(2)  # alive together: Python reuses a finished thread's ident

    def work(tag: str) -> None:
        if tag != "main":
            both.wait()
        for i in range(200):
            with _trace.span("test.node", f"{tag}.{i % 3}", i=i % 5):
                pass

    with tracer.record(path, flush_interval=0.01):
        threads = [threading.Thread(target=work, args=(t,), name=t) for t in "ab"]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        work("main")


def _summary(path: str) -> list:
    """Each lane's spans (name, depth, attrs) in start order; lanes in order of first span."""
    t = tracer.load(path)
    lanes: dict[int, list] = {}
    for i in np.argsort(t.start_ns, kind="stable").tolist():
        lanes.setdefault(int(t.thread[i]), []).append(
            (t.name_of(i), int(t.depth[i]), str(t.attrs(i)))
        )
    return sorted(lanes.values())


@pytest.mark.multiprocess
def test_fallback_records_the_same_trace(tmp_path):
    """TORCHSCOPE_NATIVE=0 (the Python transpose) and the default give one trace."""
    paths = {}
    for mode in ("1", "0"):
        paths[mode] = str(tmp_path / f"native{mode}.tsdb")
        code = (
            "import sys; sys.path.insert(0, '.'); "
            "from tests.tracer.recording.test_native_columns import _record_threads; "
            f"_record_threads({paths[mode]!r})"
        )
        env = {**os.environ, "TORCHSCOPE_NATIVE": mode}
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert "unavailable" not in done.stderr
    assert _summary(paths["1"]) == _summary(paths["0"])
    assert [len(lane) for lane in _summary(paths["1"])] == [200, 200, 200]


def test_build_into_a_fresh_folder(tmp_path):
    try:
        built = native_columns.build(tmp_path)
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"no C compiler: {native_columns.reason(exc)}")
    assert built.exists() and built.parent == tmp_path
    assert [p.name for p in tmp_path.iterdir()] == [built.name]  # no temp file left
    module = native_columns._import(built)
    cols = np.zeros((9, 1), dtype=np.int64)
    missing = module.fill([(5, 0, 7, 10, 15, "k", "n", "f", None)], {"k": 1, "n": 2, "f": 3}, *cols)
    assert missing == set()
    assert cols[:, 0].tolist()[:8] == [5, 0, 7, 10, 5, 1, 2, 3]
    assert cols[8, 0] == id(None)
