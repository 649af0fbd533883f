"""lockstep: replica threads take turns, the same way on every run."""

from __future__ import annotations

import threading

import torch

from reimpl import nn
from reimpl.nn.modules import module as module_mod
from reimpl.nn.parallel import DataParallel, lockstep
from reimpl.nn.parallel._lockstep import Baton


def _order_of_calls(use_lockstep: bool) -> list[tuple[str, str]]:
    """(thread name, module class) at every forward entry of a 2-replica run."""
    seen: list[tuple[str, str]] = []
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    for m in model.modules():
        m.register_forward_pre_hook(
            lambda mod, args: seen.append((threading.current_thread().name, type(mod).__name__))
        )
    dp = DataParallel(model, device_ids=["sim:0", "sim:1"])
    if use_lockstep:
        with lockstep():
            dp(torch.randn(6, 4))
    else:
        dp(torch.randn(6, 4))
    return seen


def test_replicas_alternate_at_every_module():
    runs = [_order_of_calls(True) for _ in range(5)]
    assert all(r == runs[0] for r in runs)  # deterministic
    classes = [cls for _, cls in runs[0]]
    assert classes == [
        "Sequential",
        "Sequential",
        "Linear",
        "Linear",
        "ReLU",
        "ReLU",
        "Linear",
        "Linear",
    ]
    threads = [name for name, _ in runs[0]]
    assert threads == ["replica 0", "replica 1"] * 4


def test_lockstep_removes_its_hooks_and_streams():
    import sys

    before = (dict(module_mod._global_forward_pre_hooks), sys.stdout)
    with lockstep():
        with lockstep():  # re-entrant
            assert module_mod._global_forward_pre_hooks
    assert (dict(module_mod._global_forward_pre_hooks), sys.stdout) == before


def test_baton_hands_on_when_a_thread_finishes():
    baton = Baton(3)
    log: list[str] = []

    def work(i: int, steps: int) -> None:
        baton.join(i)
        try:
            for s in range(steps):
                log.append(f"{i}.{s}")
                baton.switch(i)
        finally:
            baton.leave(i)

    threads = [threading.Thread(target=work, args=(i, n)) for i, n in enumerate([1, 3, 2])]
    for t in reversed(threads):  # start order must not matter
        t.start()
    for t in threads:
        t.join()
    assert log == ["0.0", "1.0", "2.0", "1.1", "2.1", "1.2"]
