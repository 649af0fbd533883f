"""Every LR scheduler against torch: 100 epochs of lrs (and momenta) on two param
groups, alone, inside ChainedScheduler and SequentialLR, and through a
state_dict round trip half way."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import pytest
import torch
from sinks import ListSink

import reimpl.optim
from reimpl import _trace

Build = Callable[[Any, Any], Any]  # (lr_scheduler module, optimizer) -> scheduler

SCHEDULERS: dict[str, Build] = {
    "LambdaLR": lambda m, o: m.LambdaLR(o, lambda e: 0.95**e),
    "LambdaLR-per-group": lambda m, o: m.LambdaLR(o, [lambda e: 1 / (e + 1), lambda e: 0.9**e]),
    "MultiplicativeLR": lambda m, o: m.MultiplicativeLR(o, lambda e: 0.97),
    "StepLR": lambda m, o: m.StepLR(o, step_size=7, gamma=0.5),
    "MultiStepLR": lambda m, o: m.MultiStepLR(o, milestones=[10, 30, 30, 60], gamma=0.5),
    "ConstantLR": lambda m, o: m.ConstantLR(o, factor=0.5, total_iters=20),
    "LinearLR": lambda m, o: m.LinearLR(o, start_factor=0.2, end_factor=0.9, total_iters=30),
    "ExponentialLR": lambda m, o: m.ExponentialLR(o, gamma=0.97),
    "PolynomialLR": lambda m, o: m.PolynomialLR(o, total_iters=40, power=2.0),
    "CosineAnnealingLR": lambda m, o: m.CosineAnnealingLR(o, T_max=20, eta_min=0.001),
    "CosineAnnealingWarmRestarts": lambda m, o: m.CosineAnnealingWarmRestarts(
        o, T_0=10, T_mult=2, eta_min=0.001
    ),
    "CyclicLR-triangular2": lambda m, o: m.CyclicLR(
        o, base_lr=0.01, max_lr=[0.1, 0.2], step_size_up=10, mode="triangular2"
    ),
    "CyclicLR-exp_range": lambda m, o: m.CyclicLR(
        o, base_lr=0.01, max_lr=0.1, step_size_up=6, step_size_down=9, mode="exp_range", gamma=0.99
    ),
    "OneCycleLR": lambda m, o: m.OneCycleLR(o, max_lr=[0.1, 0.2], total_steps=100),
    "OneCycleLR-3phase-linear": lambda m, o: m.OneCycleLR(
        o, max_lr=0.1, epochs=10, steps_per_epoch=10, three_phase=True, anneal_strategy="linear"
    ),
}


def chained(build: Build) -> Build:
    return lambda m, o: m.ChainedScheduler([build(m, o), m.ExponentialLR(o, gamma=0.99)])


def sequential(build: Build) -> Build:
    return lambda m, o: m.SequentialLR(
        o, [m.ConstantLR(o, factor=0.5, total_iters=10), build(m, o)], milestones=[15]
    )


MODES = {"alone": lambda b: b, "chained": chained, "sequential": sequential}


def _momenta(opt: Any) -> list[Any]:
    return [g.get("momentum", g.get("betas", (None,))[0]) for g in opt.param_groups]


def lr_sequence(
    lib: Any,
    build: Build,
    epochs: int = 100,
    roundtrip_at: int | None = None,
    optimizer: str = "SGD",
    metric: Callable[[int], float] | None = None,
) -> list[tuple]:
    """Last lrs, group lrs and momenta after every epoch of ``lib``'s scheduler.

    ``roundtrip_at`` rebuilds optimizer and scheduler from their state dicts at
    that epoch, the way a resumed run does (scheduler first, then optimizer).
    """
    params = [torch.zeros(2, requires_grad=True), torch.zeros(3, requires_grad=True)]
    extra = {"momentum": 0.9} if optimizer == "SGD" else {}

    def make() -> tuple[Any, Any]:
        groups = [{"params": params[:1]}, {"params": params[1:], "lr": 0.05}]
        opt = getattr(lib.optim, optimizer)(groups, lr=0.1, **extra)
        return opt, build(lib.optim.lr_scheduler, opt)

    opt, sched = make()
    seq = []
    for epoch in range(epochs):
        opt.step()
        if metric is None:
            sched.step()
        else:
            sched.step(metric(epoch))
        seq.append((list(sched.get_last_lr()), [g["lr"] for g in opt.param_groups], _momenta(opt)))
        if epoch == roundtrip_at:
            sched_state, opt_state = sched.state_dict(), opt.state_dict()
            opt, sched = make()
            sched.load_state_dict(sched_state)
            opt.load_state_dict(opt_state)
    return seq


@pytest.mark.parametrize("roundtrip", [False, True], ids=["straight", "roundtrip"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", SCHEDULERS)
def test_lr_sequence_matches_torch(name: str, mode: str, roundtrip: bool) -> None:
    build = MODES[mode](SCHEDULERS[name])
    at = 50 if roundtrip else None
    assert lr_sequence(reimpl, build, roundtrip_at=at) == lr_sequence(torch, build, roundtrip_at=at)


@pytest.mark.parametrize("name", ["OneCycleLR", "CyclicLR-triangular2"])
def test_momentum_cycles_betas_of_adam(name: str) -> None:
    build = SCHEDULERS[name]
    assert lr_sequence(reimpl, build, optimizer="Adam") == lr_sequence(
        torch, build, optimizer="Adam"
    )


def _plateau_metric(epoch: int) -> float:
    return max(0.2, 1.0 - 0.05 * epoch) + 0.001 * (epoch % 3)


@pytest.mark.parametrize("roundtrip", [False, True], ids=["straight", "roundtrip"])
@pytest.mark.parametrize(
    "kwargs",
    [
        {"patience": 3, "cooldown": 2, "factor": 0.5, "min_lr": [0.001, 0.002]},
        {"mode": "max", "threshold_mode": "abs", "threshold": 0.01, "patience": 2},
    ],
)
def test_reduce_lr_on_plateau_matches_torch(kwargs: dict, roundtrip: bool) -> None:
    def build(m, o):
        return m.ReduceLROnPlateau(o, **kwargs)

    at = 50 if roundtrip else None
    ours = lr_sequence(reimpl, build, metric=_plateau_metric, roundtrip_at=at)
    assert ours == lr_sequence(torch, build, metric=_plateau_metric, roundtrip_at=at)


@pytest.mark.parametrize(
    "name",
    [
        "StepLR",
        "MultiStepLR",
        "ConstantLR",
        "LinearLR",
        "ExponentialLR",
        "PolynomialLR",
        "CosineAnnealingLR",
        "CosineAnnealingWarmRestarts",
        "LambdaLR",
    ],
)
def test_explicit_epochs_use_the_closed_form_like_torch(name: str) -> None:
    results = []
    for lib in (torch, reimpl):
        p = torch.zeros(2, requires_grad=True)
        opt = lib.optim.SGD([p], lr=0.1)
        sched = SCHEDULERS[name](lib.optim.lr_scheduler, opt)
        out = []
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for epoch in (3, 10, 25, 7, 40):
                opt.step()
                sched.step(epoch)
                out.append(sched.get_last_lr())
        results.append((out, [str(w.message) for w in caught]))
    assert results[1] == results[0]


def _warnings_of(lib: Any, scenario: str) -> list[str]:
    p = torch.zeros(2, requires_grad=True)
    opt = lib.optim.SGD([p], lr=0.1)
    sched = lib.optim.lr_scheduler.StepLR(opt, step_size=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if scenario == "out-of-order":
            sched.step()
            opt.step()
        elif scenario == "overridden":
            opt.step = lambda *a, **k: None
            sched.step()
        elif scenario == "in-order":
            opt.step()
            sched.step()
        elif scenario == "get_lr-outside-step":
            sched.get_lr()
    return [str(w.message) for w in caught]


@pytest.mark.parametrize(
    "scenario", ["out-of-order", "overridden", "in-order", "get_lr-outside-step"]
)
def test_warnings_match_torch(scenario: str) -> None:
    ours = _warnings_of(reimpl, scenario)
    assert ours == _warnings_of(torch, scenario)
    assert bool(ours) == (scenario != "in-order")


def test_step_wrapping_keeps_hooks_and_result() -> None:
    """The scheduler's wrapper sits on the instance, over the class's hooked step."""
    p = torch.ones(2, requires_grad=True)
    opt = reimpl.optim.SGD([p], lr=0.1)
    reimpl.optim.lr_scheduler.StepLR(opt, step_size=1)
    calls = []
    opt.register_step_post_hook(lambda o, a, k: calls.append("post"))
    assert opt.step(lambda: 3.0) == 3.0
    assert calls == ["post"] and opt._opt_called is True


@pytest.mark.parametrize(
    "build",
    [
        (lambda m, o: m.StepLR(object(), 2)),
        (lambda m, o: m.StepLR(o, 2, last_epoch=5)),
        (lambda m, o: m.ConstantLR(o, factor=2.0)),
        (lambda m, o: m.LinearLR(o, start_factor=0.0)),
        (lambda m, o: m.SequentialLR(o, [m.StepLR(o, 2)], milestones=[3])),
        (lambda m, o: m.ChainedScheduler([])),
        (lambda m, o: m.ChainedScheduler([m.ReduceLROnPlateau(o)])),
        (lambda m, o: m.OneCycleLR(o, max_lr=0.1)),
        (lambda m, o: m.CosineAnnealingWarmRestarts(o, T_0=0)),
        (lambda m, o: m.CyclicLR(o, 0.1, 1.0, mode="bogus")),
        (lambda m, o: m.ReduceLROnPlateau(o, factor=1.0)),
        (lambda m, o: m.LambdaLR(o, [lambda e: 1.0, lambda e: 1.0])),
    ],
)
def test_constructor_errors_match_torch(build: Build) -> None:
    def attempt(lib: Any) -> tuple[type, str]:
        opt = lib.optim.SGD([torch.zeros(2, requires_grad=True)], lr=0.1)
        try:
            build(lib.optim.lr_scheduler, opt)
        except Exception as e:
            return type(e), str(e).replace("reimpl.", "torch.")
        raise AssertionError("no error")

    assert attempt(reimpl) == attempt(torch)


def test_tensor_lr_is_updated_in_place_like_torch() -> None:
    def run(lib: Any) -> list:
        lr = torch.tensor(0.1, dtype=torch.float64)
        p = torch.ones(2, dtype=torch.float64, requires_grad=True)
        opt = lib.optim.SGD([p], lr=lr)
        sched = lib.optim.lr_scheduler.MultiStepLR(opt, milestones=[2, 4], gamma=0.5)
        out = []
        for _ in range(6):
            p.grad = torch.ones(2, dtype=torch.float64)
            opt.step()
            sched.step()
            assert opt.param_groups[0]["lr"] is lr  # filled in place, never replaced
            out.append((lr.item(), p.detach().tolist()))
        return out

    assert run(reimpl) == run(torch)


def test_reimpl_scheduler_drives_a_torch_optimizer() -> None:
    def run(sched_lib: Any) -> list:
        opt = torch.optim.SGD([torch.zeros(2, requires_grad=True)], lr=0.1)
        sched = sched_lib.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=10)
        out = []
        for _ in range(30):
            opt.step()
            sched.step()
            out.append(sched.get_last_lr())
        return out

    assert run(reimpl) == run(torch)


def test_sched_step_events_carry_old_and_new_lr() -> None:
    sink = ListSink()
    opt = reimpl.optim.SGD([torch.zeros(2, requires_grad=True)], lr=0.1)
    step = reimpl.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    expo = reimpl.optim.lr_scheduler.ExponentialLR(opt, gamma=0.9)
    sched = reimpl.optim.lr_scheduler.ChainedScheduler([step, expo])
    _trace.attach(sink)
    try:
        opt.step()
        sched.step()
    finally:
        _trace.detach()
    records = sink.of_kind("sched.step")
    assert [r[6] for r in records] == ["StepLR.step", "ExponentialLR.step", "ChainedScheduler.step"]
    parents = sink.parents()
    assert parents[records[0][0]] == parents[records[1][0]] == records[2][0]
    assert (records[0][8]["old_lr"], records[0][8]["new_lr"]) == ([0.1], [0.05])
    assert (records[1][8]["old_lr"], records[1][8]["new_lr"]) == ([0.05], [pytest.approx(0.045)])
    assert (records[2][8]["old_lr"], records[2][8]["new_lr"]) == ([0.1], [pytest.approx(0.045)])
    assert records[0][8]["last_epoch"] == 1 and records[0][8]["initial"] is False
    assert records[0][7] == "reimpl.optim.lr_scheduler.LRScheduler.step"


# --- OneCycleLR state saved by an older torch ---------------------------------------


def _legacy_one_cycle_state(anneal: str) -> dict[str, Any]:
    """A OneCycleLR state dict in the old layout, built from torch itself (as torch's
    own test builds it): no ``_anneal_func_type``; the function in ``anneal_func``."""
    opt = torch.optim.SGD([torch.zeros(2, requires_grad=True)], lr=0.1, momentum=0.9)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1.0, total_steps=30)
    for _ in range(10):
        opt.step()
        sched.step()
    state = sched.state_dict()
    del state["_anneal_func_type"]
    state["anneal_func"] = getattr(torch.optim.lr_scheduler.OneCycleLR, f"_annealing_{anneal}")
    return state


def _continue_one_cycle(lib: Any, state: dict[str, Any], restored: bool) -> list[tuple]:
    """Loads ``state`` and runs the 20 remaining steps: (lr, momentum) after each.

    ``restored`` mimics a scheduler object unpickled from an older torch, which
    never had ``_anneal_func_type``; otherwise a fresh (cosine) scheduler loads it.
    """
    opt = lib.optim.SGD([torch.zeros(2, requires_grad=True)], lr=0.1, momentum=0.9)
    sched = lib.optim.lr_scheduler.OneCycleLR(opt, max_lr=1.0, total_steps=30)
    if restored:
        del sched._anneal_func_type
    sched.load_state_dict(dict(state))
    seq = []
    for _ in range(20):
        opt.step()
        sched.step()
        seq.append((sched.get_last_lr()[0], opt.param_groups[0]["momentum"]))
    return seq


@pytest.mark.parametrize("restored", [True, False], ids=["restored-object", "fresh-scheduler"])
def test_one_cycle_loads_an_older_torchs_state_like_torch(restored: bool) -> None:
    state = _legacy_one_cycle_state("linear")
    ours = _continue_one_cycle(reimpl, state, restored)
    assert ours == _continue_one_cycle(torch, state, restored)
    # a restored object anneals with the stored (linear) function; a fresh one keeps
    # the cosine its constructor chose, exactly as torch does
    # (the step after the load is 11 of the phase from step 8 to 29, max_lr to min_lr)
    linear = torch.optim.lr_scheduler.OneCycleLR._annealing_linear(1.0, 1.0 / 25 / 1e4, 3 / 21)
    assert (ours[0][0] == pytest.approx(linear, rel=1e-12)) == restored


def _warmup_of(lib: Any) -> tuple[list, list[str], str, dict]:
    """A scheduler written the old way, on ``_LRScheduler``: lrs, warnings, name, state."""

    class Warmup(lib.optim.lr_scheduler._LRScheduler):
        def __init__(self, optimizer: Any, warmup: int) -> None:
            self.warmup = warmup
            super().__init__(optimizer)

        def get_lr(self) -> list[float]:
            scale = min(1.0, (self.last_epoch + 1) / self.warmup)
            return [base * scale for base in self.base_lrs]

    p = torch.zeros(2, requires_grad=True)
    opt = lib.optim.SGD([p], lr=0.1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sched = Warmup(opt, warmup=4)
        lrs = []
        for _ in range(6):
            sched.step()  # before opt.step(): the ordering warning, once
            opt.step()
            lrs.append(sched.get_last_lr())
    state = {k: v for k, v in sched.state_dict().items() if k != "warmup"}
    base = Warmup.__mro__[1]
    return lrs, [str(w.message) for w in caught], base.__name__, state


def test_deprecated_lr_scheduler_base_behaves_as_torchs() -> None:
    """torch 2.13 keeps _LRScheduler as a bare subclass of LRScheduler: same lrs,
    the same warnings (only LRScheduler's own), same name, outside __all__."""
    ours, theirs = _warmup_of(reimpl), _warmup_of(torch)
    assert ours == theirs
    assert ours[2] == "_LRScheduler" and len(ours[1]) == 1
    from reimpl.optim import lr_scheduler

    assert issubclass(lr_scheduler._LRScheduler, lr_scheduler.LRScheduler)
    assert "_LRScheduler" not in lr_scheduler.__all__
    assert "_LRScheduler" not in torch.optim.lr_scheduler.__all__
