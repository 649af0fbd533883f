"""The spans nn.Module's cold paths leave when a recorder is attached: one per
call on the root (``_apply`` and the conversions on it, ``train``/``eval``,
``state_dict``, ``load_state_dict``, ``apply``), none per submodule, none
detached; and the traced calls still do what torch's do."""

from __future__ import annotations

import pytest
import torch
from sinks import ListSink
from twins import R, T

from reimpl import _trace

X = torch.randn(5, 3)
COLD_KINDS = (
    "module.apply_fn",
    "module.train",
    "module.state_dict",
    "module.load_state_dict",
    "module.apply",
)
NET_TENSORS = 10  # 7 parameters, 3 buffers (one buffer is None)
NET_MODULES = 8  # Net, first, block, block.lin, block.act, stat, shared, head
NET_KEYS = 9  # state_dict: 7 parameters, 2 persistent buffers


def only(sink: ListSink, kind: str) -> dict:
    """The attributes of the one record of ``kind``; fails if there are more."""
    recs = sink.of(kind)
    assert len(recs) == 1, [r[6] for r in recs]
    _sid, link, _tid, t0, t1, _kind, name, func, attrs = recs[0]
    assert link == 0 and t0 <= t1 and name == "Net"
    assert func.startswith("reimpl.nn.modules.module.Module.")
    return attrs


def test_double_leaves_one_apply_span_for_the_tree(sink: ListSink) -> None:
    m = R.Net()
    assert m.double() is m
    attrs = only(sink, "module.apply_fn")
    assert attrs["fn"] == "Module.double.<locals>.<lambda>"
    assert attrs["tensors"] == NET_TENSORS
    assert sink.of("module.apply_fn")[0][7] == "reimpl.nn.modules.module.Module._apply"
    assert m.first.weight.dtype == torch.float64 and m.stat.count.dtype == torch.long


def test_to_counts_gradients_too(sink: ListSink) -> None:
    m = R.Net()
    m(X).sum().backward()
    sink.records.clear()
    m.to(torch.float64)
    attrs = only(sink, "module.apply_fn")
    assert attrs["fn"] == "Module.to.<locals>.convert"
    assert attrs["tensors"] == NET_TENSORS + 7  # and the 7 parameters' grads
    assert m.head.weight.grad.dtype == torch.float64


@pytest.mark.parametrize("convert", ["float", "half", "bfloat16", "cpu"])
def test_each_conversion_goes_through_one_apply_span(sink: ListSink, convert: str) -> None:
    getattr(R.Net(), convert)()
    assert only(sink, "module.apply_fn")["fn"] == f"Module.{convert}.<locals>.<lambda>"


def test_train_and_eval_leave_one_span_with_the_mode(sink: ListSink) -> None:
    m = R.Net()
    m.eval()
    assert only(sink, "module.train") == {"mode": False, "modules": NET_MODULES}
    assert not any(x.training for x in m.modules())
    sink.records.clear()
    m.train()
    assert only(sink, "module.train") == {"mode": True, "modules": NET_MODULES}
    assert all(x.training for x in m.modules())


def test_state_dict_leaves_one_span_with_the_key_count(sink: ListSink) -> None:
    m = R.Net()
    sd = m.state_dict()
    assert only(sink, "module.state_dict") == {"keep_vars": False, "keys": NET_KEYS}
    assert list(sd) == list(T.Net().state_dict())  # the same keys as torch's


def test_load_state_dict_counts_missing_and_unexpected(sink: ListSink) -> None:
    m = R.Net()
    sd = R.Net().state_dict()
    sink.records.clear()
    assert m.load_state_dict(sd) == ([], [])  # strict, all keys match
    attrs = only(sink, "module.load_state_dict")
    assert attrs == {"strict": True, "keys": NET_KEYS, "missing": 0, "unexpected": 0}

    sink.records.clear()
    del sd["head.bias"]
    sd["extra"] = torch.zeros(1)
    result = m.load_state_dict(sd, strict=False)
    assert result.missing_keys == ["head.bias"] and result.unexpected_keys == ["extra"]
    attrs = only(sink, "module.load_state_dict")
    assert attrs == {"strict": False, "keys": NET_KEYS, "missing": 1, "unexpected": 1}


def test_strict_load_failure_still_records_the_counts(sink: ListSink) -> None:
    m = R.Net()
    sd = m.state_dict()
    del sd["first.weight"]
    sink.records.clear()
    with pytest.raises(RuntimeError, match="Missing key"):
        m.load_state_dict(sd)
    assert only(sink, "module.load_state_dict")["missing"] == 1


def test_apply_leaves_one_span_counting_the_modules(sink: ListSink) -> None:
    seen = []
    m = R.Net()
    assert m.apply(seen.append) is m
    attrs = only(sink, "module.apply")
    assert attrs == {"fn": "list.append", "modules": NET_MODULES}
    assert len(seen) == NET_MODULES and seen[-1] is m


def test_a_child_call_is_its_own_root(sink: ListSink) -> None:
    m = R.Net()
    m.block.double()
    recs = sink.of("module.apply_fn")
    assert len(recs) == 1 and recs[0][6] == "Block" and recs[0][8]["tensors"] == 2


def test_a_failing_apply_records_the_error_and_reopens(sink: ListSink) -> None:
    m = R.Net()

    def boom(t: torch.Tensor) -> torch.Tensor:
        raise ValueError("no")

    with pytest.raises(ValueError, match="no"):
        m._apply(boom)
    attrs = sink.of("module.apply_fn")[0][8]
    assert attrs["error"] == "ValueError: no" and attrs["tensors"] == 1
    m.double()  # the kind was closed: the next root call has its span
    assert len(sink.of("module.apply_fn")) == 2


def test_detached_emits_nothing() -> None:
    s = ListSink()
    _trace.attach(s)
    _trace.detach()  # s saw the attach; nothing after the detach reaches it
    m = R.Net()
    m.double()
    m.eval()
    m.train()
    m.load_state_dict(m.state_dict())
    m.apply(lambda _: None)
    assert not any(r[5] in COLD_KINDS for r in s.records)
    assert m.first.weight.dtype == torch.float64
