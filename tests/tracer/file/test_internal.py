"""torchscope's own machinery (lockstep's hooks) is recorded as internal and hidden
from every view by default; TORCHSCOPE_SHOW_INTERNAL=1 (or show_internal=True)
shows it."""

from __future__ import annotations

import numpy as np
import pytest

import tracer
from samples import dataparallel_hooks
from tracer import graphs
from tracer.analyze.summary import summarize

LOCKSTEP = "reimpl.nn.parallel._lockstep."


@pytest.fixture(scope="module")
def path(tmp_path_factory) -> str:
    out = str(tmp_path_factory.mktemp("internal") / "dp.tsdb")
    with tracer.record(out):
        dataparallel_hooks.run("fixed", use_lockstep=True)
    return out


def _hook_names(t: tracer.Trace) -> set[str]:
    kinds = [c for c in (t.code("hook.forward_pre"), t.code("hook.forward")) if c >= 0]
    return {t.name_of(r) for r in np.flatnonzero(np.isin(t.kind, kinds))}


def test_lockstep_hooks_are_hidden_and_the_users_hook_stays(path, monkeypatch):
    monkeypatch.delenv("TORCHSCOPE_SHOW_INTERNAL", raising=False)
    t = tracer.load(path)
    names = _hook_names(t)
    assert "samples.dataparallel_hooks.Hook.hook_fn" in names
    assert not any(n.startswith(LOCKSTEP) for n in names)
    counts = {k["kind"]: k["count"] for k in summarize(t)["kinds"]}
    shown = tracer.load(path, show_internal=True)
    all_counts = {k["kind"]: k["count"] for k in summarize(shown)["kinds"]}
    assert all_counts["hook.forward"] > counts["hook.forward"]
    assert shown.n - t.n == sum(1 for r in range(shown.n) if shown.name_of(r).startswith(LOCKSTEP))
    dp = graphs.build(t, "dataparallel")
    assert not any(LOCKSTEP in str(node) for node in dp.nodes)
    assert (t.self_ns >= 0).all()


def test_the_switch_shows_them(path, monkeypatch):
    monkeypatch.setenv("TORCHSCOPE_SHOW_INTERNAL", "1")
    names = _hook_names(tracer.load(path))
    assert {LOCKSTEP + "_on_forward_pre", LOCKSTEP + "_on_forward"} <= names
    assert "samples.dataparallel_hooks.Hook.hook_fn" in names
