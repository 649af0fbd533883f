"""The Optimizer base class against torch: groups, errors, hooks, state dicts, events."""

from __future__ import annotations

import copy
import importlib
import inspect
import io
import pickle
import warnings

import pytest
import torch
from optim_parity import (
    assert_close_tree,
    continue_twins,
    raised,
    run_twins,
    twin_params,
)
from sinks import ListSink

import reimpl.nn
import reimpl.optim
from reimpl import _trace

CASES = {
    "SGD": ({"lr": 0.05, "momentum": 0.9, "nesterov": True}, {"lr": 0.01}),
    "Adam": ({"lr": 0.01, "amsgrad": True}, {"lr": 0.003}),
    "AdamW": ({"lr": 0.01, "fused": True}, {"weight_decay": 0.1}),
    "Adagrad": ({"lr": 0.1, "lr_decay": 0.01}, {"lr": 0.05}),
    "RMSprop": ({"lr": 0.01, "centered": True, "momentum": 0.5}, {"lr": 0.003}),
}
# torch checks hooks, printing, no-op steps and state dicts across every
# configuration of an optimizer, differentiable=True ones included
DIFFERENTIABLE = {
    "SGD-differentiable": ({"lr": 0.05, "momentum": 0.9, "differentiable": True}, {"lr": 0.01}),
    "Adam-differentiable": (
        {"lr": 0.01, "amsgrad": True, "weight_decay": 0.1, "differentiable": True},
        {"lr": 0.003},
    ),
    "AdamW-differentiable": ({"lr": 0.01, "differentiable": True}, {"weight_decay": 0.1}),
    "Adagrad-differentiable": (
        {"lr": 0.1, "lr_decay": 0.01, "differentiable": True},
        {"lr": 0.05},
    ),
    "RMSprop-differentiable": (
        {"lr": 0.01, "centered": True, "momentum": 0.5, "differentiable": True},
        {"lr": 0.003},
    ),
}
ALL_CASES = {**CASES, **DIFFERENTIABLE}


def _case(case: str) -> tuple[str, dict, dict, bool]:
    """Optimizer name, kwargs, second group's options, and whether params may
    require grad (not when differentiable: the step runs with autograd on)."""
    kwargs, second = ALL_CASES[case]
    return case.split("-")[0], kwargs, second, not kwargs.get("differentiable", False)


# --- state dicts ---------------------------------------------------------------


@pytest.mark.parametrize("case", ALL_CASES)
def test_torch_continues_from_a_reimpl_state_dict(case: str) -> None:
    """Ours runs 20 steps; a fresh torch optimizer loads our state and keeps pace."""
    name, kwargs, second, requires_grad = _case(case)
    theirs, ours, theirs_p, ours_p = run_twins(
        name, kwargs, second, steps=20, requires_grad=requires_grad
    )
    fresh_p = [p.detach().clone().requires_grad_() for p in ours_p]
    fresh = getattr(torch.optim, name)([{"params": fresh_p[:1]}, {"params": fresh_p[1:]}])
    fresh.load_state_dict(ours.state_dict())
    continue_twins(theirs, fresh, theirs_p, fresh_p)


@pytest.mark.parametrize("case", ALL_CASES)
def test_reimpl_continues_from_a_torch_state_dict(case: str) -> None:
    """The reverse, through torch.save/torch.load (weights_only) as a checkpoint would."""
    name, kwargs, second, requires_grad = _case(case)
    theirs, _, theirs_p, _ = run_twins(name, kwargs, second, steps=20, requires_grad=requires_grad)
    buf = io.BytesIO()
    torch.save(theirs.state_dict(), buf)
    buf.seek(0)
    fresh_p = [p.detach().clone().requires_grad_() for p in theirs_p]
    fresh = getattr(reimpl.optim, name)([{"params": fresh_p[:1]}, {"params": fresh_p[1:]}])
    fresh.load_state_dict(torch.load(buf, weights_only=True))
    continue_twins(theirs, fresh, theirs_p, fresh_p)


def test_load_casts_state_to_each_param_like_torch() -> None:
    """float64 state loaded for float32 params is cast; ``step`` keeps its dtype."""
    _, ours, _, _ = run_twins("Adam", {"lr": 0.01}, {}, steps=3)
    state = ours.state_dict()
    for lib in (torch, reimpl):
        p32 = [torch.zeros(s, requires_grad=True) for s in ((4, 3), (5,), (2, 2))]
        opt = lib.optim.Adam([{"params": p32[:1]}, {"params": p32[1:]}])
        opt.load_state_dict(state)
        loaded = opt.state[p32[0]]
        assert loaded["exp_avg"].dtype == torch.float32
        assert loaded["step"].dtype == state["state"][0]["step"].dtype


def test_fused_load_moves_step_to_float32_like_torch() -> None:
    _, ours, _, _ = run_twins("Adam", {"lr": 0.01}, {}, steps=3)
    p = [torch.zeros(s, dtype=torch.float64, requires_grad=True) for s in ((4, 3), (5,), (2, 2))]
    opt = reimpl.optim.Adam([{"params": p[:1]}, {"params": p[1:]}], fused=True)
    sd = ours.state_dict()
    for g in sd["param_groups"]:
        g["fused"] = True
    opt.load_state_dict(sd)
    assert opt.state[p[0]]["step"].dtype == torch.float32


def test_state_dict_format_is_torchs() -> None:
    """Same keys, same integer ids, same group dicts (with named params too)."""
    for lib_params in (twin_params(),):
        theirs_p, ours_p = lib_params
        named_t = [(f"w{i}", p) for i, p in enumerate(theirs_p)]
        named_o = [(f"w{i}", p) for i, p in enumerate(ours_p)]
        theirs = torch.optim.SGD(named_t, lr=0.1, momentum=0.9)
        ours = reimpl.optim.SGD(named_o, lr=0.1, momentum=0.9)
        for t, o in zip(theirs_p, ours_p):
            t.grad = torch.ones_like(t)
            o.grad = torch.ones_like(o)
        theirs.step()
        ours.step()
        assert_close_tree(ours.state_dict(), theirs.state_dict(), 0.0)
        assert ours.state_dict()["param_groups"][0]["param_names"] == ["w0", "w1", "w2"]


@pytest.mark.parametrize(
    "mutate",
    [
        lambda sd: sd["param_groups"].append(dict(sd["param_groups"][0])),
        lambda sd: sd["param_groups"][0]["params"].append(99),
    ],
    ids=["group-count", "group-size"],
)
def test_load_errors_match_torch(mutate) -> None:
    def attempt(lib):
        p = [torch.zeros(2, requires_grad=True), torch.zeros(3, requires_grad=True)]
        opt = lib.optim.SGD(p, lr=0.1)
        sd = opt.state_dict()
        mutate(sd)
        opt.load_state_dict(sd)

    assert raised(lambda: attempt(reimpl)) == raised(lambda: attempt(torch))


# --- parameter groups and their errors ----------------------------------------


def _leaf() -> torch.Tensor:
    return torch.zeros(2, requires_grad=True)


MISUSE = {
    "tensor-not-iterable": lambda lib: lib.optim.SGD(_leaf(), lr=0.1),
    "empty": lambda lib: lib.optim.SGD([], lr=0.1),
    "set": lambda lib: lib.optim.SGD([{"params": {_leaf()}}], lr=0.1),
    "non-leaf": lambda lib: lib.optim.SGD([_leaf() * 2], lr=0.1),
    "not-a-tensor": lambda lib: lib.optim.SGD([1.0], lr=0.1),
    "group-not-dict": lambda lib: lib.optim.SGD([_leaf()], lr=0.1).add_param_group([_leaf()]),
    "in-two-groups": lambda lib: (
        lambda p: lib.optim.SGD([{"params": [p]}, {"params": [p]}], lr=0.1)
    )(_leaf()),
    "names-missing": lambda lib: lib.optim.SGD([("a", _leaf()), _leaf()], lr=0.1),
    "named-and-unnamed-groups": lambda lib: lib.optim.SGD(
        [{"params": [("a", _leaf())]}, {"params": [_leaf()]}], lr=0.1
    ),
}


@pytest.mark.parametrize("case", MISUSE)
def test_misuse_errors_match_torch(case: str) -> None:
    assert raised(lambda: MISUSE[case](reimpl)) == raised(lambda: MISUSE[case](torch))


def test_duplicate_parameters_warn_like_torch() -> None:
    messages = []
    for lib in (torch, reimpl):
        p = _leaf()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            lib.optim.SGD([p, p], lr=0.1)
        messages.append([str(w.message) for w in caught])
    assert messages[0] == messages[1]
    assert "duplicate parameters" in messages[1][0]


def test_add_param_group_fills_defaults_and_repr_matches() -> None:
    reprs = []
    for lib in (torch, reimpl):
        opt = lib.optim.Adam([_leaf()], lr=0.01)
        opt.add_param_group({"params": _leaf(), "lr": 0.5})
        assert opt.param_groups[1]["betas"] == (0.9, 0.999)
        reprs.append(repr(opt))
    assert reprs[0] == reprs[1]


def test_add_param_group_is_a_span_with_the_group_it_added(tmp_path) -> None:
    """One per group: the constructor's and the explicit ones (unfreezing a layer),
    with the group's index, size and options; a refused group keeps its error."""
    import tracer

    path = str(tmp_path / "t.tsdb")
    first, second = _leaf(), torch.zeros(2, 3, requires_grad=True)
    with tracer.record(path):
        opt = reimpl.optim.Adam([first], lr=0.01)
        opt.add_param_group({"params": second, "lr": 0.5})
        with pytest.raises(ValueError, match="more than one parameter group"):
            opt.add_param_group({"params": [first]})
    t = tracer.load(path)
    rows = sorted((r for r in range(t.n) if t.kind_of(r) == "optim.add_param_group"),
                  key=lambda r: t.start_ns[r])  # fmt: skip
    assert [t.name_of(r) for r in rows] == ["Adam.add_param_group"] * 3
    assert t.func_of(rows[0]) == "reimpl.optim.optimizer.Optimizer.add_param_group"
    built, added, refused = (t.attrs(r) for r in rows)
    assert (built["index"], built["params"], built["lr"]) == (0, 1, 0.01)
    assert (added["index"], added["params"], added["numel"], added["lr"]) == (1, 1, 6, 0.5)
    assert added["betas"] == [0.9, 0.999]  # filled in from the defaults
    assert refused["error"].startswith("ValueError: some parameters appear")
    assert len(opt.param_groups) == 2


@pytest.mark.parametrize("set_to_none", [True, False])
@pytest.mark.parametrize("foreach", [None, True])
def test_zero_grad(set_to_none: bool, foreach: bool | None) -> None:
    p = [_leaf(), torch.zeros(3, dtype=torch.float64, requires_grad=True)]
    opt = reimpl.optim.SGD(p, lr=0.1, foreach=foreach)
    for t in p:
        t.grad = torch.ones_like(t)
    opt.zero_grad(set_to_none=set_to_none)
    for t in p:
        assert (t.grad is None) if set_to_none else bool((t.grad == 0).all())


def test_works_on_a_torch_module_with_a_real_backward() -> None:
    torch.manual_seed(0)
    theirs = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh(), torch.nn.Linear(3, 1))
    ours = copy.deepcopy(theirs)
    t_opt = torch.optim.Adam(theirs.parameters(), lr=0.01)
    r_opt = reimpl.optim.Adam(ours.parameters(), lr=0.01)
    x = torch.randn(8, 4)
    for _ in range(5):
        for model, opt in ((theirs, t_opt), (ours, r_opt)):
            opt.zero_grad()
            model(x).pow(2).mean().backward()
            opt.step()
    assert_close_tree(list(ours.parameters()), list(theirs.parameters()), 0.0)


def test_works_on_a_reimpl_module() -> None:
    torch.manual_seed(0)
    theirs = torch.nn.Linear(4, 3).double()
    ours = reimpl.nn.Linear(4, 3).double()
    ours.load_state_dict(theirs.state_dict())
    t_opt = torch.optim.SGD(theirs.parameters(), lr=0.1, momentum=0.9)
    r_opt = reimpl.optim.SGD(ours.parameters(), lr=0.1, momentum=0.9)
    x = torch.randn(8, 4, dtype=torch.float64)
    for _ in range(5):
        for model, opt in ((theirs, t_opt), (ours, r_opt)):
            opt.zero_grad()
            model(x).pow(2).mean().backward()
            opt.step()
    assert_close_tree(list(ours.parameters()), list(theirs.parameters()), 1e-12)


def test_step_with_closure_returns_the_loss() -> None:
    p = torch.ones(2, requires_grad=True)
    opt = reimpl.optim.SGD([p], lr=0.1)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = (p * p).sum()
        loss.backward()
        return loss

    assert opt.step(closure).item() == 2.0
    assert torch.equal(p.detach(), torch.full((2,), 0.8))


def test_pickle_and_deepcopy_keep_state_and_still_step() -> None:
    _, ours, _, _ = run_twins("Adam", {"lr": 0.01}, {}, steps=3)
    for clone in (pickle.loads(pickle.dumps(ours)), copy.deepcopy(ours)):
        assert_close_tree(clone.state_dict(), ours.state_dict(), 0.0)
        assert clone._optimizer_step_pre_hooks == {}
        for p in clone.param_groups[0]["params"]:
            p.grad = torch.ones_like(p)
        clone.step()


# --- hooks -------------------------------------------------------------------------


def _hook_trace(lib, case: str = "SGD-plain") -> list:
    """Registers every kind of hook on an optimizer and returns who ran, in order."""
    log: list = []
    if case == "SGD-plain":
        name, kwargs, requires_grad = "SGD", {"lr": 0.1}, True
    else:
        name, kwargs, _, requires_grad = _case(case)
    # a differentiable step updates a non-leaf (a meta-learning copy) in place
    p = _leaf() if requires_grad else _leaf().clone()
    opt = getattr(lib.optim, name)([p], **kwargs)
    module = importlib.import_module(f"{lib.__name__}.optim.optimizer")
    handles = [
        module.register_optimizer_step_pre_hook(lambda o, a, k: log.append("gpre")),
        module.register_optimizer_step_post_hook(lambda o, a, k: log.append("gpost")),
    ]
    opt.register_step_pre_hook(lambda o, a, k: log.append(("pre", len(a), dict(k))))
    opt.register_step_post_hook(lambda o, a, k: log.append("post"))
    opt.register_state_dict_pre_hook(lambda o: log.append("sd-pre"))
    opt.register_state_dict_pre_hook(lambda o: log.append("sd-pre-first"), prepend=True)
    opt.register_state_dict_post_hook(lambda o, sd: {**sd, "extra": 1})
    opt.register_load_state_dict_pre_hook(lambda o, sd: log.append("load-pre"))
    opt.register_load_state_dict_post_hook(lambda o: log.append("load-post"))
    removed = opt.register_step_post_hook(lambda o, a, k: log.append("removed"))
    removed.remove()
    p.grad = torch.ones(2)
    opt.step()
    sd = opt.state_dict()
    log.append(sorted(sd))
    sd.pop("extra")
    opt.load_state_dict(sd)
    for h in handles:
        h.remove()
    opt.step()
    return log


@pytest.mark.parametrize("case", ["SGD-plain", *DIFFERENTIABLE])
def test_hooks_run_like_torchs(case: str) -> None:
    ours = _hook_trace(reimpl, case)
    assert ours == _hook_trace(torch, case)
    # two steps ran every step hook; the global ones were removed before the second
    assert ours.count(("pre", 1, {})) == ours.count("post") == 2
    assert ours.count("gpre") == ours.count("gpost") == 1 and "removed" not in ours


@pytest.mark.parametrize("case", ALL_CASES)
def test_printing_matches_torch(case: str) -> None:
    name, kwargs, second, _ = _case(case)

    def printed(lib) -> str:
        groups = [{"params": [_leaf()]}, {"params": [_leaf()], **second}]
        return repr(getattr(lib.optim, name)(groups, **kwargs))

    ours = printed(reimpl)
    assert ours == printed(torch)
    assert f"differentiable: {kwargs.get('differentiable', False)}" in ours


@pytest.mark.parametrize("case", ALL_CASES)
def test_step_without_grads_or_with_zero_grads_is_a_noop(case: str) -> None:
    """As torch checks for every configuration (weight decay aside, which moves
    the weights whatever the gradient): nothing moves, on both sides."""
    name, kwargs, _, requires_grad = _case(case)
    kwargs = {**kwargs, "weight_decay": 0.0}
    for zero_grads in (False, True):
        for lib in (torch, reimpl):
            leaf = torch.randn(5, 1, requires_grad=True)
            p = leaf if requires_grad else leaf.clone()  # differentiable: a non-leaf
            p.retain_grad()  # a non-leaf's .grad is the optimizer's to read
            before = p.detach().clone()
            opt = getattr(lib.optim, name)([p], **kwargs)
            if zero_grads:
                p.grad = torch.zeros_like(p)
            assert opt.step(lambda: torch.tensor([1.0])).item() == 1.0
            assert torch.equal(p.detach(), before), (lib.__name__, zero_grads)
            assert (len(opt.state[p]) > 0) == (zero_grads or name == "Adagrad")


def test_pre_hook_can_replace_arguments() -> None:
    p = torch.ones(2, requires_grad=True)
    opt = reimpl.optim.SGD([p], lr=0.1)
    calls = []
    opt.register_step_pre_hook(lambda o, a, k: (a, {"closure": lambda: calls.append(1)}))
    opt.step()
    assert calls == [1]


# --- events ------------------------------------------------------------------------


@pytest.fixture
def sink():
    s = ListSink()
    _trace.attach(s)
    yield s
    _trace.detach()


@pytest.mark.parametrize(
    ("kwargs", "path"),
    [({}, "single"), ({"foreach": True}, "foreach"), ({"fused": True}, "fused")],
)
def test_step_group_update_nesting(sink: ListSink, kwargs: dict, path: str) -> None:
    _, ours_p = twin_params()
    opt = reimpl.optim.Adam([{"params": ours_p[:1]}, {"params": ours_p[1:], "lr": 0.5}], **kwargs)
    reimpl.optim.name_parameters(opt, [("enc.weight", ours_p[0])])
    for p in ours_p:
        p.grad = torch.ones_like(p)
    opt.step()
    parents = sink.parents()
    (step,) = sink.of_kind("optim.step")
    groups = sink.of_kind("optim.group")
    updates = sink.of_kind("optim.update")
    assert [parents[g[0]] for g in groups] == [step[0], step[0]]
    assert [g[8]["index"] for g in groups] == [0, 1]
    assert [g[8]["lr"] for g in groups] == [0.001, 0.5]
    assert groups[1][8]["betas"] == [0.9, 0.999] and groups[1][8]["amsgrad"] is False
    assert [parents[u[0]] for u in updates] == [groups[0][0], groups[1][0], groups[1][0]]
    assert [u[8]["param"] for u in updates] == [0, 1, 2]
    assert [u[6] for u in updates] == ["enc.weight", "param[1]", "param[2]"]
    assert [u[8]["shape"] for u in updates] == [[4, 3], [5], [2, 2]]
    assert {u[8]["path"] for u in updates} == {path}
    assert updates[0][8]["state"] == {"step": [], "exp_avg": [4, 3], "exp_avg_sq": [4, 3]}
    assert step[6] == "Adam.step" and step[8]["groups"] == 2


@pytest.mark.parametrize(
    ("name", "kwargs", "path"),
    [
        ("SGD", {"momentum": 0.9}, "single"),
        ("SGD", {"momentum": 0.9, "foreach": True}, "foreach"),
        ("SGD", {"fused": True}, "fused"),
        ("AdamW", {"fused": True}, "fused"),
        ("Adagrad", {}, "single"),
        ("Adagrad", {"foreach": True}, "foreach"),
        ("Adagrad", {"fused": True}, "fused"),
        ("RMSprop", {"centered": True}, "single"),
        ("RMSprop", {"foreach": True}, "foreach"),
    ],
)
def test_every_optimizer_records_its_path(sink: ListSink, name: str, kwargs: dict, path: str):
    _, ours_p = twin_params()
    opt = getattr(reimpl.optim, name)([{"params": ours_p[:2]}, {"params": ours_p[2:]}], **kwargs)
    for p in ours_p:
        p.grad = torch.ones_like(p)
    opt.step()
    parents = sink.parents()
    groups = sink.of_kind("optim.group")
    updates = sink.of_kind("optim.update")
    assert [parents[g[0]] for g in groups] == [sink.of_kind("optim.step")[0][0]] * 2
    assert [parents[u[0]] for u in updates] == [groups[0][0], groups[0][0], groups[1][0]]
    assert [(u[8]["param"], u[8]["path"]) for u in updates] == [(0, path), (1, path), (2, path)]
    owner = "adam.Adam" if name == "AdamW" else f"{name.lower()}.{name}"
    assert groups[0][7] == f"reimpl.optim.{owner}.step"


def test_named_groups_name_updates_and_only_params_with_grads_update(sink: ListSink) -> None:
    _, ours_p = twin_params()
    opt = reimpl.optim.SGD([(f"layer{i}", p) for i, p in enumerate(ours_p)], lr=0.1)
    ours_p[2].grad = torch.ones_like(ours_p[2])
    opt.step()
    opt.zero_grad()
    opt.state_dict()
    (update,) = sink.of_kind("optim.update")
    assert update[6] == "layer2" and update[8]["param"] == 2
    assert sink.of_kind("optim.group")[0][8]["updated"] == 1
    assert len(sink.of_kind("optim.zero_grad")) == 1
    assert len(sink.of_kind("optim.state_dict")) == 1


def test_detached_records_nothing() -> None:
    s = ListSink()
    _trace.attach(s)
    _trace.detach()
    p = _leaf()
    p.grad = torch.ones(2)
    reimpl.optim.SGD([p], lr=0.1).step()
    assert s.records == []


# --- the functional API ----------------------------------------------------------------


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw", "adagrad", "rmsprop"])
def test_functional_signatures_are_torchs(name: str) -> None:
    """Same parameter names, order, kinds and defaults as torch's functional API
    (``grad_scale``/``found_inf`` included), so a positional call means the same;
    reimpl adds only the keyword ``trace``."""
    torch_function = getattr(importlib.import_module(f"torch.optim.{name}"), name)
    theirs = inspect.signature(inspect.unwrap(torch_function))
    ours = inspect.signature(getattr(importlib.import_module(f"reimpl.optim.{name}"), name))
    described = [(n, p.kind, p.default) for n, p in ours.parameters.items() if n != "trace"]
    assert described == [(n, p.kind, p.default) for n, p in theirs.parameters.items()]


def test_torchs_swap_in_helper_works_on_a_reimpl_optimizer() -> None:
    """reimpl does not mirror ``torch.optim.swap_in_optimizer_params_and_state``:
    it only touches ``param_groups`` and ``state``, so torch's own serves."""

    def run(lib) -> tuple:
        live = [torch.ones(3, requires_grad=True)]
        opt = lib.optim.Adam(live, lr=0.1)
        live[0].grad = torch.ones(3)
        opt.step()
        swapped = torch.zeros(3, requires_grad=True)
        swapped.grad = torch.ones(3)
        state = opt.state_dict()
        with torch.optim.swap_in_optimizer_params_and_state(opt, {"w": swapped}, state):
            opt.step()
        return live[0].detach(), swapped.detach(), state["state"][0]["step"], opt.state[live[0]]

    ours, theirs = run(reimpl), run(torch)
    assert_close_tree(list(ours), list(theirs), 0.0)
    # the step updated the swapped-in weight; the live one kept its first step
    assert torch.allclose(ours[0], torch.full((3,), 0.9)) and torch.allclose(ours[1], -ours[0] / 9)
