"""Module, hook, optimizer and scheduler spans of the torch target match reimpl's.

The same hooked model and training loop is built from ``reimpl`` and from
``torch`` (samples/train_step.py's ``backend_namespace``) and recorded with
each target; the spans must agree in kind, name, nesting and attributes
(hook identities and sources aside, which differ by construction).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import tracer
from samples.train_step import backend_namespace
from tracer.targets.torch.attach import attach

VOLATILE = {"hook_id", "source", "output_id", "id", "param_names"}


class Store:
    """Keeps the last output it saw (the DeOldify hook object)."""

    def __init__(self) -> None:
        self.stored = None

    def hook(self, module, args, output) -> None:
        self.stored = output


def scale_input(module, args):
    return (args[0] * 1.0,)


def log_grad(module, grad_input, grad_output) -> None:
    assert grad_output[0] is not None


def no_init(module) -> None:
    """What ``model.apply(init_fn)`` gets; leaves the weights alone."""


def train(backend: str, steps: int = 2) -> None:
    """Two steps of a hooked model, as a user writes them on either backend."""
    ns = backend_namespace(backend)
    torch.manual_seed(0)
    model = ns.nn.Sequential(
        ns.nn.Linear(4, 8), ns.nn.BatchNorm1d(8), ns.nn.ReLU(), ns.nn.Linear(8, 2)
    )
    model.apply(no_init).float()  # cold paths: module.apply, module.apply_fn
    model.load_state_dict(model.state_dict())  # module.state_dict, module.load_state_dict
    model[1].register_forward_hook(Store().hook)
    model[0].register_forward_pre_hook(scale_input)
    model[3].register_full_backward_hook(log_grad)
    optimizer = ns.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scheduler = ns.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    optimizer.load_state_dict(optimizer.state_dict())  # optim.state_dict spans
    for _ in range(steps):
        optimizer.zero_grad()
        model(torch.randn(5, 4)).sum().backward()
        optimizer.step()
        scheduler.step()


def spans(path: str) -> list[tuple]:
    """(depth, kind, name, stable attributes) in start order."""
    trace = tracer.load(path)
    rows = sorted(range(len(trace.kind)), key=lambda r: (trace.start_ns[r], trace.depth[r]))
    out = []
    for r in rows:
        kind = trace.kind_of(r)
        if kind in ("optim.group", "optim.update"):  # inside torch's kernels: not seen
            continue
        attrs = {k: v for k, v in trace.attrs(r).items() if k not in VOLATILE}
        out.append((int(trace.depth[r]), kind, trace.name_of(r), attrs))
    return out


def test_the_torch_target_records_what_reimpl_records(tmp_path):
    paths = {}
    for backend in ("reimpl", "torch"):
        paths[backend] = str(tmp_path / f"{backend}.tsdb")
        with tracer.record(paths[backend], target=backend):
            train(backend)
    reimpl_spans, torch_spans = spans(paths["reimpl"]), spans(paths["torch"])
    assert torch_spans == reimpl_spans
    kinds = {s[1] for s in torch_spans}
    assert {"hook.forward", "hook.forward_pre", "hook.backward", "module.backward"} <= kinds
    stored = [s for s in torch_spans if s[1] == "hook.forward"]
    assert stored[0][3] == {
        "hook": f"{__name__}.Store.hook",
        "module": "1",
        "rebound": ["stored"],
    }


def test_the_global_hooks_seam_records_the_same(tmp_path):
    """``attach(forward="hooks")``: the spans through torch's global forward hooks."""
    paths = {"reimpl": str(tmp_path / "reimpl.tsdb"), "hooks": str(tmp_path / "hooks.tsdb")}
    with tracer.record(paths["reimpl"]):
        train("reimpl")
    with tracer.record(paths["hooks"]):  # the recorder alone, then torch's global hooks
        detach = attach(forward="hooks")
        try:
            train("torch")
        finally:
            detach()
    assert spans(paths["hooks"]) == spans(paths["reimpl"])


def backward_hooks(backend: str) -> None:
    """A backward pre-hook, and a full backward hook on a module whose input needs no grad."""
    ns = backend_namespace(backend)
    torch.manual_seed(0)
    model = ns.nn.Sequential(ns.nn.Linear(4, 8), ns.nn.ReLU(), ns.nn.Linear(8, 2))
    model[2].register_full_backward_pre_hook(check_grad_output)
    model[0].register_full_backward_hook(log_grad)
    with pytest.warns(UserWarning, match="no inputs require gradients"):  # torch's, and ours
        model(torch.randn(5, 4)).sum().backward()


def check_grad_output(module, grad_output) -> None:
    assert grad_output[0] is not None


def test_backward_hook_spans_nest_in_their_module_s_backward_span(tmp_path):
    paths = {b: str(tmp_path / f"{b}.tsdb") for b in ("reimpl", "torch")}
    for backend, path in paths.items():
        with tracer.record(path, target=backend):
            backward_hooks(backend)
    torch_spans = spans(paths["torch"])
    assert torch_spans == spans(paths["reimpl"])
    nested = [(depth, kind, name) for depth, kind, name, _ in torch_spans if depth == 2]
    assert nested == [
        (2, "hook.backward_pre", f"{__name__}.check_grad_output"),
        (2, "hook.backward", f"{__name__}.log_grad"),
    ]


BACKWARD_PROGRAM = """
import torch
from reimpl import _trace
print("native stamp:", _trace.stamps is not None)
model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
for _ in range(2):
    model(torch.randn(2, 3)).sum().backward()
"""


def _backward_tree(tmp_path: Path, native: str) -> list[tuple]:
    program = tmp_path / "bw.py"
    program.write_text(BACKWARD_PROGRAM)
    out = str(tmp_path / f"bw{native}.tsdb")
    result = subprocess.run(
        [sys.executable, "-m", "tracer.cli", "record", "--no-imports", "--target", "torch",
         "-o", out, str(program)],
        capture_output=True, text=True, env={**os.environ, "TORCHSCOPE_NATIVE": native},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"native stamp: {native == '1'}" in result.stdout
    return [s[:3] for s in spans(out) if s[1] in ("module.forward", "module.backward")]


@pytest.mark.slow
def test_module_spans_native_and_python_fallback_agree(tmp_path):
    """Forward spans (the native Forward against the Python wrapper) and backward
    spans (the native stamp against the Python hooks) of a torch program."""
    native, fallback = _backward_tree(tmp_path, "1"), _backward_tree(tmp_path, "0")
    assert native == fallback
    assert [(depth, kind, name) for depth, kind, name in native[:8]] == [
        (0, "module.forward", "Sequential"),
        (1, "module.forward", "0"),
        (1, "module.forward", "1"),
        (1, "module.forward", "2"),
        (0, "module.backward", "Sequential"),
        (1, "module.backward", "2"),
        (1, "module.backward", "1"),
        (1, "module.backward", "0"),
    ]


def test_call_impl_is_the_native_forward_and_falls_back_without_the_stamp(tmp_path):
    """With the native stamp, ``Module._call_impl`` is its ``Forward`` for the run
    (a method, wrapping torch's); a sink that draws no ids from the stamp gets the
    Python wrapper's records; after the run torch's own function is back."""
    from reimpl import _native, _trace
    from tests.sinks import ListSink

    original = torch.nn.Module.__dict__["_call_impl"]
    if _native.load() is None:
        pytest.skip("native stamp unavailable here")
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU())
    with tracer.record(str(tmp_path / "t.tsdb"), target="torch") as rec:
        seam = torch.nn.Module.__dict__["_call_impl"]
        assert type(seam).__name__ == "Forward" and seam.__wrapped__ is original
        assert model._call_impl.__self__ is model  # bound as a method
        model(torch.randn(1, 2))
        sink = ListSink()
        _trace.attach(sink)  # no stamps: the Python wrapper records, with the sink's ids
        try:
            model(torch.randn(1, 2))
        finally:
            _trace.attach(rec)
    assert torch.nn.Module.__dict__["_call_impl"] is original
    assert [(r[0], r[6]) for r in sink.of("module.forward")] == [
        (2, "0"),
        (3, "1"),
        (1, "Sequential"),
    ]
    assert [s[2] for s in spans(str(tmp_path / "t.tsdb")) if s[1] == "module.forward"] == [
        "Sequential",
        "0",
        "1",
    ]
