"""Writes tests/data/sample.tsdb: a small trace with every kind of lane, fixed times.

The TUI's snapshot tests need a trace whose structure *and* times never change,
so this script writes the store directly (``tracer.file.store.StoreWriter``) instead
of recording a run: a main process whose DataParallel replicas run on two
threads (sim:0, sim:1), two DataLoader workers prefetching, two SyncBatchNorm
ranks (rank 1 waits in the all-gather), ``import`` spans and a module snapshot.
Funcs name real reimpl functions so the source pane has something to show.

    python tests/data/make_sample_trace.py [OUT]
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tracer.file.store import Batch, StoreWriter

OUT = Path(__file__).with_name("sample.tsdb")
US = 1_000  # ns per microsecond: all times below are in microseconds

CALL = "reimpl.nn.modules.module.Module._call_impl"
HOOK = "reimpl.nn.modules.module.Module._call_with_hooks"
BACKWARD = "reimpl.nn.modules.module._stamp"
SYNC_BN = "reimpl.nn.modules._functions.SyncBatchNorm.forward"
MIRRORS = {
    CALL: "torch.nn.modules.module.Module._call_impl",
    SYNC_BN: "torch.nn.modules._functions.SyncBatchNorm.forward",
    "reimpl.optim.sgd.SGD.step": "torch.optim.sgd.SGD.step",
    "reimpl.optim.optimizer.Optimizer.zero_grad": "torch.optim.optimizer.Optimizer.zero_grad",
}


@dataclass
class Node:
    """One span to write; times in microseconds."""

    kind: str
    name: str
    func: str
    start: int
    dur: int
    thread: int = 0
    attrs: dict | None = None
    children: list[Node] = field(default_factory=list)

    def add(self, *kids: Node) -> Node:
        self.children.extend(kids)
        return self


def module(path: str, cls: str, start: int, dur: int, thread: int = 0, *kids: Node) -> Node:
    """A ``module.forward`` span as ``Module._call_impl`` records it."""
    attrs = {"cls": cls, "path": path}
    return Node("module.forward", path, CALL, start, dur, thread, attrs).add(*kids)


def replica_forward(k: int, t: int) -> Node:
    """One replica's forward on its own thread: the shared hook fires on both."""
    hook = Node(
        "hook.forward",
        "samples.unet.StoreHook.__call__",
        HOOK,
        t + 60,
        8,
        k + 1,
        {"hook": "samples.unet.StoreHook.__call__", "hook_id": 4242, "module": "features.1"},
    )
    features = module(
        "features",
        "Sequential",
        t + 5,
        120,
        k + 1,
        module("features.0", "Conv2d", t + 10, 30, k + 1),
        module("features.1", "BatchNorm2d", t + 42, 30, k + 1, hook),
        module("features.2", "ReLU", t + 75, 10, k + 1),
    )
    net = module("SmallCNN", "SmallCNN", t + 2, 160, k + 1, features)
    net.children.append(module("classifier", "Linear", t + 130, 25, k + 1))
    replica = Node(
        "dp.replica", f"replica {k}", "reimpl.nn.parallel.parallel_apply._worker", t, 170
    )
    replica.thread = k + 1
    return replica.add(net)


def main_step(i: int, t: int) -> Node:
    """One DataParallel training step on the main thread."""
    apply = Node(
        "dp.parallel_apply", "parallel_apply", "reimpl.nn.parallel.parallel_apply", t + 80, 200
    )
    apply.add(replica_forward(0, t + 90), replica_forward(1, t + 100))
    upd = [
        Node(
            "optim.update", f"param {p}", "reimpl.optim.sgd._single_tensor_sgd", t + 450 + 10 * p, 8
        )
        for p in range(4)
    ]
    group = Node(
        "optim.group", "group 0", "reimpl.optim.sgd.SGD.step", t + 445, 50, attrs={"lr": 0.1}
    ).add(*upd)
    return Node("step", "step", "samples.train_step.main", t, 560, attrs={"index": i}).add(
        Node(
            "data.next",
            "DataLoader.__next__",
            "reimpl.utils.data.dataloader._BaseDataLoaderIter.__next__",
            t + 2,
            30,
        ),
        Node(
            "optim.zero_grad",
            "SGD.zero_grad",
            "reimpl.optim.optimizer.Optimizer.zero_grad",
            t + 35,
            10,
        ),
        Node("dp.scatter", "scatter", "reimpl.nn.parallel.scatter_gather.scatter", t + 48, 12),
        Node("dp.replicate", "replicate", "reimpl.nn.parallel.replicate.replicate", t + 62, 15),
        apply,
        Node("dp.gather", "gather", "reimpl.nn.parallel.scatter_gather.gather", t + 285, 15),
        Node("module.backward", "SmallCNN", BACKWARD, t + 305, 130, attrs={"path": "SmallCNN"}),
        Node("optim.step", "SGD.step", "reimpl.optim.sgd.SGD.step", t + 440, 60).add(group),
        Node(
            "sched.step", "StepLR.step", "reimpl.optim.lr_scheduler.LRScheduler.step", t + 505, 12
        ),
    )


def worker_spans(k: int) -> list[Node]:
    """A DataLoader worker fetching and collating batches ahead of the main loop."""
    spans = []
    for b in range(3):
        t = 150 + 560 * b + 40 * k
        fetch = Node(
            "data.fetch",
            f"fetch batch {2 * b + k}",
            "reimpl.utils.data._utils.fetch._MapDatasetFetcher.fetch",
            t + 5,
            200,
            attrs={"indices": [4 * b, 4 * b + 1]},
        )
        collate = Node(
            "data.collate",
            "default_collate",
            "reimpl.utils.data._utils.collate.default_collate",
            t + 210,
            60,
        )
        spans.append(
            Node(
                "data.worker",
                f"worker {k} batch {b}",
                "reimpl.utils.data._utils.worker._worker_loop",
                t,
                280,
            ).add(fetch, collate)
        )
    return spans


def rank_spans(r: int) -> list[Node]:
    """A SyncBatchNorm forward per step; rank 1 arrives late, rank 0 waits."""
    out = []
    for i in range(2):
        t = 100 + 800 * i
        late = 150 if r == 1 else 0
        stats = Node("bn.stats", "batch_norm_stats", SYNC_BN, t + 10 + late, 40)
        gather = Node(
            "collective.all_gather",
            "all_gather",
            "reimpl.nn.modules._functions._collective",
            t + 55 + late,
            200 - late,
            attrs={"world_size": 2, "wait_ns": (200 - late) * US},
        )
        gstats = Node("bn.gather_stats", "batch_norm_gather_stats", SYNC_BN, t + 260, 30)
        elemt = Node("bn.elemt", "batch_norm_elemt", SYNC_BN, t + 295, 40)
        bn = module("bn", "SyncBatchNorm", t + 5, 340, 0, stats, gather, gstats, elemt)
        out.append(Node("step", "step", "samples.syncbn.main", t, 360, attrs={"index": i}).add(bn))
    return out


def import_spans() -> Node:
    """What ``import torch`` did, as nested ``import`` spans."""
    kids = [
        Node("import", m, "importlib._bootstrap._find_and_load", 20 + 20 * j, 15)
        for j, m in enumerate(["torch._C", "torch.nn", "torch.optim"])
    ]
    return Node("import", "torch", "importlib._bootstrap._find_and_load", 10, 90).add(*kids)


def flatten(roots: list[Node]) -> list[tuple[Node, Node | None]]:
    """(node, parent) for every node, parents first."""
    out: list[tuple[Node, Node | None]] = []
    stack: list[tuple[Node, Node | None]] = [(r, None) for r in reversed(roots)]
    while stack:
        node, parent = stack.pop()
        out.append((node, parent))
        stack.extend((c, node) for c in reversed(node.children))
    return out


def write_part(
    w: StoreWriter,
    pid: int,
    role: str,
    index: int | None,
    threads: list[tuple[str, str | None]],
    roots: list[Node],
    base: int,
) -> None:
    """Writes one process: ids in start order, rows in close order per thread."""
    part = w.add_process(pid, 1, role, index, json.dumps(["train.py"]), "host", base)
    pairs = flatten(roots)
    ids = {id(n): k + 1 for k, (n, _) in enumerate(sorted(pairs, key=lambda p: p[0].start))}
    rows: list[tuple[Node, Node | None]] = []
    for lane in range(len(threads)):
        lane_pairs = [p for p in pairs if p[0].thread == lane]
        rows.extend(sorted(lane_pairs, key=lambda p: (p[0].start + p[0].dur, -p[0].start)))
    texts = {s for n, _ in rows for s in (n.kind, n.name, n.func)}
    codes = w.string_ids(sorted(texts))
    links = [
        (k, ids[id(p)]) for k, (n, p) in enumerate(rows) if p is not None and p.thread != n.thread
    ]
    attrs = [n.attrs for n, _ in rows if n.attrs is not None]
    index_col = np.full(len(rows), -1, dtype=np.int32)
    index_col[[k for k, (n, _) in enumerate(rows) if n.attrs is not None]] = np.arange(len(attrs))
    batch = Batch(
        id_base=1,
        ids=np.array([ids[id(n)] for n, _ in rows], dtype=np.int64),
        threads=np.array([n.thread for n, _ in rows], dtype=np.int64),
        starts=np.array([base + n.start * US for n, _ in rows], dtype=np.int64),
        durs=np.array([n.dur * US for n, _ in rows], dtype=np.int64),
        kinds=np.array([codes[n.kind] for n, _ in rows], dtype=np.int64),
        names=np.array([codes[n.name] for n, _ in rows], dtype=np.int64),
        funcs=np.array([codes[n.func] for n, _ in rows], dtype=np.int64),
        links=np.array(links, dtype=np.int64) if links else None,
        attr_index=index_col,
        attrs=attrs,
    )
    thread_rows = [(k, 100 + 10 * part + k, name, dev) for k, (name, dev) in enumerate(threads)]
    snaps = [(base, "module", "SmallCNN@0x1", SNAPSHOT)] if role == "main" else []
    w.write(part, batch, thread_rows, snaps)
    w.update_process(part, end_ns=base + 2_000 * US, status="ok")


def _mod(
    path: str,
    cls: str,
    children: list[str],
    params: list[tuple[str, list[int]]],
    buffers: list[str] = (),
    hooks: dict | None = None,
) -> dict:
    return {
        "path": path,
        "cls": cls,
        "children": children,
        "parameters": [
            {"name": n, "shape": s, "dtype": "torch.float32", "requires_grad": True}
            for n, s in params
        ],
        "buffers": [
            {"name": b, "shape": [8], "dtype": "torch.float32", "persistent": True} for b in buffers
        ],
        "hooks": hooks or {},
    }


SNAPSHOT = {
    "root": "SmallCNN",
    "cls": "SmallCNN",
    "modules": [
        _mod("SmallCNN", "SmallCNN", ["features", "classifier"], []),
        _mod("features", "Sequential", ["0", "1", "2"], []),
        _mod("features.0", "Conv2d", [], [("weight", [8, 3, 3, 3]), ("bias", [8])]),
        _mod(
            "features.1",
            "BatchNorm2d",
            [],
            [("weight", [8]), ("bias", [8])],
            ["running_mean", "running_var", "num_batches_tracked"],
            {"forward": [{"name": "samples.unet.StoreHook.__call__", "id": 4242, "handle": 1}]},
        ),
        _mod("features.2", "ReLU", [], []),
        _mod("classifier", "Linear", [], [("weight", [10, 8]), ("bias", [10])]),
    ],
    "global_hooks": {},
}


def write_sample(path: str | os.PathLike[str] = OUT) -> str:
    """Writes the sample trace to ``path`` (replacing it) and returns the path."""
    path = os.fspath(path)
    if os.path.exists(path):
        os.remove(path)
    w = StoreWriter(path, run_id="sample")  # fixed: the file is the same every time
    w.set_meta(
        {
            "created": "2026-01-01T00:00:00",
            "clock": "perf_counter_ns",
            "target": "reimpl",
            "mirrors": json.dumps(MIRRORS),
        }
    )
    base = 1_000_000_000
    main_roots = [import_spans()] + [main_step(i, 150 + 580 * i) for i in range(3)]
    main_threads = [("MainThread", None), ("replica 0", "sim:0"), ("replica 1", "sim:1")]
    write_part(w, 1000, "main", None, main_threads, main_roots, base)
    for k in range(2):
        write_part(w, 1001 + k, "worker", k, [("MainThread", None)], worker_spans(k), base)
    for r in range(2):
        write_part(w, 2000 + r, "rank", r, [("MainThread", f"cpu:{r}")], rank_spans(r), base)
    w.close()
    return path


DEMO_LANES = Path(__file__).with_name("demo_lanes.tsdb")
NEXT = "reimpl.utils.data.dataloader._BaseDataLoaderIter.__next__"
# Shown in a snapshot's source pane when a step is selected: a function no file
# holds, so the picture never changes with an edit of reimpl or with the checkout's path.
STEP = "demo_lanes.train_step"


def dense_main() -> list[Node]:
    """The demo's main thread: steps whose data.next, forward and backward spans
    are a few microseconds apart, so most labels do not fit their bars."""
    roots = []
    for i in range(3):
        t = 100 + 600 * i
        step = Node("step", f"step {i}", STEP, t, 520)
        step.add(Node("data.next", "__next__", NEXT, t + 2, 6))
        step.add(module("SmallCNN", "SmallCNN", t + 9, 180))
        step.add(Node("module.backward", "SmallCNN", BACKWARD, t + 190, 300))
        step.add(Node("optim.step", "SGD.step", "reimpl.optim.sgd.SGD.step", t + 492, 4))
        step.add(Node("sched.step", "StepLR.step", "reimpl.optim.lr_scheduler.LRScheduler.step",
                      t + 497, 3))  # fmt: skip
        roots.append(step)
    update_bn = Node("swa.update_bn", "update_bn", "reimpl.optim.swa_utils.update_bn", 1900, 90)
    update_bn.add(Node("data.next", "__next__", NEXT, 1901, 5))
    update_bn.add(module("SmallCNN", "SmallCNN", 1910, 70))
    return [*roots, update_bn]


def write_demo_lanes(path: str | os.PathLike[str] = DEMO_LANES) -> str:
    """The demo's lanes with fixed times: a main thread of dense, overlapping labels
    and two DataLoaders (training, then SWA's update_bn) of two workers each, so
    two processes are "worker 0" and two "worker 1" (tests/tui/test_timeline_snapshots.py)."""
    path = os.fspath(path)
    if os.path.exists(path):
        os.remove(path)
    w = StoreWriter(path, run_id="demo-lanes")
    w.set_meta({"created": "2026-01-01T00:00:00", "clock": "perf_counter_ns", "target": "reimpl"})
    base = 1_000_000_000
    write_part(w, 3000, "main", None, [("MainThread", None)], dense_main(), base)
    for loader, pid0 in ((0, 3001), (1, 3003)):
        for k in range(2):
            spans = worker_spans(k) if loader == 0 else worker_spans(k)[:1]
            if loader == 1:  # SWA's loader runs after training
                for node, _ in flatten(spans):
                    node.start += 1750
            write_part(w, pid0 + k, "worker", k, [("MainThread", None)], spans, base)
    w.close()
    return path


WITH_FINDINGS = Path(__file__).with_name("sample_findings.tsdb")


def write_sample_with_findings(path: str | os.PathLike[str] = WITH_FINDINGS) -> str:
    """The sample plus one stored finding whose evidence is the first step and the
    import span: what the Calls view marks (tests/tui/test_snapshots.py)."""
    import sqlite3

    import tracer
    from tracer.file.findings import insert_finding

    path = write_sample(path)
    t = tracer.load(path)
    rows = [  # the outermost of each kind: rows the Calls view shows unopened
        int(min(np.flatnonzero(t.kind == t.code(kind)), key=lambda r: t.depth[r]))
        for kind in ("step", "import")
    ]
    evidence = [{"span": r, "part": int(t.part[r]), "seq": int(t.seq[r])} for r in rows]
    data = json.dumps({"evidence": evidence, "fix": "call optimizer.zero_grad()", "details": {}})
    with sqlite3.connect(path) as conn:
        message = "steps without zero_grad"
        insert_finding(conn, "missing-zero-grad", "warning", message, rows[0], data)
    return path


if __name__ == "__main__":
    print(write_sample(sys.argv[1] if len(sys.argv) > 1 else OUT))
    print(write_sample_with_findings())
    print(write_demo_lanes())
