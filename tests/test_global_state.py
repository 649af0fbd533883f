"""The isolation fixture's helpers: whatever a test leaves in the global hook
registries and flags (reimpl's and torch's) is undone by ``restore``."""

from __future__ import annotations

import importlib

import global_state
import torch
from sinks import ListSink

import reimpl.optim.optimizer
from reimpl import _trace
from reimpl.nn.modules import module as rmod

TMOD = torch.nn.modules.module
TOPT = importlib.import_module("torch.optim.optimizer")  # torch.optim deletes the attribute


def test_restore_undoes_leftover_hooks_and_flags() -> None:
    saved = global_state.snapshot()
    forward_hooks = rmod._global_forward_hooks
    before = {mod: dict(mod._global_forward_hooks) for mod in (rmod, TMOD)}
    for mod in (rmod, TMOD):
        mod.register_module_forward_hook(lambda *a: None, with_kwargs=True, always_call=True)
        mod.register_module_full_backward_hook(lambda *a: None)  # sets the flag to True
        mod.register_module_forward_pre_hook(lambda *a: None)
    reimpl.optim.optimizer.register_optimizer_step_pre_hook(lambda *a: None)
    TOPT.register_optimizer_step_pre_hook(lambda *a: None)
    _trace.attach(ListSink())
    _trace.backward_spans = False
    global_state.restore(saved)
    for mod in (rmod, TMOD):
        assert dict(mod._global_forward_hooks) == before[mod]
        assert mod._global_is_full_backward_hook is None
        assert not mod._global_forward_hooks_with_kwargs
        assert not mod._global_forward_hooks_always_called
        assert not mod._global_backward_hooks and not mod._global_forward_pre_hooks
    assert not reimpl.optim.optimizer._global_optimizer_pre_hooks
    assert not TOPT._global_optimizer_pre_hooks
    assert _trace.sink is None and _trace.backward_spans is True
    assert rmod._global_forward_hooks is forward_hooks  # the same dict, emptied in place


def test_a_restored_registry_still_works() -> None:
    """After a restore, new registrations and their handles behave as before."""
    saved = global_state.snapshot()
    rmod.register_module_forward_hook(lambda *a: None)
    global_state.restore(saved)
    calls = []
    h = rmod.register_module_forward_hook(lambda m, args, out: calls.append(type(m).__name__))
    reimpl.nn.Identity()(torch.ones(1))
    h.remove()
    reimpl.nn.Identity()(torch.ones(1))
    assert calls == ["Identity"]
