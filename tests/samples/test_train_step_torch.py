"""The default demo on reimpl and its torch twin under ``--target torch`` tell one story.

samples/train_step.py ``--backend torch`` is the same program on ``torch.nn``,
``torch.optim`` and ``torch.utils.data``; recorded with ``--target torch`` it
must give, step by step, the same module, hook, optimizer, scheduler and
DataLoader spans as the reimpl demo (kind, name, attributes, count), with DataLoader
worker lanes; only what torch runs inside its kernels (``optim.group``,
``optim.update``) is absent.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from torchscope_cli import torchscope

import tracer

DEMO = Path(__file__).parents[2] / "samples" / "train_step.py"
BUGS = Path(__file__).parents[2] / "samples" / "bugs"
NOT_SEEN = {"optim.group", "optim.update"}  # inside torch's foreach kernels
ASIDE = {"import", "numba.compile"}
VOLATILE = {"wait_ns", "id", "param_names", "hook_id", "source", "output_id"}
"""Times, addresses and file paths: the rest of each span's attributes must agree."""


def record(tmp_path: Path, target: str) -> tracer.Trace:
    out = str(tmp_path / f"{target}.tsdb")
    args = ["--backend", "torch"] if target == "torch" else []
    result = torchscope(
        "record", "--no-imports", "--target", target, "-o", out, str(DEMO),
        "--steps", "2", "--swa-steps", "1", *args,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return tracer.load(out)


def _stable(trace: tracer.Trace, row: int) -> str:
    attrs = {k: v for k, v in trace.attrs(row).items() if k not in VOLATILE}
    return json.dumps(attrs, sort_keys=True)


def per_step(trace: tracer.Trace) -> tuple[Counter, Counter]:
    """Main process: (step index or None, kind, name, attributes) counts; workers:
    (kind, name, attributes)."""
    workers = {p.part for p in trace.processes if p.role == "worker"}
    main, in_workers = Counter(), Counter()
    for row in range(len(trace.kind)):
        kind = trace.kind_of(row)
        if kind in ASIDE:
            continue
        if int(trace.part[row]) in workers:
            in_workers[(kind, trace.name_of(row), _stable(trace, row))] += 1
            continue
        step, up = None, int(trace.parent[row])
        while up >= 0:
            if trace.kind_of(up) == "step":
                step = trace.attrs(up)["index"]
            up = int(trace.parent[up])
        main[(step, kind, trace.name_of(row), _stable(trace, row))] += 1
    return main, in_workers


@pytest.mark.slow
@pytest.mark.multiprocess
def test_the_torch_twin_gives_the_demo_s_spans_step_by_step(tmp_path):
    reimpl, torch_ = record(tmp_path, "reimpl"), record(tmp_path, "torch")
    assert torch_.meta["target"] == "torch" and reimpl.meta["target"] == "reimpl"
    r_main, r_workers = per_step(reimpl)
    t_main, t_workers = per_step(torch_)
    expected = Counter({k: n for k, n in r_main.items() if k[1] not in NOT_SEEN})
    assert t_main == expected
    assert t_workers == r_workers
    kinds = {kind for _, kind, _, _ in t_main}
    assert {"module.forward", "module.backward", "optim.step", "sched.step", "data.next"} <= kinds
    assert {("data.worker", "task"), ("data.worker", "init"), ("data.fetch", "map")} <= {
        key[:2] for key in t_workers
    }
    # the workers have lanes of their own, named as reimpl's
    lanes = sorted(t.label for t in torch_.threads if t.label.startswith("worker"))
    assert lanes == sorted(t.label for t in reimpl.threads if t.label.startswith("worker"))
    assert lanes


@pytest.mark.slow
@pytest.mark.parametrize("bug", ["missing_zero_grad", "deprecated_backward_hook"])
def test_check_names_the_bug_of_a_torch_program(tmp_path, bug):
    out = str(tmp_path / "bug.tsdb")
    result = torchscope(
        "record", "--check", "--no-imports", "--target", "torch", "-o", out,
        str(BUGS / f"{bug}.py"), "--backend", "torch",
    )  # fmt: skip
    rule = bug.replace("_", "-")
    assert f"[{rule}]" in result.stderr, result.stderr
    assert {f["detector"] for f in tracer.load(out).findings} == {rule}
