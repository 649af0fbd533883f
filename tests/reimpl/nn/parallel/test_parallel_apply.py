"""parallel_apply: one thread per replica, torch's exception wrapping, events."""

from __future__ import annotations

import threading

import pytest
import torch

from reimpl import nn
from reimpl.devices import device_of, to_device
from reimpl.nn.parallel import parallel_apply
from reimpl.nn.parallel.parallel_apply import ExceptionWrapper, get_a_var


class Fails(nn.Module):
    """Raises ``exc`` on the replica whose input is on ``device``."""

    def __init__(self, device: str, exc: BaseException) -> None:
        super().__init__()
        self.device, self.exc = device, exc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if device_of(x) == self.device:
            raise self.exc
        return x * 2


def _run(module: nn.Module) -> list:
    xs = [torch.ones(2), to_device(torch.ones(2), "sim:1")]
    return parallel_apply([module, module], xs, None, ["sim:0", "sim:1"])


def test_outputs_in_order_on_their_devices():
    out = _run(Fails("nowhere", ValueError()))
    assert [device_of(o) for o in out] == ["cpu", "sim:1"]


def test_exception_in_a_replica_carries_torchs_message():
    with pytest.raises(ValueError) as err:
        _run(Fails("sim:1", ValueError("bad input")))
    msg = str(err.value)
    assert msg.startswith("Caught ValueError in replica 1 on device sim:1.\nOriginal Traceback")
    assert msg.rstrip().endswith("ValueError: bad input")


def test_key_error_and_unconstructible_exceptions():
    with pytest.raises(KeyError) as err:
        _run(Fails("cpu", KeyError("missing")))
    assert repr(err.value.args[0]).startswith("Caught KeyError in replica 0 on device sim:0.")

    class TwoArgs(Exception):
        def __init__(self, a: int, b: int) -> None:
            super().__init__(a, b)

    with pytest.raises(RuntimeError, match="Caught TwoArgs in replica 1 on device sim:1"):
        _run(Fails("sim:1", TwoArgs(1, 2)))


def test_wrapper_from_background_thread():
    box = []

    def work() -> None:
        try:
            raise IndexError("out")
        except IndexError:
            box.append(ExceptionWrapper(where="in worker"))

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    with pytest.raises(IndexError, match=r"Caught IndexError in worker\.\nOriginal Traceback"):
        box[0].reraise()


def test_device_taken_from_input_and_checks():
    out = parallel_apply(
        [nn.Identity(), nn.Identity()], [torch.ones(1), to_device(torch.ones(1), "sim:1")]
    )
    assert device_of(out[1]) == "sim:1"
    assert get_a_var({"a": [1, (torch.ones(1),)]}) is not None
    with pytest.raises(
        AssertionError, match="The number of modules 2 is not equal to the number of inputs 1"
    ):
        parallel_apply([nn.Identity(), nn.Identity()], [torch.ones(1)])


def test_grad_mode_reaches_the_threads():
    lin = nn.Linear(2, 2)
    with torch.no_grad():
        out = parallel_apply(
            [lin, lin], [torch.ones(1, 2), torch.ones(1, 2)], None, ["sim:0", "sim:0"]
        )
    assert not any(o.requires_grad for o in out)


def test_events_link_replicas_to_parallel_apply(sink):
    _run(Fails("nowhere", ValueError()))
    (pa,) = sink.of_kind("dp.parallel_apply")
    replicas = sorted(sink.of_kind("dp.replica"), key=lambda r: r[8]["index"])
    assert [r[1] for r in replicas] == [pa[0], pa[0]]  # linked across threads
    main = threading.get_ident()
    assert pa[2] == main and all(r[2] != main for r in replicas)
    assert [sink.threads[r[2]] for r in replicas] == [
        ("replica 0", "sim:0"),
        ("replica 1", "sim:1"),
    ]
    assert [r[8]["device"] for r in replicas] == ["sim:0", "sim:1"]
