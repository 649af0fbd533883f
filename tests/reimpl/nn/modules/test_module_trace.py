"""The events reimpl.nn.Module emits when a recorder is attached: module.forward
spans named by path, hook spans, module.backward spans and structure snapshots."""

from __future__ import annotations

import gc
import threading

import pytest
import torch
from sinks import ListSink
from twins import R

from reimpl import _trace
from reimpl.nn.modules import module as rmod

X = torch.randn(5, 3)


def test_forward_spans_are_named_by_path(sink: ListSink) -> None:
    m = R.Net()
    m(X)
    assert sink.names("module.forward") == [
        "Net",
        "first",
        "block",
        "block.lin",
        "block.act",
        "stat",
        "shared",
        "shared",
        "head",
    ]
    for rec in sink.of("module.forward"):
        _sid, link, tid, t0, t1, _kind, name, func, attrs = rec
        assert link == 0 and tid == threading.get_ident() and t0 <= t1
        assert func == "reimpl.nn.modules.module.Module._call_impl"
        assert attrs["path"] == name and attrs["cls"] in {"Net", "Lin", "Block", "Act", "Stat"}
    by_name = {r[6]: r for r in sink.of("module.forward")}
    root, lin = by_name["Net"], by_name["block.lin"]
    assert root[3] <= lin[3] <= lin[4] <= root[4] and root[0] < lin[0]
    # records are appended when spans close: children before their parent
    assert sink.of("module.forward")[-1][6] == "Net"


def test_detached_emits_nothing() -> None:
    s = ListSink()
    m = R.Net()
    m(X).sum().backward()
    _trace.attach(s)
    _trace.detach()
    m(X).sum().backward()
    assert s.records == []


def test_failing_forward_records_the_error(sink: ListSink) -> None:
    with pytest.raises(ValueError):
        R.Failing()(X)
    (rec,) = sink.of("module.forward")
    assert rec[8]["error"] == "ValueError: forward failed" and rec[6] == "Failing"


class Recorder:
    """A hook object whose state lives on the instance (the DeOldify shape)."""

    def __init__(self) -> None:
        self.stored = None

    def __call__(self, module, args, output) -> None:
        self.stored = output

    def pre(self, module, args) -> None:
        return None


def _free_hook(module, grad_input, grad_output) -> None:
    return None


def test_hook_spans(sink: ListSink) -> None:
    m = R.Net()
    rec = Recorder()
    m.block.register_forward_hook(rec)
    m.block.lin.register_forward_pre_hook(rec.pre)
    m.block.register_full_backward_hook(_free_hook)
    m.block.register_full_backward_pre_hook(lambda mod, go: None)
    m(X.clone().requires_grad_()).sum().backward()
    fwd = sink.of("hook.forward")
    assert len(fwd) == 1
    attrs = fwd[0][8]
    call_line = f"{__file__}:{Recorder.__call__.__code__.co_firstlineno}"
    assert attrs == {
        "hook": f"{__name__}.Recorder",
        "hook_id": id(rec),
        "module": "block",
        # what `torchscope check` reads: where the hook is, what it saw, what it rebound
        "source": call_line,
        "output_id": id(rec.stored),
        "rebound": ["stored"],
    }
    assert fwd[0][6] == attrs["hook"] and rec.stored is not None
    (pre,) = sink.of("hook.forward_pre")
    pre_line = f"{__file__}:{Recorder.pre.__code__.co_firstlineno}"
    assert pre[8] == {
        "hook": f"{__name__}.Recorder.pre",
        "hook_id": id(rec),
        "module": "block.lin",
        "source": pre_line,  # it rebinds nothing: no "rebound"
    }
    (bw,) = sink.of("hook.backward")
    assert bw[8]["hook"] == f"{__name__}._free_hook" and bw[8]["module"] == "block"
    (bwp,) = sink.of("hook.backward_pre")
    assert bwp[8]["hook"].endswith("test_hook_spans.<locals>.<lambda>")
    block = next(r for r in sink.of("module.forward") if r[6] == "block")
    hook = fwd[0]
    assert block[3] <= hook[3] <= hook[4] <= block[4]  # the hook runs inside the module's span


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch's own deprecation warning
def test_hook_spans_for_global_and_deprecated_hooks(sink: ListSink) -> None:
    m = R.Act()
    m.register_backward_hook(_free_hook)
    h = rmod.register_module_forward_hook(Recorder())
    try:
        m(X.clone().requires_grad_()).sum().backward()
    finally:
        h.remove()
    assert [r[8]["module"] for r in sink.of("hook.forward")] == ["Act"]
    assert [r[8]["hook"] for r in sink.of("hook.backward")] == [f"{__name__}._free_hook"]


def test_backward_spans(sink: ListSink) -> None:
    m = R.Net()
    m(X.clone().requires_grad_()).sum().backward()
    bw = sink.of("module.backward")
    names = [r[6] for r in sorted(bw)]
    assert sorted(names) == sorted(
        ["Net", "first", "block", "block.lin", "block.act", "stat", "shared", "shared", "head"]
    )
    # autograd walks the model backwards: head first, first last; the root encloses all
    assert names.index("head") < names.index("stat") < names.index("block") < names.index("first")
    by_name = {r[6]: r for r in bw}
    root = by_name["Net"]
    for r in bw:
        assert r[3] <= r[4] and root[3] <= r[3] and r[4] <= root[4]
        assert r[7] == "reimpl.nn.modules.module._stamp"
        assert r[8]["path"] == r[6]
    block, lin = by_name["block"], by_name["block.lin"]
    assert block[3] <= lin[3] <= lin[4] <= block[4]
    assert max(r[0] for r in sink.of("module.forward")) < min(r[0] for r in bw)


def test_backward_spans_twice_and_without_grad(sink: ListSink) -> None:
    m = R.Block(3)
    m(X).sum().backward()
    m(X).sum().backward()
    assert sink.names("module.backward") == ["Block", "act", "lin"] * 2
    sink.records.clear()
    with torch.no_grad():
        m(X)
    assert sink.of("module.backward") == [] and len(sink.of("module.forward")) == 3


def test_backward_spans_can_be_turned_off(sink: ListSink) -> None:
    _trace.backward_spans = False
    try:
        R.Block(3)(X).sum().backward()
    finally:
        _trace.backward_spans = True
    assert sink.of("module.backward") == [] and len(sink.of("module.forward")) == 3


def test_user_tensor_hooks_still_work_with_boundaries(sink: ListSink) -> None:
    m = R.Block(3)
    out = m(X)
    seen = []
    out.register_hook(lambda g: seen.append(g.shape))
    out.sum().backward()
    assert seen == [torch.Size([5, 3])] and sink.of("module.backward")


def test_snapshot_payload(sink: ListSink) -> None:
    m = R.Net()
    rec = Recorder()
    m.block.register_forward_hook(rec, always_call=True)
    m(X)
    (snap,) = sink.snapshots
    kind, key, payload = snap
    assert kind == "module" and key.startswith("Net@")
    assert payload["root"] == "Net" and payload["cls"] == "Net"
    mods = {e["path"]: e for e in payload["modules"]}
    assert list(mods) == [
        "Net",
        "first",
        "block",
        "block.lin",
        "block.act",
        "stat",
        "shared",
        "head",
    ]
    assert mods["Net"]["children"] == ["first", "block", "stat", "shared", "head"]
    assert mods["first"]["parameters"] == [
        {"name": "weight", "shape": [4, 3], "dtype": "torch.float32", "requires_grad": True},
        {"name": "bias", "shape": [4], "dtype": "torch.float32", "requires_grad": True},
    ]
    assert [b["name"] for b in mods["stat"]["buffers"]] == ["running", "scratch", "count"]
    assert [b["persistent"] for b in mods["stat"]["buffers"]] == [True, False, True]
    hook = mods["block"]["hooks"]["forward"][0]
    assert hook["name"] == f"{__name__}.Recorder" and hook["id"] == id(rec)
    assert hook["always_call"] is True and "handle" in hook
    assert "hooks" in mods["first"] and mods["first"]["hooks"] == {}
    import json

    json.dumps(payload)  # JSON-friendly


def test_snapshot_refreshes_only_on_change(sink: ListSink) -> None:
    m = R.Net()
    m(X)
    m(X)
    assert len(sink.snapshots) == 1
    h = m.head.register_forward_pre_hook(Recorder().pre)
    m(X)
    assert len(sink.snapshots) == 2 and sink.snapshots[1][2]["modules"][-1]["hooks"]
    h.remove()
    m(X)
    assert len(sink.snapshots) == 3 and sink.snapshots[2][2] == sink.snapshots[0][2]
    m.block.extra = R.Act()
    m(X)
    assert len(sink.snapshots) == 4
    assert "block.extra" in [e["path"] for e in sink.snapshots[3][2]["modules"]]
    m.double()
    m(X.double())
    assert sink.snapshots[-1][2]["modules"][1]["parameters"][0]["dtype"] == "torch.float64"


def test_paths_follow_structure_changes(sink: ListSink) -> None:
    inner = R.Block(3)
    inner(X)  # called alone first: it is a root, named by its class
    assert sink.names("module.forward") == ["Block", "lin", "act"]
    sink.records.clear()

    class Outer(R.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner(x)

    outer = Outer()
    outer(X)  # now inside Outer
    assert sink.names("module.forward") == ["Outer", "inner", "inner.lin", "inner.act"]
    sink.records.clear()
    del outer.inner
    outer.renamed = inner
    inner(X)
    assert sink.names("module.forward") == ["renamed", "renamed.lin", "renamed.act"]


def test_replicas_share_paths_and_send_no_snapshot(sink: ListSink) -> None:
    m = R.Block(3)
    m(X)
    n = len(sink.snapshots)
    rep = m._replicate_for_data_parallel()
    rep._modules["lin"] = m.lin._replicate_for_data_parallel()
    rep._modules["lin"]._parameters = m.lin._parameters
    sink.records.clear()
    rep(X)
    assert sink.names("module.forward") == ["Block", "lin", "act"]
    assert len(sink.snapshots) == n


def test_dead_module_ids_are_forgotten(sink: ListSink) -> None:
    gc.collect()  # modules of earlier tests held only by reference cycles (a traceback) die now
    for _ in range(3):
        R.Block(3)(X)  # each dies after its call; a reused id must not keep its path
    R.Act()(X)
    assert sink.names("module.forward")[-1] == "Act"
    assert all(e[0] in {"Act", "Block", "lin", "act"} for e in rmod._path_cache.values())


def test_threads_get_their_own_tid(sink: ListSink) -> None:
    m = R.Block(3)
    tids = []

    def worker() -> None:
        m(X)
        tids.append(threading.get_ident())

    th = threading.Thread(target=worker)
    th.start()
    th.join()
    assert {r[2] for r in sink.of("module.forward")} == {tids[0]}


def test_replicas_in_threads_share_one_hook_object(sink: ListSink) -> None:
    """The DeOldify shape: replicas share the hook dict, so one hook object is
    called from every replica thread, and the trace shows it by hook_id."""
    m = R.Block(3)
    rec = Recorder()
    m.lin.register_forward_hook(rec)
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def replica_run() -> None:
        rep = m._replicate_for_data_parallel()
        lin = m.lin._replicate_for_data_parallel()
        lin._parameters = m.lin._parameters  # torch's replicate sets tensors; enough here
        rep._modules["lin"] = lin
        try:
            barrier.wait()
            for _ in range(10):
                rep(X)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=replica_run) for _ in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    hooks = sink.of("hook.forward")
    assert len(hooks) == 20 and {r[8]["hook_id"] for r in hooks} == {id(rec)}
    assert len({r[2] for r in hooks}) == 2  # called from both replica threads
    assert {r[6] for r in sink.of("module.forward")} == {"Block", "lin", "act"}


def test_identity_and_inplace_modules_get_no_backward_span(sink: ListSink) -> None:
    class Ident(R.nn.Module):
        def forward(self, x):
            return x

    class InplaceRelu(R.nn.Module):
        def forward(self, x):
            return torch.relu_(x)

    class Net(R.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = R.Lin(3, 3)
            self.ident = Ident()
            self.relu = InplaceRelu()

        def forward(self, x):
            return self.relu(self.ident(self.lin(x)))

    m = Net()
    x = X.clone().requires_grad_()
    m(x).sum().backward()
    ref = R.Lin(3, 3)
    ref.load_state_dict(m.lin.state_dict())
    torch.relu(ref(X)).sum().backward()
    assert torch.allclose(m.lin.weight.grad, ref.weight.grad)  # tracing changed no gradient
    names = sink.names("module.backward")
    assert sorted(n for n in names if n != "Lin") == ["Net", "lin"]  # "Lin" is ref, a root


class _RawSink(ListSink):
    """Keeps records exactly as emitted (ListSink turns pair-tuple attrs into dicts)."""

    def append(self, record: tuple) -> None:
        self.records.append(record)


def test_module_span_records_leave_the_cyclic_gc() -> None:
    """Buffered module records must become untracked, or full collections follow."""
    import gc

    raw = _RawSink()
    net = R.Net()
    _trace.attach(raw)
    try:
        net(X.clone().requires_grad_()).sum().backward()  # builds the shared attrs
        gc.collect()
        gc.collect()  # the shared attrs tuples are untracked from here on
        raw.records.clear()
        net(X.clone().requires_grad_()).sum().backward()
    finally:
        _trace.detach()
    gc.collect()  # one pass untracks every record holding only them and atomic values
    records = raw.of("module.forward") + raw.of("module.backward")
    assert len(records) > 10
    assert all(type(r[8]) is tuple and dict(r[8])["path"] == r[6] for r in records)
    assert not [r for r in records if gc.is_tracked(r)]
