"""The benchmarks' own machinery: what they time must be what their tables say."""

from __future__ import annotations

import math

import pytest
import torch

from benchmarks import bench_module
from reimpl import _trace
from reimpl import nn as rnn


def test_hook_floor_fires_one_stamped_hook_per_layer_in_backward_order() -> None:
    torch.manual_seed(0)
    model = rnn.Sequential(rnn.Linear(4, 4), rnn.BatchNorm1d(4), rnn.ReLU(), rnn.Linear(4, 2))
    stamps: list[tuple[int, int]] = []
    step = bench_module.make_hook_floor_step(model, torch.randn(3, 4), stamps)
    assert step is not None
    before = model[0].weight.detach().clone()
    step()
    assert [i for i, _ in stamps] == [3, 2, 1, 0]  # autograd walks the layers backwards
    assert [t for _, t in stamps] == sorted(t for _, t in stamps)
    assert not torch.equal(before, model[0].weight)  # a real step: SGD moved the weights
    step()
    assert len(stamps) == 4  # each step starts a fresh list


def test_hook_floor_only_for_flat_models() -> None:
    nested = rnn.Sequential(rnn.Sequential(rnn.Linear(4, 4)), rnn.ReLU())
    assert bench_module.make_hook_floor_step(nested, torch.randn(3, 4)) is None


def test_measure_times_every_config_and_leaves_tracing_detached() -> None:
    def build(nn):
        return nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 8))

    best = bench_module.measure(build, lambda: torch.randn(4, 8), rounds=1, n=1)
    expected = {"torch", "reimpl", "traced", "traced_fwd", "hook_floor", "viztracer"}
    assert expected | {"torch.profiler"} == set(best)
    assert all(math.isfinite(v) and v > 0 for v in best.values())
    assert _trace.sink is None


def test_bench_query_wraps_each_parallel_apply_in_a_step_and_both_engines_agree(tmp_path) -> None:
    import numpy as np

    import tracer
    from benchmarks import bench_query

    path = str(tmp_path / "q.tsdb")
    bench_query.make_trace(path, n=2_000)
    trace = tracer.load(path)
    applies = np.flatnonzero(trace.kind == trace.code("dp.parallel_apply"))
    steps = np.flatnonzero(trace.kind == trace.code("step"))
    assert len(applies) == len(steps) > 1
    assert sorted(trace.parent[applies].tolist()) == sorted(steps.tolist())
    measured = bench_query.measure(path)  # asserts that DuckDB and SQLite give one answer
    assert measured["spans"] == trace.n and measured["hook_rows"] == 16  # 8 hooks x 2 threads


def test_module_call_rows_time_the_native_record_and_the_python_one(tmp_path) -> None:
    """bench_tracer's two module-call rows: one record per call, made by the native
    ``Forward`` in the first and by ``_record_forward_py`` in the second."""
    from unittest import mock

    from benchmarks import bench_tracer
    from reimpl.nn.modules import module as module_mod
    from tracer.recording.recorder import Recorder

    with Recorder(tmp_path / "m.tsdb", flush_interval=3600) as rec:
        if rec.stamps is None:
            pytest.skip("no native stamp here")
        native = module_mod._record_forward
        assert native is not module_mod._record_forward_py
        bench_tracer.module_calls(3)
        with mock.patch.object(
            module_mod, "_record_forward_py", wraps=module_mod._record_forward_py
        ) as py:
            bench_tracer.python_module_calls(2)
        assert py.call_count == 2
        assert module_mod._record_forward is native
        forward = [r for r in rec._buf if r[5] == "module.forward"]
        assert [r[6] for r in forward] == ["Empty"] * 5
