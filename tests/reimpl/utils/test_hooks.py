"""reimpl.utils.hooks against torch.utils.hooks: handles, flags, pickling, BackwardHook."""

from __future__ import annotations

import gc
import pickle
import warnings
from collections import OrderedDict

import pytest
import torch
import torch.utils.hooks as th

import reimpl.utils.hooks as rh


@pytest.mark.parametrize("lib", [th, rh], ids=["torch", "reimpl"])
def test_handle_removes_from_hooks_and_extra_dicts(lib) -> None:
    hooks, extra1, extra2 = OrderedDict(), OrderedDict(), OrderedDict()
    h = lib.RemovableHandle(hooks, extra_dict=[extra1, extra2])
    h2 = lib.RemovableHandle(hooks, extra_dict=extra1)
    assert h2.id == h.id + 1
    for d in (hooks, extra1, extra2):
        d[h.id] = True
    hooks[h2.id] = extra1[h2.id] = True
    h.remove()
    assert h.id not in hooks and h.id not in extra1 and h.id not in extra2
    h.remove()  # idempotent
    with h2:
        assert h2.id in hooks
    assert h2.id not in hooks and h2.id not in extra1


def test_both_libraries_behave_alike_step_by_step() -> None:
    def story(lib) -> list:
        out = []
        hooks, extra = OrderedDict(), OrderedDict()
        h = lib.RemovableHandle(hooks, extra_dict=extra)
        hooks[h.id], extra[h.id] = "hook", True
        out.append((len(hooks), len(extra), len(h.extra_dict_ref)))
        state = h.__getstate__()
        out.append((state[0] is hooks, state[2][0] is extra))
        clone = pickle.loads(pickle.dumps((hooks, extra, h)))
        ch, ce, chandle = clone
        chandle.remove()
        out.append((len(ch), len(ce), len(hooks)))
        nothing = lib.RemovableHandle(OrderedDict())
        out.append(nothing.extra_dict_ref)
        return out

    assert story(rh) == story(th)


def test_handle_holds_dicts_weakly_and_setstate_bumps_next_id() -> None:
    hooks = OrderedDict()
    h = rh.RemovableHandle(hooks)
    del hooks
    gc.collect()
    assert h.hooks_dict_ref() is None
    h.remove()  # a dead dict is fine
    dead = rh.RemovableHandle.__new__(rh.RemovableHandle)
    dead.__setstate__((None, rh.RemovableHandle.next_id + 100))
    assert dead.hooks_dict_ref() is None and dead.extra_dict_ref == ()
    assert rh.RemovableHandle(OrderedDict()).id == dead.id + 1


def test_remove_bumps_generation() -> None:
    before = rh.generation
    rh.RemovableHandle(OrderedDict()).remove()
    assert rh.generation == before + 1


def test_unserializable_hook_and_warn_if_has_hooks() -> None:
    def record(lib) -> list:
        t = torch.zeros(2, requires_grad=True)
        t.register_hook(lambda g: None)
        quiet = torch.zeros(2, requires_grad=True)
        quiet.register_hook(lib.unserializable_hook(lambda g: None))
        with warnings.catch_warnings(record=True) as got:
            warnings.simplefilter("always")
            lib.warn_if_has_hooks(t)
            lib.warn_if_has_hooks(quiet)
        return [str(w.message).split(" on tensor")[1] for w in got]

    assert record(rh) == record(th) and len(record(rh)) == 1


def _backward_hook_story(lib) -> list:
    """Drives BackwardHook by hand, as Module._call_impl does."""
    log = []
    module = object()

    def user_hook(mod, grad_input, grad_output):
        log.append(
            (
                "hook",
                mod is module,
                [None if g is None else g.sum().item() for g in grad_input],
                [g.sum().item() for g in grad_output],
            )
        )
        return tuple(None if g is None else g * 2 for g in grad_input)

    def user_pre(mod, grad_output):
        log.append(("pre", [g.sum().item() for g in grad_output]))
        return tuple(g * 3 for g in grad_output)

    bw = lib.BackwardHook(module, [user_hook], [user_pre])
    x = torch.ones(3, requires_grad=True)
    args = bw.setup_input_hook((x, "not a tensor"))
    log.append(("inputs", bw.n_inputs, bw.input_tensors_index, args[1]))
    out = bw.setup_output_hook(args[0] * 2)
    log.append(("outputs", bw.n_outputs, bw.output_tensors_index, type(out).__name__))
    out.sum().backward()
    log.append(("grad", x.grad.tolist()))
    plain = torch.ones(2)
    same, idx = bw._apply_on_tensors(lambda fn: None, (plain,))
    log.append(("no grad needed", same[0] is plain, idx))
    return log


def test_backward_hook_matches_torch() -> None:
    assert _backward_hook_story(rh) == _backward_hook_story(th)


def test_backward_hook_errors_match() -> None:
    def bad(lib) -> str:
        bw = lib.BackwardHook(None, [lambda m, gi, go: (None, None, None)], [])
        x = torch.ones(2, requires_grad=True)
        (y,) = bw.setup_input_hook((x,))
        out = bw.setup_output_hook(y * 1)
        try:
            out.sum().backward()
        except RuntimeError as e:
            return str(e)
        return ""

    assert bad(rh) == bad(th) != ""
