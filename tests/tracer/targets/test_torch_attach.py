"""The torch target leaves torch exactly as it found it (tracer/targets/torch/attach.py).

Every attribute the seams patch and every global hook registry of torch is
compared, by identity, before and after a recording: one that ends normally,
one whose program raised, and one run through ``torchscope record --target
torch``. The user's own hooks are back in their dicts, unwrapped.
"""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest
import torch
from global_state import snapshot
from torchscope_cli import torchscope

import tracer
from tracer.targets.torch import attach as torch_attach

_ABSENT = object()


def _patched_places() -> list[tuple[object, str]]:
    """Where the seams put something: read off an attach with no recorder."""
    detach = torch_attach.attach()
    try:
        return [(obj, name) for obj, name, _ in torch_attach._current[0].patched]
    finally:
        detach()


def _torch_state() -> tuple[list, list]:
    """The value of every patched place, and torch's global hook dicts' items."""
    places = [vars(obj).get(name, _ABSENT) for obj, name in _patched_places()]
    hooks = [
        (name, value, dict(items) if items is not None else None)
        for module, name, value, items in snapshot()
        if module.__name__.startswith("torch.")
    ]
    return places, hooks


def _assert_same(before: tuple[list, list], after: tuple[list, list]) -> None:
    assert len(before[0]) == len(after[0])
    for old, new in zip(before[0], after[0]):
        assert old is new
    for (name, old, old_items), (_, new, new_items) in zip(before[1], after[1]):
        assert old is new, name
        if old_items is not None:
            assert list(old_items.items()) == list(new_items.items()), name


class Store:
    """A user's hook object (the DeOldify pattern)."""

    def __init__(self) -> None:
        self.stored = None

    def hook(self, module, args, output) -> None:
        self.stored = output


def log_output(module, args, output) -> None:
    """A stateless hook (a deep copy of the model copies it as it is)."""


def _train_a_little(model: torch.nn.Module) -> None:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 1)
    loader = torch.utils.data.DataLoader(torch.randn(8, 4), batch_size=4)
    for x in loader:
        optimizer.zero_grad()
        model(x).sum().backward()
        optimizer.step()
        scheduler.step()


def test_patches_reach_every_seam():
    places = _patched_places()
    assert (torch.nn.Module, "train") in places
    assert (torch.optim.Optimizer, "zero_grad") in places
    assert (torch.optim.lr_scheduler.LRScheduler, "step") in places
    assert (torch.utils.data.DataLoader, "__iter__") in places
    assert (torch.nn.modules.batchnorm._BatchNorm, "forward") in places


def test_torch_is_untouched_after_a_recording(trace_path):
    before = _torch_state()
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    store = Store()
    pre = model[0].register_forward_pre_hook(lambda m, a: None)
    train = torch.nn.Module.train
    with tracer.record(trace_path, target="torch"):
        assert torch.nn.Module.train is not train  # wrapped while recording
        model[1].register_forward_hook(store.hook)
        _train_a_little(model)
    assert torch.nn.Module.train is train
    _assert_same(before, _torch_state())
    # the user's hooks are theirs again, in the same dicts
    assert [type(h).__name__ for h in model[0]._forward_pre_hooks.values()] == ["function"]
    assert list(model[1]._forward_hooks.values()) == [store.hook]
    pre.remove()
    trace = tracer.load(trace_path)
    kinds = {trace.kind_of(r) for r in range(len(trace.kind))}
    assert {"module.forward", "hook.forward", "hook.forward_pre", "optim.step"} <= kinds
    assert trace.meta["target"] == "torch"


def test_torch_is_untouched_after_the_program_raised(trace_path):
    before = _torch_state()
    model = torch.nn.Linear(4, 2)
    model.register_forward_hook(Store().hook)
    with pytest.raises(ValueError, match="the program failed"):
        with tracer.record(trace_path, target="torch"):
            model(torch.randn(2, 4))
            raise ValueError("the program failed")
    _assert_same(before, _torch_state())
    assert type(next(iter(model._forward_hooks.values()))).__name__ == "method"


def test_the_record_command_restores_torch_when_the_script_raises(tmp_path):
    program = tmp_path / "raising.py"
    program.write_text(
        "import torch\n"
        "from torch.nn.modules import module as m\n"
        "import torch.optim.optimizer as o\n"
        "model = torch.nn.Linear(2, 2)\n"
        "model(torch.randn(1, 2))\n"
        "assert hasattr(torch.nn.Module._call_impl, '__wrapped__')\n"
        "assert m._global_module_registration_hooks and o._global_optimizer_pre_hooks\n"
        "raise RuntimeError('boom')\n"
    )
    out = str(tmp_path / "r.tsdb")
    checker = tmp_path / "check.py"
    # the same interpreter records, then checks torch: run both in one process
    checker.write_text(
        "import sys, torch\n"
        "from torch.nn.modules import module as m\n"
        "import torch.optim.optimizer as o\n"
        "from tracer.recording.runner import run_under_recorder\n"
        "train, call = torch.nn.Module.train, torch.nn.Module._call_impl\n"
        f"code = run_under_recorder({str(program)!r}, [], module=False, output={out!r},\n"
        "                          record_target='torch')\n"
        "assert code == 1, code\n"
        "assert not m._global_forward_hooks and not m._global_forward_pre_hooks\n"
        "assert not o._global_optimizer_pre_hooks and not o._global_optimizer_post_hooks\n"
        "assert torch.nn.Module.train is train and torch.nn.Module._call_impl is call\n"
        "assert not m._global_module_registration_hooks\n"
        "print('untouched')\n"
    )
    result = subprocess.run([sys.executable, str(checker)], capture_output=True, text=True)
    assert "untouched" in result.stdout, result.stderr
    assert "RuntimeError: boom" in result.stderr
    trace = tracer.load(out)
    assert trace.meta["target"] == "torch"
    assert "module.forward" in {trace.kind_of(r) for r in range(len(trace.kind))}


def test_a_model_copied_or_saved_during_the_run_holds_the_user_s_hooks(trace_path, tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(4, 2))
    model[0].register_forward_hook(log_output)
    with tracer.record(trace_path, target="torch"):
        model(torch.randn(1, 4))  # the tree is seen, its hooks wrapped
        assert type(next(iter(model[0]._forward_hooks.values()))).__name__ == "_Hook"
        twin = copy.deepcopy(model)
        torch.save(model, tmp_path / "m.pt")
    assert list(twin[0]._forward_hooks.values()) == [log_output]
    saved = (tmp_path / "m.pt").read_bytes()
    assert b"tracer" not in saved and b"_Hook" not in saved


def test_one_adapter_at_a_time():
    detach = torch_attach.attach()
    try:
        with pytest.raises(RuntimeError, match="already attached"):
            torch_attach.attach()
    finally:
        detach()
    assert not torch_attach.attached()


def test_an_unknown_target_is_refused(trace_path):
    with pytest.raises(ValueError, match="choose one of reimpl, torch"):
        with tracer.record(trace_path, target="jax"):
            pass
    result = torchscope("record", "--target", "jax", "x.py")
    assert result.returncode == 2
    assert "invalid choice: 'jax'" in result.stderr
