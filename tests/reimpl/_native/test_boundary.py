"""reimpl/_native: placing stamped records among a sink's records, and one stamp's logic."""

from __future__ import annotations

import pytest
import torch

from reimpl import _native

STAMPS = _native.load()
needs_native = pytest.mark.skipif(STAMPS is None, reason="native stamp unavailable here")

ENTRY = ("lin", (("cls", "Linear"), ("path", "lin")), "Linear")


def rec(sid: int, tid: int, start: int, end: int, name: str = "x") -> tuple:
    return (sid, 0, tid, start, end, "k", name, "f", None)


def marker(tid: int) -> tuple:
    return (0, 0, tid, 0, 0, "thread", None, None, None)


def test_stamped_records_go_between_their_threads_records_by_end_time() -> None:
    records = [rec(5, 1, 50, 60), rec(7, 2, 10, 95), marker(2), rec(1, 1, 0, 100)]
    stamped = [rec(6, 1, 61, 70, "a"), rec(3, 1, 40, 99, "b"), rec(9, 2, 96, 97, "c")]
    out = _native.in_close_order(records, stamped)
    # thread 1: 60, then a (70) and b (99), then the enclosing step (100);
    # thread 2: c closed after the record (95) and its marker
    assert [r[0] for r in out] == [5, 7, 0, 6, 3, 1, 9]


def test_stamped_records_alone_and_none() -> None:
    stamped = [rec(2, 1, 0, 5)]
    assert _native.in_close_order([], stamped) == stamped
    assert _native.in_close_order(stamped, []) == stamped


@needs_native
def test_take_keeps_records_that_were_there_and_merges_stamps() -> None:
    """Records in the buffer when the drain starts closed before its cut: all go."""
    STAMPS.reset()
    records = [rec(1, 1, 0, 1), rec(2, 1, 0, 2)]
    assert STAMPS.take(records) == (records, 2)
    assert STAMPS.take(records, final=True) == (records, 2)


@needs_native
def test_link_skips_what_the_python_hook_skips() -> None:
    """No stamp for an output without grad_fn, nor for a module returning its input."""
    x = torch.randn(2, 2, requires_grad=True)
    STAMPS.link(x, (x,), ENTRY)  # a leaf: nothing to hook
    y = x * 2
    STAMPS.link(y, (y,), ENTRY)  # Identity: output is input
    STAMPS.link((), (y,), ENTRY)  # an empty tuple
    with torch.no_grad():
        STAMPS.link(x * 2, (y,), ENTRY)
    STAMPS.reset()
    STAMPS.enable(True)
    try:
        y.sum().backward()
        assert STAMPS.pending() == 0
        z = x * 3
        STAMPS.link(z, (x,), ENTRY)  # input is a leaf: the span closes when backward ends
        z.sum().backward()
        assert STAMPS.pending() == 1
        (r,) = STAMPS.take([], final=True)[0]
        assert r[5:] == ("module.backward", "lin", STAMPS.func, ENTRY[1]) and r[3] <= r[4]
    finally:
        STAMPS.enable(False)
        STAMPS.reset()
