"""Recording -> loading round trips: exact counts, parents, threads, processes."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest

import tracer
from reimpl import _trace


def nested(depth: int, width: int, tag: str) -> int:
    """Emits a full tree of spans; returns how many."""
    if depth == 0:
        return 0
    count = 0
    for i in range(width):
        with _trace.span("test.node", f"{tag}.{depth}.{i}", depth=depth):
            count += 1 + nested(depth - 1, width, tag)
    return count


def test_round_trip_exact_counts_and_parents(trace_path):
    with tracer.record(trace_path):
        emitted = nested(3, 3, "a")  # 3 + 9 + 27
        _trace.instant("test.mark", "done")
    t = tracer.load(trace_path)
    assert t.n == emitted + 1 == 40
    # Every parent encloses its child in time and is one level up.
    has_parent = t.parent >= 0
    p = t.parent[has_parent]
    assert np.all(t.start_ns[p] <= t.start_ns[has_parent])
    assert np.all(t.end_ns[p] >= t.end_ns[has_parent])
    assert np.all(t.depth[has_parent] == t.depth[p] + 1)
    # The name encodes the depth the span was emitted at (3 = outermost).
    names = [t.name_of(i) for i in range(t.n)]
    for row, name in enumerate(names):
        if name.startswith("a."):
            assert int(name.split(".")[1]) == 3 - t.depth[row]
    assert len(t.roots()) == 4  # three top-level nodes and the instant
    assert sorted(len(t.children(r)) for r in t.roots()) == [0, 3, 3, 3]
    assert t.attrs(int(t.roots()[0])) == {"depth": 3}
    assert t.func_of(0).endswith("test_recorder.nested")
    assert t.processes[0].status == "ok" and t.processes[0].pid == os.getpid()


def test_pair_tuple_attrs_are_stored_as_dicts(trace_path):
    shared = (("cls", "Linear"), ("path", "encoder.0"))
    with tracer.record(trace_path) as rec:
        for _ in range(3):
            sid = rec.next_id()
            rec.append((sid, 0, threading.get_ident(), 1, 2, "module.forward", "encoder.0", "f",
                        shared))  # fmt: skip
        _trace.instant("test.mark", "done", n=1)
    t = tracer.load(trace_path)
    assert [t.attrs(i) for i in range(t.n)] == [{"cls": "Linear", "path": "encoder.0"}] * 3 + [
        {"n": 1}
    ]


def test_many_threads_exact_counts_and_nesting(trace_path):
    """8 threads x 100,000 spans: every span kept, every parent on its own thread."""
    per_thread = 100_000
    barrier = threading.Barrier(8)

    def work(k: int) -> None:
        _trace.set_thread_info(f"worker-{k}", f"sim:{k}")
        barrier.wait()
        sink = _trace.sink
        for _ in range(per_thread // 2):
            # The hot-path pattern: an outer span and an inner one.
            outer = sink.next_id()
            t0 = __import__("time").perf_counter_ns()
            inner = sink.next_id()
            t1 = __import__("time").perf_counter_ns()
            sink.append((inner, 0, threading.get_ident(), t1, t1 + 1, "in", "i", "f", None))
            sink.append((outer, 0, threading.get_ident(), t0, t1 + 2, "out", "o", "f", None))

    with tracer.record(trace_path, flush_interval=0.05):
        threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    t = tracer.load(trace_path)
    assert t.n == 8 * per_thread
    names = {th.label for th in t.threads}
    assert names == {f"worker-{k} [sim:{k}]" for k in range(8)}
    assert np.bincount(t.thread).tolist() == [per_thread] * 8
    inner = t.kind == t.code("in")
    outer = t.kind == t.code("out")
    assert inner.sum() == outer.sum() == 4 * per_thread
    assert np.all(t.parent[outer] == -1)
    parents = t.parent[inner]
    assert np.all(t.kind[parents] == t.code("out"))
    assert np.all(t.thread[parents] == t.thread[inner])
    # each outer span has exactly one child
    assert np.all(np.bincount(parents, minlength=t.n)[outer] == 1)


def test_cross_thread_link_sets_parent(trace_path):
    with tracer.record(trace_path):
        with _trace.span("dp.parallel_apply", "apply") as parent_span:

            def replica() -> None:
                _trace.set_thread_info("replica 1", "sim:1")
                with _trace.span("dp.replica", "replica 1", link=parent_span.id):
                    with _trace.span("module.forward", "net"):
                        pass

            th = threading.Thread(target=replica)
            th.start()
            th.join()
    t = tracer.load(trace_path)
    apply_row = int(np.flatnonzero(t.kind == t.code("dp.parallel_apply"))[0])
    replica_row = int(np.flatnonzero(t.kind == t.code("dp.replica"))[0])
    assert t.parent[replica_row] == apply_row
    assert t.thread[replica_row] != t.thread[apply_row]
    assert t.threads[t.thread[replica_row]].device == "sim:1"


def test_exception_inside_span_is_recorded(trace_path):
    try:
        with tracer.record(trace_path):
            with _trace.span("step", "bad"):
                raise ValueError("boom")
    except ValueError:
        pass
    t = tracer.load(trace_path)
    assert t.attrs(0)["error"] == "ValueError: boom"
    assert t.processes[0].status == "error: ValueError"


def test_snapshots_and_roles_are_stored(trace_path):
    with tracer.record(trace_path):
        _trace.set_process_role("rank", 1)
        _trace.snapshot("module", "net", {"path": "", "children": [{"path": "fc"}]})
        _trace.set_process_role("main")
    t = tracer.load(trace_path)
    assert t.snapshots[0]["payload"]["children"][0]["path"] == "fc"
    assert t.processes[0].role == "main"


def test_detached_emits_nothing_and_shares_one_noop():
    assert _trace.sink is None
    assert _trace.span("a", "b") is _trace.span("c", "d")
    _trace.instant("a", "b")  # no sink: nothing happens, no error


def test_fork_child_writes_its_own_part(trace_path):
    with tracer.record(trace_path, flush_interval=0.05):
        with _trace.span("parent", "before-fork"):
            pid = os.fork()
            if pid == 0:  # the child: its own part, never the parent's buffer
                code = 0
                try:
                    _trace.set_process_role("worker", 0)
                    with _trace.span("child", "in-child"):
                        pass
                    _trace.sink.stop()
                except BaseException:
                    code = 1
                os._exit(code)
            _, status = os.waitpid(pid, 0)
            assert os.waitstatus_to_exitcode(status) == 0
    t = tracer.load(trace_path)
    assert [p.role for p in t.processes] == ["main", "worker"]
    kinds_by_part = {
        p.part: {t.kind_of(r) for r in np.flatnonzero(t.part == p.part)} for p in t.processes
    }
    assert kinds_by_part[t.processes[0].part] == {"parent"}
    assert kinds_by_part[t.processes[1].part] == {"child"}
    assert t.processes[1].ppid == os.getpid()


def test_call_paths_merge_the_same_layer_across_steps(trace_path):
    from tracer.analyze.summary import call_paths

    with tracer.record(trace_path):
        for i in range(5):
            with _trace.step(i):
                with _trace.span("module.forward", "net"):
                    with _trace.span("module.forward", "net.fc"):
                        pass
                with _trace.span("optim.step", "SGD"):
                    pass
    paths = {p["path"]: p for p in call_paths(tracer.load(trace_path))}
    assert set(paths) == {
        "step:step",
        "step:step > module.forward:net",
        "step:step > module.forward:net > module.forward:net.fc",
        "step:step > optim.step:SGD",
    }
    assert all(p["count"] == 5 for p in paths.values())
    top = paths["step:step"]
    assert top["incl_ns"] >= top["self_ns"] >= 0


def _spawned_work(rank: int) -> None:
    _trace.set_process_role("rank", rank)
    with _trace.span("spawned", f"rank {rank}"):
        pass


@pytest.mark.multiprocess
def test_spawned_processes_record_into_the_same_trace(trace_path):
    import torch.multiprocessing as mp

    with tracer.record(trace_path):
        with _trace.span("parent", "launch"):
            mp.spawn(_spawned_work, nprocs=2, join=True)
    t = tracer.load(trace_path)
    roles = sorted((p.role, p.role_index) for p in t.processes)
    assert roles == [("main", None), ("rank", 0), ("rank", 1)]
    for p in t.processes:
        names = {t.name_of(r) for r in np.flatnonzero(t.part == p.part)}
        assert names == ({"launch"} if p.role == "main" else {f"rank {p.role_index}"})
        assert p.status == "ok"


def _child_records() -> None:
    _trace.set_process_role("worker", 3)
    with _trace.span("child", "in-mp-child"):
        pass  # no explicit stop: the child's part must close by itself


@pytest.mark.multiprocess
def test_multiprocessing_fork_child_closes_its_part(trace_path):
    import multiprocessing

    with tracer.record(trace_path):
        child = multiprocessing.get_context("fork").Process(target=_child_records)
        child.start()
        child.join(30)
        assert child.exitcode == 0
    t = tracer.load(trace_path)
    worker = next(p for p in t.processes if p.role == "worker")
    assert worker.role_index == 3 and worker.status == "ok"
    assert {t.name_of(r) for r in np.flatnonzero(t.part == worker.part)} == {"in-mp-child"}


def _backward_spans_in_child() -> bool:
    return _trace.backward_spans


def test_spawned_child_gets_the_backward_spans_option(trace_path):
    from tracer.recording import subprocesses

    with tracer.record(trace_path) as parent:  # the spawned child joins its parent's run
        run_id = parent.run_id
    assert subprocesses.run_recorded(trace_path, run_id, False, _backward_spans_in_child) is False
    assert _trace.backward_spans is True and _trace.sink is None  # restored on stop
    assert tracer.load(trace_path).meta["backward_spans"] == "no"
