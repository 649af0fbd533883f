"""Every hook kind and flag, run on torch and on reimpl with the same model and the
same hooks: the call logs (order, arguments, return handling) must be identical."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import pytest
import torch
from parity import raised, same_error
from sinks import ListSink
from twins import R, T, pair_of

from reimpl import _trace
from reimpl.nn.modules import module as rmod

X = torch.randn(4, 3)
TMOD = torch.nn.modules.module


def fmt(x: Any) -> Any:
    """A comparable picture of hook arguments: tensors by shape and rounded sum."""
    if isinstance(x, torch.Tensor):
        return ("T", tuple(x.shape), round(float(x.detach().double().sum()), 4))
    if isinstance(x, (tuple, list)):
        return tuple(fmt(v) for v in x)
    if isinstance(x, dict):
        return {k: fmt(v) for k, v in x.items()}
    if hasattr(x, "_modules"):
        return type(x).__name__
    if isinstance(x, BaseException):
        return (type(x).__name__, str(x))
    return x


def run_both(scenario: Callable[[Any, Any, list], Any], *, expect: str) -> list:
    """Runs ``scenario(lib, module_mod, log)`` on both libraries; returns torch's log.

    ``expect`` is ``"result"`` when the scenario must finish on both sides, or
    the name of the exception both must raise: two logs that agree because
    both sides raised the same unexpected error (say, a global flag left by
    another test) are not parity.
    """
    logs = []
    for lib, mod in ((T, TMOD), (R, rmod)):
        log: list = []
        torch.manual_seed(0)  # the twin classes draw their weights identically
        with warnings.catch_warnings(record=True) as got:
            warnings.simplefilter("always")
            try:
                result = scenario(lib, mod, log)
                log.append(("result", fmt(result)))
            except Exception as e:
                log.append(("raised", type(e).__name__, str(e)))
        log.append(("warnings", [(w.category.__name__, str(w.message)) for w in got]))
        logs.append(log)
    assert logs[1] == logs[0]
    outcome = logs[0][-2]  # ("result", value) or ("raised", type name, message)
    got = outcome[0] if outcome[0] == "result" else outcome[1]
    assert got == expect, f"expected {expect}, both sides gave {outcome}"
    return logs[0]


def logger(log: list, name: str, ret: Any = None) -> Callable:
    def hook(*args: Any) -> Any:
        log.append((name, fmt(args)))
        return ret

    return hook


def step(m: Any, x: torch.Tensor = X) -> Any:
    x = x.clone().requires_grad_()
    out = m(x)
    out.sum().backward()
    return out, x.grad


def test_forward_pre_hooks_order_prepend_and_returns() -> None:
    def scenario(lib, mod, log):
        m = lib.Net()
        m.first.register_forward_pre_hook(logger(log, "a"))
        m.first.register_forward_pre_hook(logger(log, "b-prepended"), prepend=True)
        m.first.register_forward_pre_hook(lambda mod_, args: args[0] * 2)  # single value
        m.first.register_forward_pre_hook(logger(log, "after-double"))
        m.head.register_forward_pre_hook(lambda mod_, args: (args[0] + 1,))  # a tuple
        m.head.register_forward_pre_hook(logger(log, "head"))
        return step(m)

    log = run_both(scenario, expect="result")
    assert [e[0] for e in log[:3]] == ["b-prepended", "a", "after-double"]


def test_forward_pre_hook_with_kwargs() -> None:
    def scenario(lib, mod, log):
        m = lib.KW()

        def kw_hook(module, args, kwargs):
            log.append(("kw", fmt(args), fmt(kwargs)))
            return (args[0] + 1,), {"scale": kwargs.get("scale", 1.0) * 3}

        m.register_forward_pre_hook(kw_hook, with_kwargs=True)
        m.register_forward_pre_hook(logger(log, "plain"))
        return m(torch.ones(2), scale=2.0)

    run_both(scenario, expect="result")


def test_forward_pre_hook_with_kwargs_bad_return() -> None:
    def scenario(lib, mod, log):
        m = lib.KW()
        m.register_forward_pre_hook(lambda module, args, kwargs: 5, with_kwargs=True)
        return m(torch.ones(2))

    log = run_both(scenario, expect="RuntimeError")
    assert log[0][0] == "raised" and "forward pre-hook must return None" in log[0][2]


def test_forward_hooks_flags_and_returns() -> None:
    def scenario(lib, mod, log):
        m = lib.Net()
        m.block.register_forward_hook(logger(log, "plain"))
        m.block.register_forward_hook(logger(log, "prepended"), prepend=True)

        def kw(module, args, kwargs, output):
            log.append(("kw", fmt(args), fmt(kwargs), fmt(output)))
            return output * 0.5

        m.block.register_forward_hook(kw, with_kwargs=True)
        m.block.register_forward_hook(logger(log, "sees-halved"), always_call=True)
        return step(m)

    run_both(scenario, expect="result")


@pytest.mark.parametrize("traced", [False, True], ids=["untraced", "traced"])
def test_forward_hooks_with_kwargs_receive_the_call_keywords(traced: bool) -> None:
    """A ``with_kwargs=True`` forward hook, on the module or global, gets the
    call's keyword arguments (as a kwargs pre-hook left them), not ``{}``; and
    so does an always-called one when forward raises. ``traced``: reimpl runs
    with a sink attached, where hooks go through the span-recording path."""
    sinks: list[ListSink] = []

    def run(lib: Any, call: Callable[[], Any]) -> Any:
        if not (traced and lib is R):
            return call()
        sinks.append(ListSink())
        _trace.attach(sinks[-1])
        try:
            return call()
        finally:
            _trace.detach()

    def scenario(lib, mod, log):
        m = lib.KW()
        m.register_forward_pre_hook(
            lambda module, args, kwargs: (args, {**kwargs, "scale": kwargs["scale"] + 1}),
            with_kwargs=True,
        )

        def kw(module, args, kwargs, output):
            log.append(("kw", fmt(args), fmt(kwargs), fmt(output)))
            return output[0] * kwargs["scale"], output[1]

        m.register_forward_hook(kw, with_kwargs=True)
        g = mod.register_module_forward_hook(
            lambda module, args, kwargs, out: log.append(("g-kw", fmt(kwargs))), with_kwargs=True
        )
        try:
            return run(lib, lambda: m(torch.ones(2), scale=2.0))
        finally:
            g.remove()

    log = run_both(scenario, expect="result")
    assert log[:2] == [
        ("g-kw", {"scale": 3.0}),
        ("kw", (("T", (2,), 2.0),), {"scale": 3.0}, (("T", (2,), 6.0), ("T", (2,), 8.0))),
    ]
    assert log[2] == ("result", (("T", (2,), 18.0), ("T", (2,), 8.0)))

    def failing(lib, mod, log):
        class FailingKW(lib.nn.Module):
            def forward(self, x: torch.Tensor, *, scale: float) -> torch.Tensor:
                raise ValueError(f"forward failed at scale {scale}")

        m = FailingKW()
        m.register_forward_hook(
            lambda module, args, kwargs, out: log.append(("always-kw", fmt(kwargs), out)),
            with_kwargs=True,
            always_call=True,
        )
        return run(lib, lambda: m(torch.ones(1), scale=3.0))

    log = run_both(failing, expect="ValueError")
    assert log[0] == ("always-kw", {"scale": 3.0}, None)
    if traced:
        assert [len(s.of_kind("hook.forward")) for s in sinks] == [2, 1]


def test_always_call_hooks_run_when_forward_raises() -> None:
    def scenario(lib, mod, log):
        m = lib.Failing()
        m.register_forward_hook(logger(log, "skipped"))
        m.register_forward_hook(logger(log, "always"), always_call=True)
        m.register_forward_hook(logger(log, "always-kw"), always_call=True, with_kwargs=True)

        def boom(*args):
            raise KeyError("hook failed too")

        m.register_forward_hook(boom, always_call=True)
        g = mod.register_module_forward_hook(logger(log, "global-always"), always_call=True)
        g2 = mod.register_module_forward_hook(boom, always_call=True)
        try:
            return m(torch.ones(1))
        finally:
            g.remove(), g2.remove()

    log = run_both(scenario, expect="ValueError")
    assert ("raised", "ValueError", "forward failed") in log


def test_always_called_hook_not_rerun_when_a_later_hook_raises() -> None:
    def scenario(lib, mod, log):
        m = lib.Act()
        m.register_forward_hook(logger(log, "always"), always_call=True)

        def boom(*args):
            raise RuntimeError("late")

        m.register_forward_hook(boom)
        return m(torch.ones(1))

    log = run_both(scenario, expect="RuntimeError")
    assert [e[0] for e in log].count("always") == 1


def test_full_backward_hooks() -> None:
    def scenario(lib, mod, log):
        m = lib.Net()
        m.block.register_full_backward_hook(logger(log, "bw"))
        m.block.register_full_backward_hook(logger(log, "bw-first"), prepend=True)
        m.block.register_full_backward_hook(lambda mod_, gi, go: tuple(g * 10 for g in gi))
        m.block.register_full_backward_pre_hook(logger(log, "pre"))
        m.block.register_full_backward_pre_hook(
            lambda mod_, go: tuple(g * 2 for g in go), prepend=True
        )
        m.head.register_full_backward_pre_hook(logger(log, "head-pre"))
        return step(m)

    log = run_both(scenario, expect="result")
    kinds = [e[0] for e in log]
    assert (
        kinds.index("head-pre") < kinds.index("pre") < kinds.index("bw-first") < kinds.index("bw")
    )


def test_full_backward_hook_wrong_length_and_no_input_grad() -> None:
    def bad_length(lib, mod, log):
        m = lib.Act()
        m.register_full_backward_hook(lambda mod_, gi, go: (None, None))
        return step(m)

    def bad_pre_length(lib, mod, log):
        m = lib.Act()
        m.register_full_backward_pre_hook(lambda mod_, go: (None, None))
        return step(m)

    def no_input_grad(lib, mod, log):
        m = lib.Lin(3, 2)
        m.register_full_backward_hook(logger(log, "bw"))
        out = m(X)  # X does not require grad: the hook fires on output grads
        out.sum().backward()
        return m.weight.grad

    def no_input_grad_bad_return(lib, mod, log):
        m = lib.Lin(3, 2)
        m.register_full_backward_hook(lambda mod_, gi, go: (torch.ones(1),))
        m(X).sum().backward()

    def non_tensor_output(lib, mod, log):
        m = lib.KW()
        m.register_full_backward_hook(logger(log, "bw"))
        out = m(X.clone().requires_grad_(), scale=2.0)
        (out[0].sum() + out[1].sum()).backward()
        return out

    for scenario, expect in (
        (bad_length, "RuntimeError"),
        (bad_pre_length, "RuntimeError"),
        (no_input_grad, "result"),
        (no_input_grad_bad_return, "RuntimeError"),
        (non_tensor_output, "result"),
    ):
        run_both(scenario, expect=expect)


def test_deprecated_backward_hook_and_its_warnings() -> None:
    def single_node(lib, mod, log):
        m = lib.Act()
        m.register_backward_hook(logger(log, "old"))
        return step(m)

    def multi_node(lib, mod, log):
        m = lib.Lin(3, 2)  # linear + bias: more than one node, torch warns
        m.register_backward_hook(logger(log, "old"))
        return step(m)

    def tuple_out(lib, mod, log):
        m = lib.KW()
        m.register_backward_hook(logger(log, "old"))
        x = X.clone().requires_grad_()
        out = m(x)
        out[0].sum().backward()
        return out

    def mixing(lib, mod, log):
        m = lib.Act()
        m.register_backward_hook(logger(log, "old"))
        return m.register_full_backward_hook(logger(log, "new"))

    def mixing_other_way(lib, mod, log):
        m = lib.Act()
        m.register_full_backward_hook(logger(log, "new"))
        return m.register_backward_hook(logger(log, "old"))

    for scenario, expect in (
        (single_node, "result"),
        (multi_node, "result"),
        (tuple_out, "result"),
        (mixing, "RuntimeError"),
        (mixing_other_way, "RuntimeError"),
    ):
        run_both(scenario, expect=expect)


def test_global_forward_and_backward_hooks() -> None:
    def scenario(lib, mod, log):
        m = lib.Net()
        m.block.register_forward_pre_hook(logger(log, "local-pre"))
        m.block.register_forward_hook(logger(log, "local-fwd"))
        m.block.register_full_backward_hook(logger(log, "local-bw"))
        handles = [
            mod.register_module_forward_pre_hook(logger(log, "g-pre")),
            mod.register_module_forward_hook(logger(log, "g-fwd")),
            mod.register_module_forward_hook(
                lambda module, args, kwargs, out: log.append(("g-kw", fmt(kwargs))),
                with_kwargs=True,
            ),
            mod.register_module_full_backward_pre_hook(logger(log, "g-bw-pre")),
            mod.register_module_full_backward_hook(logger(log, "g-bw")),
        ]
        try:
            return step(m)
        finally:
            for h in handles:
                h.remove()

    log = run_both(scenario, expect="result")
    names = [e[0] for e in log]
    assert names.index("g-pre") < names.index("local-pre")


@pytest.mark.parametrize(
    "register",
    [
        "register_module_forward_pre_hook",
        "register_module_forward_hook",
        "register_module_full_backward_pre_hook",
        "register_module_full_backward_hook",
        "register_module_backward_hook",
    ],
)
def test_one_global_hook_alone_reaches_modules_without_hooks(register: str) -> None:
    """A single global hook of each kind takes every module off the no-hook fast path."""

    def scenario(lib, mod, log):
        mod._global_is_full_backward_hook = None  # whatever an earlier test left
        h = getattr(mod, register)(logger(log, "global"))
        try:
            return step(lib.Net())
        finally:
            h.remove()

    log = run_both(scenario, expect="result")
    assert {e[1][0] for e in log if e[0] == "global"} >= {"Lin", "Block", "Act", "Stat"}


CANNOT_MIX = (
    "RuntimeError",
    "Cannot use both regular backward hooks and full backward hooks as a global Module hook. "
    "Please use only one of them.",
)


@pytest.mark.parametrize(
    "first, other, flag",
    [
        ("register_module_backward_hook", "register_module_full_backward_hook", False),
        ("register_module_full_backward_hook", "register_module_backward_hook", True),
    ],
)
def test_global_backward_hook_kinds_exclude_each_other(first: str, other: str, flag: bool) -> None:
    """The first global backward hook fixes the kind for the whole process: the
    other kind is refused while it is registered, and still after its handle is
    removed (the flag stays). Each side starts from a clear flag, so the result
    does not depend on what ran before."""

    def scenario(lib, mod, log):
        mod._global_is_full_backward_hook = None  # whatever an earlier test left
        h = getattr(mod, first)(logger(log, "first"))
        try:
            step(lib.Act())
            during = raised(lambda: getattr(mod, other)(logger(log, "x")))
        finally:
            h.remove()
        after = raised(lambda: getattr(mod, other)(logger(log, "y")))
        return during, after, mod._global_is_full_backward_hook

    log = run_both(scenario, expect="result")
    assert log[-2] == ("result", (CANNOT_MIX, CANNOT_MIX, flag))
    assert [e[0] for e in log[:-2]] == ["first"]  # the hook ran in the backward


def test_handles_remove_and_context_manager() -> None:
    def scenario(lib, mod, log):
        m = lib.Block(3)
        h1 = m.register_forward_hook(logger(log, "removed"), with_kwargs=True, always_call=True)
        with m.register_forward_pre_hook(logger(log, "ctx"), with_kwargs=False):
            m(X)
        h1.remove()
        h1.remove()  # twice is harmless
        m(X)
        return (
            len(m._forward_hooks),
            len(m._forward_hooks_with_kwargs),
            len(m._forward_hooks_always_called),
            len(m._forward_pre_hooks),
        )

    log = run_both(scenario, expect="result")
    assert log[-2] == ("result", (0, 0, 0, 0))


def test_hook_on_output_warning_for_non_tensor_result() -> None:
    def scenario(lib, mod, log):
        class DictOut(lib.nn.Module):
            def forward(self, x):
                return {"y": x * 2}

        m = DictOut()
        m.register_full_backward_hook(logger(log, "bw"))
        out = m(X.clone().requires_grad_())
        return out

    run_both(scenario, expect="result")


def test_no_hooks_takes_fast_path() -> None:
    _, r = pair_of("Act")
    assert not (r._forward_hooks or r._forward_pre_hooks or r._backward_hooks)
    calls = []
    r.forward = lambda x: calls.append(1) or x  # instance attribute wins, as in torch
    r(X)
    assert calls == [1]
    same_error(lambda: T.nn.Module()(X), lambda: R.nn.Module()(X))


@pytest.mark.parametrize("prepend", [False, True])
def test_backward_pre_hook_handle_and_prepend(prepend: bool) -> None:
    def scenario(lib, mod, log):
        m = lib.Act()
        m.register_full_backward_pre_hook(logger(log, "one"))
        h = m.register_full_backward_pre_hook(logger(log, "two"), prepend=prepend)
        step(m)
        h.remove()
        return step(m)

    run_both(scenario, expect="result")
