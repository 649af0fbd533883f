"""Synthesized traces for the graphs whose real samples do not exist yet.

Each function records a small trace through the real recorder and
``reimpl._trace`` spans of the kinds in DESIGN.md, so the graph builders,
the gallery and the tests see exactly what instrumented code would emit.
Everything made here is labelled ``synthesized`` in the trace's metadata
(and the gallery says so under each picture).
"""

from __future__ import annotations

import multiprocessing
import os
import random
import threading
import time
from typing import Any

import torch

from reimpl import _trace
from tracer.recording.recorder import Recorder

SIM_ERROR = (
    "Expected all tensors to be on the same device, but found at least two devices, "
    "sim:0 and sim:1!"
)


def _fresh(path: str) -> None:
    if os.path.exists(path):
        os.remove(path)


def _busy(ns: int) -> None:
    """Spends ``ns`` of wall time (sleep is too coarse for microseconds)."""
    end = time.perf_counter_ns() + ns
    while time.perf_counter_ns() < end:
        pass


class StoreOutput:
    """The DeOldify hook: keeps a layer's output in the hook object itself."""

    def __init__(self) -> None:
        self.stored: Any = None

    def hook(self, module: Any, inputs: Any, output: Any) -> None:
        self.stored = output


def _replica(model: Any, x: Any, i: int, link: int, fail: bool, out: list) -> None:
    """One replica thread: the module's forward on device ``sim:i``, linked to its launcher."""
    _trace.set_thread_info(f"replica {i}", f"sim:{i}")
    try:
        with _trace.span("dp.replica", f"replica {i}", link=link, device=f"sim:{i}", index=i):
            out[i] = model(x)
            if fail:
                raise RuntimeError(SIM_ERROR)
    except RuntimeError as exc:
        out[i] = exc


def _dp_forward(model: Any, x: Any, devices: int, fail: bool) -> None:
    """``DataParallel.forward`` in the words of its spans: scatter, replicate, apply, gather."""
    with _trace.span("module.forward", "DataParallel"):
        chunks = list(x.chunk(devices))
        with _trace.span(
            "dp.scatter",
            "scatter",
            input_shape=list(x.shape),
            shapes=[list(c.shape) for c in chunks],
            devices=[f"sim:{d}" for d in range(devices)],
        ):
            _busy(20_000)
        with _trace.span("dp.replicate", "replicate", devices=devices):
            params = sum(p.numel() for p in model.parameters())
            with _trace.span("dp.broadcast", "broadcast", bytes=4 * params, tensors=4):
                _busy(30_000)
        outputs: list[Any] = [None] * devices
        with _trace.span("dp.parallel_apply", "parallel_apply", replicas=devices) as pa:
            threads = [
                threading.Thread(
                    target=_replica,
                    args=(model, chunks[i], i, pa.id, fail and i == devices - 1, outputs),
                )
                for i in range(devices)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        for out in outputs:  # parallel_apply re-raises a replica's error: no gather
            if isinstance(out, Exception):
                raise out
        with _trace.span(
            "dp.gather",
            "gather",
            target_device="sim:0",
            shapes=[list(o.shape) for o in outputs],
            output_shape=[x.shape[0], outputs[0].shape[1]],
        ):
            _busy(15_000)


def record_dataparallel(path: str, *, devices: int = 2, steps: int = 2, bug: bool = True) -> str:
    """DataParallel over simulated devices: real reimpl modules and a shared hook.

    The replica threads run the same module (as shallow replicas do) with one
    ``StoreOutput`` hook object; with ``bug`` the last replica of the last
    step fails with the cross-device error, as in the DeOldify case.
    """
    from reimpl import nn

    _fresh(path)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 4))
    store = StoreOutput()
    model[0].register_forward_hook(store.hook)
    with Recorder(path, meta={"target": "reimpl", "synthesized": "dataparallel"}):
        _trace.set_thread_info("main", "sim:0")
        for step in range(steps):
            try:
                with _trace.step(step):
                    _dp_forward(
                        model, torch.randn(4 * devices, 6), devices, bug and step == steps - 1
                    )
            except RuntimeError:
                break  # the replica's error ends training, as it would in the real case
    return path


def _rank_main(rank: int, world: int, steps: int, layers: list[str], barrier: Any) -> None:
    """One synthesized rank: BatchNorm layers whose statistics meet in collectives."""
    _trace.set_process_role("rank", rank)
    _trace.set_thread_info(f"rank {rank}", "cpu")
    slow = 1 + rank  # later ranks compute longer, so earlier ranks wait for them

    def collective(op: str, nbytes: int) -> None:
        with _trace.span(
            f"collective.{op}", op, bytes=nbytes, world_size=world, backend="gloo"
        ) as sp:
            t0 = time.perf_counter_ns()
            barrier.wait()
            sp.set(wait_ns=time.perf_counter_ns() - t0)

    for step in range(steps):
        with _trace.step(step):
            with _trace.span("module.forward", "Net"):
                for layer in layers:
                    with _trace.span("module.forward", layer, cls="SyncBatchNorm"):
                        with _trace.span("bn.stats", "stats"):
                            _busy(300_000 * slow)
                        collective("all_gather", 8 * 2 * 16)
                        with _trace.span("bn.gather_stats", "gather_stats"):
                            _busy(20_000)
                        with _trace.span("bn.elemt", "elemt"):
                            _busy(50_000)
            with _trace.span("autograd.backward", "backward"):
                for layer in reversed(layers):
                    with _trace.span("module.backward", layer, cls="SyncBatchNorm"):
                        with _trace.span("bn.backward_reduce", "backward_reduce"):
                            _busy(200_000 * slow)
                        collective("all_reduce", 8 * 2 * 16)
                        with _trace.span("bn.backward_elemt", "backward_elemt"):
                            _busy(40_000)


def record_syncbn(
    path: str, *, world_size: int = 2, steps: int = 2, layers: tuple[str, ...] = ("bn1", "bn2")
) -> str:
    """SyncBatchNorm on ``world_size`` forked ranks, each writing its own part."""
    _fresh(path)
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(world_size)
    with Recorder(path, meta={"target": "reimpl", "synthesized": "syncbn"}) as rec:
        _trace.set_thread_info("launcher", None)
        with _trace.span("step", "spawn ranks", ranks=world_size):
            pids = []
            for rank in range(world_size):
                pid = os.fork()
                if pid == 0:  # the child: record this rank, close its part, leave
                    code = 0
                    try:
                        _rank_main(rank, world_size, steps, list(layers), barrier)
                    except BaseException:
                        code = 1
                    finally:
                        rec.stop()
                        os._exit(code)
                pids.append(pid)
            for pid in pids:
                os.waitpid(pid, 0)
    return path


def emit_tree(sink: Any, node: tuple, t0: int, *, tid: int, kind: str, func: str = "synth") -> int:
    """Appends a nested span tree with given durations; returns its end time.

    ``node`` is ``(name, self_ns, children, attrs)``. Ids are taken in start
    order and records appended in close order, exactly as live spans would.
    """
    name, own, children, attrs = node
    sid = sink.next_id()
    t = t0 + own // 2
    for child in children:
        t = emit_tree(sink, child, t, tid=tid, kind=kind, func=func)
    end = t + own - own // 2
    sink.append((sid, 0, tid, t0, end, kind, name, func, attrs))
    return end


def import_tree(seed: int = 0, modules: int = 150) -> tuple:
    """A plausible ``import torch``: packages importing submodules, a few heavy leaves."""
    rng = random.Random(seed)
    heavy = {"torch._C": 180_000_000, "numpy.core._multiarray_umath": 25_000_000}
    names = ["torch._C", "numpy", "numpy.core", "numpy.core._multiarray_umath", "typing_extensions"]
    names += [f"torch.{p}" for p in ("nn", "optim", "utils", "autograd", "fx", "_dynamo", "cuda")]
    names += [f"torch.nn.{m}" for m in ("modules", "functional", "parameter", "init")]
    while len(names) < modules - 1:  # the root, torch, is not in names
        base = rng.choice(names)
        names.append(f"{base}.m{len(names)}")

    def node(name: str) -> tuple:
        kids = sorted(n for n in names if "." in n and n.rsplit(".", 1)[0] == name)
        own = heavy.get(name, rng.randint(50_000, 3_000_000))
        return (name, own, [node(k) for k in kids], {"file": name.replace(".", "/") + ".py"})

    root = node("torch")
    others = [node(n) for n in sorted({n.split(".")[0] for n in names}) if n != "torch"]
    return (root[0], 2_000_000, others + root[2], root[3])  # torch imports numpy first


def record_imports(path: str, *, modules: int = 150, seed: int = 0) -> str:
    """A synthesized ``import torch`` trace (``import`` spans, one per module)."""
    _fresh(path)
    with Recorder(path, meta={"target": "reimpl", "synthesized": "imports"}):
        sink = _trace.sink
        emit_tree(
            sink,
            import_tree(seed, modules),
            time.perf_counter_ns(),
            tid=threading.get_ident(),
            kind="import",
            func="importlib._bootstrap._find_and_load",
        )
    return path
