"""The recorder with the native boundary stamp (reimpl/_native) against its Python hooks.

Every test records the same program twice, once per path, and compares the
whole span tree read back from the file (kinds, names, functions, attributes,
parents; not times): the native path must be invisible downstream. Then the
drains: at each flush (even one taken inside a backward pass), at stop, on
fork (a child never re-emits its parent's stamps) and on SIGTERM; and the
fallback when the extension cannot be had.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from unittest import mock

import pytest
import torch

import tracer
from reimpl import _native, _trace
from reimpl import nn as rnn
from samples.train_step import small_cnn
from tracer.recording.recorder import Recorder

STAMPS = _native.load()
needs_native = pytest.mark.skipif(STAMPS is None, reason="native stamp unavailable here")


def span_tree(path: Path) -> list[tuple]:
    """(kind, name, func, attrs, parent's index, lane) per span in start order: no
    times, and no object ids (those differ from run to run)."""
    t = tracer.load(path)
    order = sorted(range(t.n), key=lambda r: (int(t.part[r]), int(t.seq[r])))
    index = {row: i for i, row in enumerate(order)}
    return [
        (
            t.kind_of(r),
            t.name_of(r),
            t.func_of(r),
            {k: v for k, v in (t.attrs(r) or {}).items() if not k.endswith("_id")},  # id(obj)
            index[int(t.parent[r])] if t.parent[r] >= 0 else -1,
            int(t.thread[r]),
        )
        for r in order
    ]


def record(path: Path, program: Callable[[Recorder], None], native: bool) -> list[tuple]:
    """Runs ``program`` under a recorder on one path or the other; the tree it wrote."""
    torch.manual_seed(0)
    if native:
        if STAMPS is None:
            pytest.skip("native stamp unavailable here (the fallback is tested below)")
        rec = Recorder(path, flush_interval=3600).start()
    else:
        with mock.patch.object(_trace, "native_stamps", lambda: None):  # the Python hooks
            rec = Recorder(path, flush_interval=3600).start()
    try:
        assert (rec.stamps is not None) == native
        program(rec)
    finally:
        rec.stop()
    return span_tree(path)


def same_on_both_paths(tmp_path: Path, program: Callable[[Recorder], None]) -> list[tuple]:
    native = record(tmp_path / "native.tsdb", program, native=True)
    python = record(tmp_path / "python.tsdb", program, native=False)
    assert native == python
    assert any(row[0] == "module.backward" for row in native)
    return native


def steps(build: Callable[[], rnn.Module], make_x: Callable[[], torch.Tensor], n: int = 2):
    """A program: ``n`` annotated training steps of a model built inside the recording."""

    def program(rec: Recorder) -> None:
        model = build()
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        for i in range(n):
            with _trace.step(i):
                opt.zero_grad()
                out = model(make_x())
                (out[0] if isinstance(out, tuple) else out).sum().backward()
                opt.step()

    return program


class Shared(rnn.Module):
    """One Linear called twice, and a block reused at two depths."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = rnn.Linear(4, 4)
        self.block = rnn.Sequential(rnn.Linear(4, 4), rnn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(self.lin(self.block(self.lin(x))))


class Split(rnn.Module):
    """Returns two tensors; only the second feeds the loss."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a, b = x.chunk(2, dim=1)
        return a * 2, b * 3


class MultiOut(rnn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = rnn.Linear(4, 4)
        self.split = Split()
        self.head = rnn.Linear(2, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a, b = self.split(self.lin(x))
        return self.head(b), a


class Frozen(rnn.Module):
    """A frozen stem whose output needs no grad, a mask made under no_grad, a head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = rnn.Linear(4, 4).requires_grad_(False)
        self.mask = rnn.ReLU()
        self.head = rnn.Sequential(rnn.Linear(4, 4), rnn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        with torch.no_grad():
            m = self.mask(h)
        return self.head(h) * m


def x4() -> torch.Tensor:
    return torch.randn(3, 4)


def test_demo_cnn(tmp_path: Path) -> None:
    same_on_both_paths(tmp_path, steps(lambda: small_cnn(rnn), lambda: torch.randn(4, 3, 16, 16)))


def test_shared_submodules(tmp_path: Path) -> None:
    tree = same_on_both_paths(tmp_path, steps(Shared, x4))
    assert sum(row[:2] == ("module.backward", "lin") for row in tree) == 4  # 2 calls x 2 steps


def test_multi_output_modules(tmp_path: Path) -> None:
    same_on_both_paths(tmp_path, steps(MultiOut, x4))


def test_outputs_that_need_no_grad(tmp_path: Path) -> None:
    tree = same_on_both_paths(tmp_path, steps(Frozen, x4))
    names = {row[1] for row in tree if row[0] == "module.backward"}
    assert "stem" not in names and "mask" not in names


def test_backward_hooks_nest_inside_native_spans(tmp_path: Path) -> None:
    """Python spans that start inside a backward span (a module's full backward
    hook): ids from one counter keep them nested, as on the Python path."""

    def build() -> rnn.Module:
        m = rnn.Sequential(rnn.Linear(4, 4), rnn.ReLU(), rnn.Linear(4, 1))
        m[2].register_full_backward_hook(lambda mod, gi, go: None)
        return m

    tree = same_on_both_paths(tmp_path, steps(build, x4))
    hook = next(i for i, row in enumerate(tree) if row[0] == "hook.backward")
    assert tree[tree[hook][4]][:2] == ("module.backward", "2")


def test_backward_on_another_thread(tmp_path: Path) -> None:
    def program(rec: Recorder) -> None:
        model = rnn.Sequential(rnn.Linear(4, 4), rnn.ReLU(), rnn.Linear(4, 1))
        loss = model(x4()).sum()
        worker = threading.Thread(target=loss.backward, name="backward-thread")
        worker.start()
        worker.join()

    tree = same_on_both_paths(tmp_path, program)
    lanes = {row[5] for row in tree if row[0] == "module.backward"}
    assert lanes.isdisjoint({row[5] for row in tree if row[0] == "module.forward"})


def test_flushes_inside_backward_keep_the_tree(tmp_path: Path) -> None:
    """A flush while backward spans are open and stamps wait: the records are cut
    where the stamps were, the rest waits for the next flush."""

    def build_and_flush(rec: Recorder) -> rnn.Module:
        m = rnn.Sequential(*[rnn.Sequential(rnn.Linear(4, 4), rnn.ReLU()) for _ in range(3)])
        m[1].register_full_backward_pre_hook(lambda mod, go: (rec.flush(), None)[1])
        return m

    def program(rec: Recorder) -> None:
        steps(lambda: build_and_flush(rec), x4, n=3)(rec)
        rec.flush()

    same_on_both_paths(tmp_path, program)


@needs_native
def test_stamp_clock_is_perf_counter_ns() -> None:
    before = time.perf_counter_ns()
    stamp = STAMPS.clock_ns()  # type: ignore[union-attr]
    after = time.perf_counter_ns()
    assert before <= stamp <= after


@needs_native
def test_each_flush_drains_the_buffers(tmp_path: Path) -> None:
    rec = Recorder(tmp_path / "t.tsdb", flush_interval=3600).start()
    try:
        model = rnn.Sequential(rnn.Linear(4, 4), rnn.ReLU())
        model(x4()).sum().backward()
        assert STAMPS.pending() == 3  # type: ignore[union-attr]  # Sequential, Linear, ReLU
        rec.flush()
        assert STAMPS.pending() == 0  # type: ignore[union-attr]
        assert rec.spans_written == 6  # 3 forward, 3 backward
    finally:
        rec.stop()


@needs_native
def test_stop_drains_and_detached_stamps_record_nothing(tmp_path: Path) -> None:
    rec = Recorder(tmp_path / "t.tsdb", flush_interval=3600).start()
    model = rnn.Sequential(rnn.Linear(4, 4), rnn.ReLU())
    model(x4()).sum().backward()
    loss = model(x4()).sum()
    rec.stop()
    loss.backward()  # its stamps were installed while recording
    assert STAMPS.pending() == 0  # type: ignore[union-attr]
    kinds = [row[0] for row in span_tree(tmp_path / "t.tsdb")]
    assert kinds.count("module.backward") == 3 and kinds.count("module.forward") == 6


@needs_native
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_does_not_reemit_parent_stamps(tmp_path: Path) -> None:
    path = tmp_path / "t.tsdb"
    rec = Recorder(path, flush_interval=3600).start()
    try:
        model = rnn.Sequential(rnn.Linear(4, 4), rnn.ReLU())
        model(x4()).sum().backward()  # stamped, not yet drained
        pid = os.fork()
        if pid == 0:  # the child: one backward of its own, then leave
            code = 0
            try:
                torch.set_num_threads(1)
                rnn.Linear(4, 4)(x4()).sum().backward()
                rec.stop()
            except BaseException:
                code = 1
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert status == 0
    finally:
        rec.stop()
    t = tracer.load(path)
    backward = [r for r in range(t.n) if t.kind_of(r) == "module.backward"]
    by_pid = {
        pid_: sorted(t.name_of(r) for r in backward if t.pid[r] == pid_)
        for pid_ in {int(t.pid[r]) for r in backward}
    }
    assert by_pid == {os.getpid(): ["0", "1", "Sequential"], pid: ["Linear"]}


SIGTERM_SCRIPT = """
import sys, time, torch
from reimpl import nn
model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 1))
for _ in range(3):
    model(torch.randn(2, 4)).sum().backward()
print("ready", flush=True)
time.sleep(60)
"""


@needs_native
def test_sigterm_drains(tmp_path: Path) -> None:
    script = tmp_path / "prog.py"
    script.write_text(textwrap.dedent(SIGTERM_SCRIPT))
    out = tmp_path / "t.tsdb"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tracer.cli", "record", "-o", str(out),
         "--flush-interval", "3600", str(script)],
        stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[3],
    )  # fmt: skip
    try:
        assert proc.stdout.readline().strip() == "ready"  # type: ignore[union-attr]
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    finally:
        proc.kill()
    kinds = [row[0] for row in span_tree(out)]
    assert kinds.count("module.backward") == 4 * 3  # Sequential, Linear, ReLU, Linear; 3 steps


@pytest.fixture
def no_extension(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The extension's import fails (as without a compiler), and nothing is cached."""

    def fail(folder: Path) -> None:
        raise ImportError("simulated: no compiler")

    monkeypatch.delenv("TORCHSCOPE_NATIVE", raising=False)
    monkeypatch.setattr(_native, "_import", fail)
    monkeypatch.setattr(_native, "_loaded", [])
    yield


def test_fallback_when_the_extension_is_absent(
    no_extension: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _native.load() is None
    assert _native.load() is None
    err = capsys.readouterr().err
    assert err.count("native backward stamp unavailable (simulated: no compiler)") == 1
    assert "Python hooks" in err
    native = record(tmp_path / "a.tsdb", steps(Shared, x4), native=False)
    with Recorder(tmp_path / "b.tsdb", flush_interval=3600) as rec:
        assert rec.stamps is None and _trace.stamps is None
        steps(Shared, x4)(rec)
    assert span_tree(tmp_path / "b.tsdb") == native


def test_reimpl_alone_never_loads_the_extension() -> None:
    code = (
        "import sys, torch; from reimpl import nn, _trace\n"
        "nn.Linear(2, 2)(torch.randn(1, 2, requires_grad=True)).sum().backward()\n"
        "assert 'reimpl._native' not in sys.modules, 'loaded'\n"
        "assert 'torch.utils.cpp_extension' not in sys.modules, 'cpp_extension'\n"
        "assert 'tracer' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_dataparallel_replicas(tmp_path: Path) -> None:
    """Replica threads that name themselves (thread markers), forward hooks, devices;
    backward through Broadcast and Gather on the main thread. Lockstep: one order."""
    from samples import dataparallel_hooks

    def program(rec: Recorder) -> None:
        dataparallel_hooks.run("fixed", use_lockstep=True)

    tree = same_on_both_paths(tmp_path, program)
    assert len({row[5] for row in tree}) > 1  # replica lanes


class Fails(rnn.Module):
    """A forward that raises after its first child ran."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = rnn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.lin(x)
        raise ValueError("bad batch")


def test_a_forward_that_raises_closes_its_span_with_the_error(tmp_path: Path) -> None:
    """The native ``Forward`` as ``_record_forward_py``: the span closes with the
    error, the exception goes on unchanged, and recording goes on after it."""

    def program(rec: Recorder) -> None:
        steps(Shared, x4)(rec)
        model = Fails()
        with pytest.raises(ValueError, match=r"^bad batch$") as info:
            model(x4())
        assert info.value.__traceback__ is not None
        steps(Shared, x4, n=1)(rec)

    tree = same_on_both_paths(tmp_path, program)
    failed = [row for row in tree if "error" in row[3]]
    assert [(row[0], row[1], row[3]["error"]) for row in failed] == [
        ("module.forward", "Fails", "ValueError: bad batch")
    ]
    assert failed[0][3]["cls"] == "Fails"
    child = tree.index(failed[0]) + 1
    assert tree[child][:2] == ("module.forward", "lin") and tree[child][4] == tree.index(failed[0])


@needs_native
def test_native_forward_records_leave_the_cyclic_gc(tmp_path: Path) -> None:
    """Records made in C are untracked at once (shared attribute pairs make no
    cycle), so buffered records never grow the GC's generations."""
    import gc

    model = rnn.Sequential(rnn.Linear(4, 4), rnn.ReLU())
    with Recorder(tmp_path / "gc.tsdb", flush_interval=3600) as rec:
        model(x4())
        forward = [r for r in rec._buf if r[5] == "module.forward"]
        assert [r[6] for r in forward] == ["0", "1", "Sequential"]
        assert not any(map(gc.is_tracked, forward))
        assert forward[0][8] == (("cls", "Linear"), ("path", "0"))
        assert forward[0][7] == "reimpl.nn.modules.module.Module._call_impl"
