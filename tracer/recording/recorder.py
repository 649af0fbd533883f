"""The recorder: the sink ``reimpl._trace`` emits into, flushed to a trace file.

Instrumentation points append finished record tuples to one list (an atomic
``list.append`` under the GIL, so no lock on the hot path). A background
writer thread takes what has accumulated at least once a second, turns it
into numpy columns and writes one block per flush. Nesting is not tracked
here at all: ids are handed out in start order and records arrive in close
order, which is enough for the reader to rebuild every thread's call tree
exactly (``tracer.analyze.aggregate.parents``), so the hot path stays a tuple append.

Fork safety: a forked child (a DataLoader worker) must not inherit a
half-written buffer, the parent's SQLite connection or a dead writer thread.
``os.register_at_fork`` holds the writer lock across ``fork()`` and, in the
child, starts a fresh part of the same trace with its own connection and
writer thread.
"""

from __future__ import annotations

import atexit
import itertools
import json
import multiprocessing.util as mp_util
import os
import socket
import sys
import threading
import time
import weakref
from operator import itemgetter
from typing import Any

import numpy as np

from reimpl import _trace
from tracer.distributed import clock, rank
from tracer.file.store import Batch, StoreWriter, new_run_id
from tracer.recording import native_columns, subprocesses

DEFAULT_FLUSH_INTERVAL = 1.0

_record_id = itemgetter(0)
_COLUMN_GETTERS = [itemgetter(k) for k in range(9)]
_ADOPT_MARGIN = 1024  # adopt_stamps: ids skipped between the two counters
_live: weakref.WeakSet[Recorder] = weakref.WeakSet()
_abandoned: list[Any] = []  # parents' connections a child must never close


def default_run_id() -> str:
    """The run this process records: named by the environment, or a new one.

    ``TORCHSCOPE_RUN_ID`` names it explicitly. Under torchrun every rank runs
    its own ``torchscope record``: the ranks of one launch share the elastic
    agent (their parent) and its run id, so they join one trace instead of
    replacing each other's.
    """
    explicit = os.environ.get("TORCHSCOPE_RUN_ID")
    if explicit:
        return explicit
    if "TORCHELASTIC_RUN_ID" in os.environ:
        restart = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
        return f"torchrun-{os.environ['TORCHELASTIC_RUN_ID']}-{os.getppid()}-{restart}"
    return new_run_id()


def _thread_label(tid: int) -> tuple[str, str | None]:
    thread = threading._active.get(tid)  # type: ignore[attr-defined]
    return (thread.name if thread is not None else f"thread-{tid}", None)


class Recorder:
    """Records events from ``reimpl`` into a trace file (one part per process)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        flush_interval: float = DEFAULT_FLUSH_INTERVAL,
        argv: list[str] | None = None,
        meta: dict[str, str] | None = None,
        backward_spans: bool = True,
        run_id: str | None = None,
        mode: str = "new",
        defer_stamps: bool = False,
    ) -> None:
        """``mode``: ``"new"`` replaces a trace of another run at ``path``,
        ``"append"`` adds this run to it, ``"join"`` adds a part to run
        ``run_id`` (a spawned child); see ``StoreWriter``. ``defer_stamps``:
        when torch is not imported yet, the native stamp (which needs torch)
        waits for ``adopt_stamps()``, so the program's own ``import torch`` is
        recorded instead of being done here by the recorder."""
        self.path = os.fspath(path)
        self.run_id = run_id or default_run_id()
        self.mode = mode
        self.replaced: str | None = None  # what an existing trace at path was, if replaced
        self.flush_interval = flush_interval
        self.backward_spans = backward_spans  # module.backward spans (reimpl._trace)
        # The native boundary stamp (reimpl/_native), chosen at start: ids then
        # come from its counter, module calls are recorded in C, and each flush
        # drains its buffers.
        self.stamps: Any = None
        self.defer_stamps = defer_stamps
        self._argv = list(sys.argv if argv is None else argv)
        self._meta = dict(meta or {})
        self._role: tuple[str, int | None] = ("main", None)
        self._role_dirty = False
        self._lock = threading.Lock()
        self._reset_buffers()
        self._store: StoreWriter | None = None
        self._part = 0
        self._writer: threading.Thread | None = None
        self._stop = threading.Event()
        self.active = False
        self.spans_written = 0
        self._stopping = threading.Lock()  # main thread and SIGTERM watcher (terminate.py)
        self._terminated: str | None = None

    # -- the Sink protocol (reimpl._trace) ---------------------------------

    def _reset_buffers(self) -> None:
        self._buf: list[tuple] = []
        self.append = self._buf.append
        if self.stamps is not None:  # a forked child starts its ids (and stamps) afresh
            self.stamps.reset()
            self.next_id = self.stamps.next_id
        else:
            self.next_id = itertools.count(1).__next__
        self._snapshots: list[tuple] = []
        self._thread_info: dict[int, tuple[str, str | None]] = {}
        self._thread_idx: dict[int, int] = {}
        self._threads_dirty: list[tuple] = []
        self._thread_count = 0

    def thread_info(self, tid: int, name: str, device: str | None) -> None:
        """Names a thread and the device it serves.

        The OS reuses thread ids as soon as a thread ends (replica threads come
        and go every step), so the name goes into the record stream as a marker
        (id 0): records before it belong to the previous owner of ``tid``.
        """
        self.append((0, 0, tid, 0, 0, name, device, None, None))

    def process_role(self, role: str, index: int | None) -> None:
        """Records what this process is (main, worker k, rank r), on disk at once:
        a worker that dies before its first flush is still named."""
        self._role = (role, index)
        with self._lock:
            if self._store is not None:
                self._store.update_process(self._part, role=role, role_index=index)
                return
        self._role_dirty = True

    def snapshot(self, kind: str, key: str, payload: dict) -> None:
        """Keeps a structured snapshot (a model's structure) for the next flush."""
        self._snapshots.append((clock.now_ns(), kind, key, payload))

    # -- life cycle ----------------------------------------------------------

    def start(self) -> Recorder:
        """Opens the file, registers this process and starts emitting."""
        self._open_part(ppid=os.getppid())
        self.replaced = self._store.replaced  # type: ignore[union-attr]
        self._store.set_meta(  # type: ignore[union-attr]
            {
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "argv": json.dumps(self._argv),
                "python": sys.version.split()[0],
                "clock": "perf_counter_ns",
                "backward_spans": "yes" if self.backward_spans else "no",
                "run_id": self.run_id,
                **self._meta,
            }
        )
        _live.add(self)
        self.active = True
        # multiprocessing children clear finalizers right after fork, then run
        # the after-fork callbacks: that is where a child's part learns to close.
        mp_util.register_after_fork(self, _register_mp_finalizer)
        _trace.backward_spans = self.backward_spans
        if not (self.defer_stamps and "torch" not in sys.modules):
            # the native stamp records forward spans too: taken with or without backward ones
            self.stamps = _trace.native_stamps()  # None: the Python hooks (said once)
            if self.stamps is not None:
                self.stamps.reset()
                self.next_id = self.stamps.next_id
        _trace.attach(self)
        subprocesses.follow(self.path, self.run_id)
        rank.follow()  # a process group, when the program starts one: rank and clock
        return self

    def adopt_stamps(self) -> None:
        """Takes the native stamp now that torch is imported (``defer_stamps``).

        No module can have run a forward before torch was imported, so no
        boundary exists yet: switching is safe. The stamp's counter is moved
        past every id the Python counter gave out (the import spans), so ids
        stay unique and in start order.
        """
        if not self.active or self.stamps is not None:
            return
        stamps = _trace.native_stamps()
        if stamps is None:
            return
        with self._lock:
            stamps.reset()
            # Past the Python counter's next id, with room for ids another thread
            # draws from it while this runs (an import in a thread): ids may skip,
            # never repeat.
            for _ in range(self.next_id() + _ADOPT_MARGIN):
                stamps.next_id()
            self.stamps = stamps
            self.next_id = stamps.next_id
        _trace.use_stamps(stamps)

    def _open_part(self, ppid: int) -> None:
        self._store = StoreWriter(self.path, run_id=self.run_id, mode=self.mode)
        self.mode = "join"  # a later part of this recorder (a forked child) joins this run
        role, index = self._role
        self._part = self._store.add_process(
            os.getpid(),
            ppid,
            role,
            index,
            json.dumps(self._argv),
            socket.gethostname(),
            clock.now_ns(),
        )
        self._role_dirty = False
        self._stop = threading.Event()
        self._writer = threading.Thread(
            target=self._write_loop, name="torchscope-writer", daemon=True
        )
        self._writer.start()

    def _write_loop(self) -> None:
        stop = self._stop
        while not stop.wait(self.flush_interval):
            try:
                self.flush()
            except Exception as exc:  # never kill the traced program
                print(f"torchscope: writing {self.path} failed: {exc}", file=sys.stderr)

    def flush(self) -> int:
        """Writes everything recorded so far; returns the number of spans written."""
        with self._lock:
            store = self._store
            if store is None:
                return 0
            buf = self._buf
            if self.stamps is not None:  # native stamps join the records (reimpl/_native)
                records, taken = self.stamps.take(buf, final=not self.active)
            else:
                records = buf[: len(buf)]
                taken = len(records)
            n = len(records)
            # Appends from other threads only ever add at the end, so deleting
            # the first ones under the GIL loses nothing.
            del buf[:taken]
            snapshots, self._snapshots = self._snapshots, []
            batch = self._columns(records) if n else None
            skew = clock.skew_ns()  # a simulated host (tests); 0 otherwise
            if batch is not None and skew:
                batch.starts = batch.starts + skew
            threads, self._threads_dirty = self._threads_dirty, []
            if self._role_dirty:
                store.update_process(self._part, role=self._role[0], role_index=self._role[1])
                self._role_dirty = False
            if batch is not None or threads or snapshots:
                store.write(self._part, batch, threads, snapshots)
            self.spans_written += n
            return n

    def _split_markers(self, records: list[tuple]) -> tuple[list[tuple], list[int]]:
        """Applies thread-name markers in stream order; returns records and lanes."""
        kept: list[tuple] = []
        lanes: list[int] = []
        for rec in records:
            if rec[0] == 0:
                tid = rec[2]
                self._thread_info[tid] = (rec[5], rec[6])
                self._thread_idx.pop(tid, None)  # the next record opens a new lane
            else:
                kept.append(rec)
                lanes.append(self._thread_index(rec[2]))
        return kept, lanes

    def _columns(self, records: list[tuple]) -> Batch | None:
        """Transposes record tuples into numpy columns, interning strings."""
        lanes: list[int] | None = None
        if 0 in map(_record_id, records):  # thread-name markers (id 0) present
            records, lanes = self._split_markers(records)
            if not records:
                return None
        native = native_columns.load()
        cols = self._transpose_native(native, records) if native else self._transpose(records)
        ids, links, tids, starts, durs, kinds, names, funcs, attr_keys = cols
        if lanes is None:
            seen, where = np.unique(tids, return_inverse=True)
            lane_of = np.array([self._thread_index(int(t)) for t in seen], dtype=np.int64)
            threads = lane_of[where.reshape(-1)]
        else:
            threads = np.array(lanes, dtype=np.int64)
        linked = np.flatnonzero(links)
        attr_index, distinct = self._attr_columns(attr_keys, records)
        return Batch(
            id_base=int(ids.min()),
            ids=ids,
            threads=threads,
            starts=starts,
            durs=durs,
            kinds=kinds,
            names=names,
            funcs=funcs,
            links=np.stack([linked, links[linked]], axis=1) if len(linked) else None,
            attr_index=attr_index,
            attrs=distinct,
        )

    def _transpose_native(self, native: Any, records: list[tuple]) -> np.ndarray:
        """``_columns.c``: one C pass fills the nine int64 columns."""
        cols = np.empty((9, len(records)), dtype=np.int64)
        strings = self._store.string_ids(())  # type: ignore[union-attr]
        missing = native.fill(records, strings, *cols)
        if missing:  # new strings: intern them, then fill again
            native.fill(records, self._store.string_ids(missing), *cols)  # type: ignore[union-attr]
        return cols

    def _transpose(self, records: list[tuple]) -> list[np.ndarray]:
        """The Python transpose (the fallback, and the reference for ``_columns.c``)."""
        # One C-level pass per column: zip(*records) would build a million-argument call.
        ids, links, tids, starts, ends, kinds, names, funcs, attrs = (
            list(map(getter, records)) for getter in _COLUMN_GETTERS
        )
        n = len(ids)
        strings = self._store.string_ids(set(kinds) | set(names) | set(funcs))  # type: ignore[union-attr]
        lookup = strings.__getitem__
        starts_arr = np.array(starts, dtype=np.int64)
        return [
            np.array(ids, dtype=np.int64),
            np.array(links, dtype=np.int64),
            np.array(tids, dtype=np.int64),
            starts_arr,
            np.array(ends, dtype=np.int64) - starts_arr,
            np.fromiter(map(lookup, kinds), dtype=np.int64, count=n),
            np.fromiter(map(lookup, names), dtype=np.int64, count=n),
            np.fromiter(map(lookup, funcs), dtype=np.int64, count=n),
            np.fromiter(map(id, attrs), dtype=np.int64, count=n),
        ]

    def _thread_index(self, tid: int) -> int:
        idx = self._thread_idx.get(tid)
        if idx is None:
            idx = self._thread_idx[tid] = self._thread_count
            self._thread_count += 1
            name, device = self._thread_info.get(tid) or _thread_label(tid)
            self._threads_dirty.append((idx, tid, name, device))
        return idx

    @staticmethod
    def _attr_columns(
        keys: np.ndarray, records: list[tuple]
    ) -> tuple[np.ndarray | None, list | None]:
        """Stores each distinct attribute object once (modules reuse theirs).

        ``keys`` holds each record's ``id(attrs)``. Rows are matched by object
        identity in numpy (one sort), not in a Python loop: most records carry
        attrs, and this runs for every one of them. Slots follow first
        appearance. Pair tuples, which hot paths share, become dicts (see
        reimpl/_trace.py).
        """
        present = keys != id(None)
        rows = np.flatnonzero(present)
        if not len(rows):
            return None, None
        _, first, inverse = np.unique(keys[rows], return_index=True, return_inverse=True)
        order = np.argsort(first, kind="stable")  # slots in order of first appearance
        slot_of = np.empty(len(order), dtype=np.int32)
        slot_of[order] = np.arange(len(order), dtype=np.int32)
        index = np.full(len(keys), -1, dtype=np.int32)
        index[rows] = slot_of[inverse.reshape(-1)]
        distinct = []
        for row in rows[first[order]].tolist():
            value = records[row][8]
            distinct.append(dict(value) if type(value) is tuple else value)
        return index, distinct

    def merge_records(self, records: list[tuple]) -> None:
        """Merges records made elsewhere (viztracer's calls) into the unflushed stream."""
        from tracer.recording.deep import merge

        with self._lock:
            buf = self._buf[:]
            if self.stamps is not None:  # viztracer's calls end the recording: take all
                buf = self.stamps.take(buf, final=True)[0]
            self._buf[:] = merge(buf, records)  # same list: append stays bound

    def terminated(self, reason: str) -> None:
        """A launcher is ending this process (``terminate.py``): writes everything
        now, the collective this process is blocked in included, cut here."""
        from reimpl import _collectives

        if not self.active:
            return
        self._terminated = reason
        for record in _collectives.cut_in_flight(reason):
            self.append(record)
        self.flush()
        with self._lock:
            if self._store is not None:
                self._store.update_process(self._part, status=f"terminated: {reason}")

    def stop(self, status: str = "ok") -> None:
        """Stops emitting, writes what is left and closes this process's part."""
        with self._stopping:
            self._stop_locked(status)

    def _stop_locked(self, status: str) -> None:
        if not self.active:
            return
        if self._terminated is not None:
            status = f"terminated: {self._terminated}"
        if _trace.sink is self:
            _trace.detach()
            _trace.backward_spans = True
            subprocesses.unfollow()
            rank.unfollow()
        self.active = False
        self._stop.set()
        if self._writer is not None and self._writer is not threading.current_thread():
            self._writer.join()
        self._store.set_meta({"mirrors": json.dumps(_trace.MIRRORS)})  # type: ignore[union-attr]
        self.flush()
        self._store.update_process(  # type: ignore[union-attr]
            self._part, end_ns=clock.now_ns(), status=status
        )
        self._store.close()  # type: ignore[union-attr]
        self._store = None

    # -- fork ------------------------------------------------------------------

    def _before_fork(self) -> None:
        self._lock.acquire()

    def _after_fork_parent(self) -> None:
        self._lock.release()

    def _after_fork_child(self) -> None:
        """Starts this child's own part; drops everything inherited."""
        self._lock = threading.Lock()
        self._stopping = threading.Lock()  # never one a parent's thread held at fork
        self._terminated = None
        _abandoned.append(self._store)  # never close the parent's connection here
        self._reset_buffers()
        self._role = ("child", None)
        self._open_part(ppid=os.getppid())
        _register_exit(self)

    def __enter__(self) -> Recorder:
        return self.start()

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        status = "ok" if exc_type is None else f"error: {getattr(exc_type, '__name__', exc_type)}"
        self.stop(status)


def _register_exit(rec: Recorder) -> None:
    """A forked child closes its part at exit (a plain os.fork child through atexit)."""
    atexit.register(rec.stop)


def _register_mp_finalizer(rec: Recorder) -> None:
    """In a multiprocessing child, after ``Process._bootstrap`` cleared the
    finalizers it inherited: the child leaves through ``os._exit``, skipping
    atexit, but runs multiprocessing's finalizers first."""
    if rec.active:
        mp_util.Finalize(rec, rec.stop, exitpriority=100)


def _before_fork() -> None:
    for rec in list(_live):
        if rec.active:
            rec._before_fork()


def _after_fork_parent() -> None:
    for rec in list(_live):
        if rec.active:
            rec._after_fork_parent()


def _after_fork_child() -> None:
    for rec in list(_live):
        if rec.active:
            rec._after_fork_child()


os.register_at_fork(
    before=_before_fork, after_in_parent=_after_fork_parent, after_in_child=_after_fork_child
)
