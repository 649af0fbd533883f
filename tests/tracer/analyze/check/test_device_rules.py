"""cross-device and mutation-during-iteration, on the DeOldify sample's variants."""

from __future__ import annotations

import threading

import tracer
from reimpl import _trace
from samples import dataparallel_hooks
from tracer.analyze.check import run_rules
from tracer.recording.recorder import Recorder


def _record(path: str, variant: str) -> None:
    with tracer.record(path):
        try:
            dataparallel_hooks.run(variant, use_lockstep=True)
        except RuntimeError:
            pass


def test_cross_device_names_the_consumer_and_the_hook_that_kept_the_tensor(tmp_path):
    path = str(tmp_path / "buggy.tsdb")
    _record(path, "buggy")
    t = tracer.load(path)
    (finding,) = run_rules(t, ["cross-device"])
    consumer, mismatch, producer = finding.evidence
    assert t.kind_of(consumer) == "module.forward" and t.name_of(consumer) in ("up1", "up2")
    assert t.kind_of(mismatch) == "device.mismatch" and t.name_of(mismatch) == "cat"
    assert t.kind_of(producer) == "hook.forward"
    here = t.threads[int(t.thread[mismatch])].device
    there = t.threads[int(t.thread[producer])].device
    assert {here, there} == {"sim:0", "sim:1"}
    assert finding.details["producer"] == "samples.dataparallel_hooks.Hook.hook_fn"
    assert "Expected all tensors to be on the same device" in t.attrs(consumer).get("error", "")


def test_the_print_variant_is_a_mutation_during_iteration(tmp_path):
    path = str(tmp_path / "print.tsdb")
    _record(path, "print")
    t = tracer.load(path)
    (finding,) = run_rules(t, ["mutation-during-iteration"])
    failing, *others = finding.evidence
    assert finding.severity == "error" and finding.details["containers"] == ["seen"]
    assert "dictionary changed size during iteration" in t.attrs(failing)["error"]
    assert others and all(t.thread[o] != t.thread[failing] for o in others)
    assert run_rules(t, ["cross-device"]) == []  # it failed before any replica read


def test_concurrent_resizes_without_an_error_are_a_warning(tmp_path):
    """Two replica threads inside one hook object's call at once, both growing
    its dict, with no iteration colliding: the race is named before it bites."""
    path = str(tmp_path / "t.tsdb")
    rec = Recorder(path, flush_interval=3600).start()
    inside = threading.Barrier(2)
    state = {"hook": "Seen.__call__", "hook_id": 77, "module": "enc", "resized": ["seen"]}
    with _trace.span("dp.parallel_apply", "parallel_apply") as apply:

        def replica(k: int) -> None:
            _trace.set_thread_info(f"replica {k}", f"sim:{k}")
            with _trace.span("dp.replica", f"replica {k}", link=apply.id):
                with _trace.span("hook.forward", "Seen.__call__", **state):
                    inside.wait()  # both calls are open at the same moment

        threads = [threading.Thread(target=replica, args=(k,)) for k in range(2)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    rec.stop()
    (finding,) = run_rules(tracer.load(path), ["mutation-during-iteration"])
    assert finding.severity == "warning" and len(finding.evidence) == 2


def test_the_fixed_variant_has_neither(tmp_path):
    path = str(tmp_path / "fixed.tsdb")
    _record(path, "fixed")
    assert run_rules(tracer.load(path), ["cross-device", "mutation-during-iteration"]) == []
