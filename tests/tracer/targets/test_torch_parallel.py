"""torch.nn.DataParallel under the torch target: dp.* spans and named replica threads.

torch's own DataParallel needs CUDA (its parallel_apply asks for an
accelerator); on a CPU-only machine these are skipped, and ``--sim-devices``
(tests/tracer/targets/test_sim_devices*.py) covers DataParallel on simulated
devices.
"""

from __future__ import annotations

import threading

import pytest
import torch

import tracer
from tracer.targets.torch import parallel

ONE_GPU = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
TWO_GPUS = pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA devices")


def _rows(trace, kind):
    return [r for r in range(len(trace.kind)) if trace.kind_of(r) == kind]


def _assert_two_named_replicas(trace, device: str) -> None:
    """Two ``dp.replica`` spans, each on a thread named after it serving ``device``,
    linked to the ``dp.parallel_apply`` span, with its replica's forward inside."""
    (outer,) = _rows(trace, "dp.parallel_apply")
    replicas = _rows(trace, "dp.replica")
    assert sorted(trace.name_of(r) for r in replicas) == ["replica 0", "replica 1"]
    for r in replicas:
        thread = trace.threads[int(trace.thread[r])]
        assert (thread.name, thread.device) == (trace.name_of(r), device)
        assert trace.parent[r] == outer  # linked across threads
        (forward,) = [c for c in trace.children(r) if trace.kind_of(c) == "module.forward"]
        assert trace.thread[forward] == trace.thread[r]


@pytest.mark.gpu
@ONE_GPU
def test_parallel_apply_names_each_replica_thread(trace_path):
    modules = [torch.nn.Linear(4, 2).cuda(0) for _ in range(2)]
    inputs = [(torch.randn(3, 4, device="cuda:0"),) for _ in range(2)]
    with tracer.record(trace_path, target="torch"):
        torch.nn.parallel.parallel_apply(modules, inputs, None, [0, 0])
    _assert_two_named_replicas(tracer.load(trace_path), "cuda:0")


@pytest.mark.gpu
@TWO_GPUS
def test_data_parallel_records_its_four_steps(trace_path):
    model = torch.nn.DataParallel(torch.nn.Sequential(torch.nn.Linear(4, 4)).cuda(0), [0, 1])
    with tracer.record(trace_path, target="torch"):
        model(torch.randn(8, 4, device="cuda:0")).sum().backward()
    trace = tracer.load(trace_path)
    kinds = [
        trace.kind_of(r) for r in sorted(range(len(trace.kind)), key=trace.start_ns.__getitem__)
    ]
    steps = [
        k for k in kinds if k in ("dp.scatter", "dp.replicate", "dp.parallel_apply", "dp.gather")
    ]
    assert steps == ["dp.scatter", "dp.replicate", "dp.parallel_apply", "dp.gather"]
    devices = {trace.threads[int(trace.thread[r])].device for r in _rows(trace, "dp.replica")}
    assert devices == {"cuda:0", "cuda:1"}


def _threaded_apply(modules, inputs, kwargs_tup=None, devices=None):
    """What torch's parallel_apply does on a CPU, minus its accelerator: one
    anonymous thread per replica calling ``module(*input)``."""
    results = [None] * len(modules)

    def work(i):
        results[i] = modules[i](*inputs[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(modules))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_the_wrapper_names_replica_threads_and_links_them(trace_path):
    """parallel.py's wrapper around a CPU stand-in for torch's threads."""
    apply = parallel._traced_parallel_apply(_threaded_apply)
    modules = [torch.nn.Linear(4, 2) for _ in range(2)]
    with tracer.record(trace_path, target="torch"):
        apply(modules, [(torch.randn(3, 4),) for _ in range(2)], None, ["cpu", "cpu"])
    _assert_two_named_replicas(tracer.load(trace_path), "cpu")
