"""The DeOldify sample: the bug reproduces every time under lockstep; the fix holds."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

from samples import dataparallel_hooks as sample

ROOT = Path(__file__).resolve().parents[2]


def test_buggy_fails_every_time_under_lockstep():
    for _ in range(20):
        with pytest.raises(RuntimeError) as err:
            sample.run("buggy", use_lockstep=True)
        msg = str(err.value)
        assert msg.startswith("Caught RuntimeError in replica 0 on device sim:0.")
        assert msg.rstrip().endswith(
            "Expected all tensors to be on the same device, but found at least two devices, "
            "sim:0 and sim:1!"
        )


def test_print_variant_changes_the_dict_mid_iteration(capsys):
    with pytest.raises(RuntimeError, match="dictionary changed size during iteration"):
        sample.run("print", use_lockstep=True)
    assert "output on sim:1" in capsys.readouterr().out


def matches_one_device(variant: str, lockstep_runs: int) -> list:
    """Runs ``variant`` under lockstep (then once free-running): output and grads as
    the same U-Net on one device, every time; returns the models it ran."""
    torch.manual_seed(0)
    single = sample.UNet(sample.HOOKS[variant])
    x = torch.randn(4, 3, 16, 16)
    ref = single(x)
    ref.square().mean().backward()
    models = []
    for use_lockstep in [True] * lockstep_runs + [False]:
        out, model = sample.run(variant, use_lockstep=use_lockstep)
        torch.testing.assert_close(out, ref)
        for p, q in zip(model.parameters(), single.parameters(), strict=True):
            torch.testing.assert_close(p.grad, q.grad)
        models.append(model)
    return models


def test_fixed_passes_and_matches_one_device():
    matches_one_device("fixed", 20)


def test_walkthrough_print_raises_key_error_on_the_stored_dict_every_time(capsys):
    """thread-id-print: the walkthrough's debugging print on its thread-id fix."""
    for _ in range(20):
        with pytest.raises(KeyError) as err:
            sample.run("thread-id-print", use_lockstep=True)
        msg = str(err.value)
        assert msg.startswith("Caught KeyError in replica")
        key = int(msg.rstrip().rsplit("KeyError: ", 1)[1])  # the other replica's thread id
        assert f"thread {key} stored:" in capsys.readouterr().out  # printed, then gone
        assert key != threading.get_ident()


def test_walkthrough_thread_id_fix_matches_one_device():
    for model in matches_one_device("thread-id", 5):
        assert all(hook.stored == {} for hook in model.hooks)  # each replica took its own


def test_command_line_exits_non_zero_with_the_error():
    proc = subprocess.run(
        [sys.executable, "-m", "samples.dataparallel_hooks", "--variant", "buggy"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    assert "found at least two devices, sim:0 and sim:1!" in proc.stderr
    assert sample.main(["--variant", "fixed", "--no-lockstep"]) == 0
    assert sample.main(["--variant", "thread-id-print"]) == 1


def test_trace_shows_replica_threads_and_the_failing_read(tmp_path):
    import tracer

    path = str(tmp_path / "buggy.tsdb")
    with tracer.record(path), pytest.raises(RuntimeError):
        sample.run("buggy", use_lockstep=True)
    t = tracer.load(path)
    rows = range(t.n)
    replicas = [r for r in rows if t.kind_of(r) == "dp.replica"]
    assert len(replicas) == 2
    for r in replicas:
        assert t.kind_of(int(t.parent[r])) == "dp.parallel_apply"  # linked across threads
        thread = t.threads[int(t.thread[r])]
        i = t.attrs(r)["index"]
        assert (thread.name, thread.device) == (f"replica {i}", f"sim:{i}")
    # The hook ran on both replica threads; the decoder of replica 0 failed.
    hook_threads = {
        t.threads[int(t.thread[r])].name for r in rows if t.kind_of(r) == "hook.forward"
    }
    assert {"replica 0", "replica 1"} <= hook_threads
    failed = [
        r
        for r in rows
        if t.kind_of(r) == "module.forward" and "sim:0 and sim:1" in t.attrs(r).get("error", "")
    ]
    blocks = [r for r in failed if t.attrs(r)["cls"] == "UnetBlock"]
    assert blocks and all(t.threads[int(t.thread[r])].name == "replica 0" for r in blocks)
    # ...and the error reached the DataParallel call on the main thread, wrapped.
    assert any(t.attrs(r)["cls"] == "DataParallel" for r in failed)
