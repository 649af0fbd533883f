"""Containers against torch: each script runs on torch.nn and on reimpl.nn.

``assert_same_script`` compares what the script returns (reprs, state_dicts,
values); ``assert_raises_like_torch`` compares error types and messages.
"""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from layer_parity import (
    assert_raises_like_torch,
    assert_same_script,
    assert_same_step,
)

import reimpl.nn


def _seq(nn):
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2), nn.Tanh())


def _named(nn):
    return nn.Sequential(OrderedDict(fc=nn.Linear(3, 4), act=nn.ReLU(), out=nn.Linear(4, 2)))


# --------------------------------------------------------------------------- Sequential


@pytest.mark.parametrize(
    "script",
    [
        _seq,
        _named,
        lambda nn: (_seq(nn)[0], _seq(nn)[-1], len(_seq(nn)), list(_seq(nn))),
        lambda nn: (_seq(nn)[1:3], _seq(nn)[::-2], _named(nn)[1:], _named(nn)[-1]),
        lambda nn: _named(nn)[torch.tensor(1)],  # any __index__ works
        lambda nn: _setitem(_seq(nn), -1, nn.Sigmoid()),
        lambda nn: _delitem(_named(nn), 0),
        lambda nn: _delitem(_seq(nn), slice(1, 3)),
        lambda nn: (lambda s: (s.pop(1), s))(_seq(nn)),
        lambda nn: _seq(nn).append(nn.Dropout()),
        lambda nn: _seq(nn).insert(0, nn.Identity()).insert(-1, nn.GELU()).insert(6, nn.ReLU()),
        lambda nn: _seq(nn).extend([nn.Linear(2, 2), nn.ReLU()]),
        lambda nn: _seq(nn) + _named(nn),
        lambda nn: _iadd(_named(nn), _seq(nn)),
        lambda nn: (_seq(nn) * 2, 2 * _named(nn)),
        lambda nn: _imul(_seq(nn), 3),
        lambda nn: _own_dir(_seq(nn)),
    ],
)
def test_sequential_semantics(script) -> None:
    assert_same_script(script)


def _own_dir(c):
    """dir() hides the numeric child names but keeps the container's own methods."""
    return [n for n in dir(c) if n.isdigit() or (n in type(c).__dict__ and n[0] != "_")]


def _setitem(c, idx, m):
    c[idx] = m
    return c


def _delitem(c, idx):
    del c[idx]
    return c


def _iadd(a, b):
    a += b
    return a


def _imul(a, n):
    a *= n
    return a


def test_sequential_forward_and_grads() -> None:
    torch.manual_seed(0)
    theirs = _seq(torch.nn)
    torch.manual_seed(0)
    ours = _seq(reimpl.nn)
    assert_same_step(theirs, ours, torch.randn(5, 3))


def test_sequential_multiplication_shares_modules() -> None:
    s = _seq(reimpl.nn)
    doubled = s * 2
    assert doubled[0] is doubled[4] is s[0]
    assert len(list(doubled.parameters())) == len(list(s.parameters()))  # deduplicated


@pytest.mark.parametrize(
    ("exc", "call"),
    [
        (IndexError, lambda nn: _seq(nn)[4]),
        (IndexError, lambda nn: _seq(nn)[-5]),
        (TypeError, lambda nn: _seq(nn)["0"]),
        (IndexError, lambda nn: _setitem(_seq(nn), 9, nn.ReLU())),
        (IndexError, lambda nn: _delitem(_seq(nn), 7)),
        (IndexError, lambda nn: _seq(nn).insert(5, nn.ReLU())),
        (IndexError, lambda nn: _seq(nn).insert(-5, nn.ReLU())),
        (AssertionError, lambda nn: _seq(nn).insert(0, "relu")),
        (ValueError, lambda nn: _seq(nn) + [nn.ReLU()]),  # noqa: RUF005 (tests __add__)
        (ValueError, lambda nn: _iadd(_seq(nn), nn.ModuleList())),
        (TypeError, lambda nn: _seq(nn) * 1.5),
        (ValueError, lambda nn: _seq(nn) * 0),
        (ValueError, lambda nn: _imul(_seq(nn), -1)),
        (TypeError, lambda nn: _imul(_seq(nn), "2")),
    ],
)
def test_sequential_errors_match_torch(exc: type[Exception], call) -> None:
    assert_raises_like_torch(exc, call)


# --------------------------------------------------------------------------- ModuleList


def _ml(nn):
    return nn.ModuleList([nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 3)])


@pytest.mark.parametrize(
    "script",
    [
        _ml,
        lambda nn: (_ml(nn)[0], _ml(nn)[-1], _ml(nn)[1:], _ml(nn)[::2], len(_ml(nn))),
        lambda nn: _setitem(_ml(nn), -2, nn.Tanh()),
        lambda nn: _delitem(_ml(nn), 0),
        lambda nn: _delitem(_ml(nn), slice(None, None, 2)),
        lambda nn: (lambda m: (m.pop(-1), m))(_ml(nn)),
        lambda nn: (lambda m: (m.insert(1, nn.Sigmoid()), m))(_ml(nn)),
        lambda nn: _ml(nn).append(nn.ReLU()).extend((nn.ReLU(), nn.GELU())),
        lambda nn: _ml(nn) + [nn.Identity()],  # noqa: RUF005 (tests __add__)
        lambda nn: _iadd(_ml(nn), _ml(nn)),
        lambda nn: nn.ModuleList(),
        # repeated identical reprs are compressed: "(1-3): 3 x Linear(...)"
        lambda nn: nn.ModuleList([nn.ReLU()] + [nn.Linear(2, 2) for _ in range(3)] + [nn.ReLU()]),
        lambda nn: nn.ModuleList([_seq(nn), _seq(nn)]),
        lambda nn: _own_dir(_ml(nn)),
    ],
)
def test_module_list_semantics(script) -> None:
    assert_same_script(script)


@pytest.mark.parametrize(
    ("exc", "call"),
    [
        (IndexError, lambda nn: _ml(nn)[3]),
        (IndexError, lambda nn: _setitem(_ml(nn), -4, nn.ReLU())),
        (IndexError, lambda nn: _delitem(_ml(nn), 3)),
        (TypeError, lambda nn: _ml(nn)[1.0]),
        (TypeError, lambda nn: _ml(nn).extend(5)),
        (TypeError, lambda nn: nn.ModuleList(nn.ReLU())),
        (NotImplementedError, lambda nn: _ml(nn)(torch.zeros(1))),
    ],
)
def test_module_list_errors_match_torch(exc: type[Exception], call) -> None:
    assert_raises_like_torch(exc, call)


# --------------------------------------------------------------------------- ModuleDict


def _md(nn):
    return nn.ModuleDict({"conv": nn.Conv2d(1, 2, 3), "act": nn.ReLU(), "fc": nn.Linear(2, 2)})


@pytest.mark.parametrize(
    "script",
    [
        _md,
        lambda nn: nn.ModuleDict([("b", nn.ReLU()), ("a", nn.Linear(1, 1))]),
        lambda nn: nn.ModuleDict(OrderedDict(z=nn.Tanh(), y=nn.Linear(1, 2))),
        lambda nn: nn.ModuleDict(_md(nn)),
        lambda nn: (lambda d: (d["fc"], len(d), "act" in d, "x" in d, list(d), list(d.keys())))(
            _md(nn)
        ),
        lambda nn: (lambda d: (list(d.values()), [k for k, _ in d.items()]))(_md(nn)),
        lambda nn: _setitem(_md(nn), "extra", nn.Sigmoid()),
        lambda nn: _setitem(_md(nn), "act", nn.GELU()),  # replaces in place, keeps order
        lambda nn: _delitem(_md(nn), "conv"),
        lambda nn: (lambda d: (d.pop("act"), d))(_md(nn)),
        lambda nn: (lambda d: (d.clear(), d))(_md(nn)),
        lambda nn: (lambda d: (d.update([["new", nn.ReLU()], ("fc", nn.Tanh())]), d))(_md(nn)),
    ],
)
def test_module_dict_semantics(script) -> None:
    assert_same_script(script)


@pytest.mark.parametrize(
    ("exc", "call"),
    [
        (KeyError, lambda nn: _md(nn)["nope"]),
        (TypeError, lambda nn: nn.ModuleDict(5)),
        (TypeError, lambda nn: nn.ModuleDict([nn.ReLU()])),
        (ValueError, lambda nn: nn.ModuleDict([("a", nn.ReLU(), 3)])),
        (KeyError, lambda nn: nn.ModuleDict({"a.b": nn.ReLU()})),
        (NotImplementedError, lambda nn: _md(nn)(torch.zeros(1))),
    ],
)
def test_module_dict_errors_match_torch(exc: type[Exception], call) -> None:
    assert_raises_like_torch(exc, call)


# --------------------------------------------------------------------------- ParameterList


def _pl(nn):
    return nn.ParameterList([torch.randn(2, 3), nn.Parameter(torch.randn(3)), "tag", 7])


@pytest.mark.parametrize(
    "script",
    [
        _pl,
        lambda nn: list(_pl(nn)),
        lambda nn: (_pl(nn)[0], _pl(nn)[-2], _pl(nn)[1:3], _pl(nn)[::-1], len(_pl(nn))),
        lambda nn: _setitem(_pl(nn), 2, torch.ones(2)),  # a tensor becomes a Parameter
        lambda nn: _pl(nn).append(torch.zeros(1)).extend([torch.ones(2), None]),
        lambda nn: _iadd(_pl(nn), (torch.zeros(3),)),
        lambda nn: nn.ParameterList([torch.randn(2, requires_grad=False)]),
        lambda nn: [n for n in _pl(nn).named_parameters()],
        lambda nn: _own_dir(_pl(nn)),
    ],
)
def test_parameter_list_semantics(script) -> None:
    assert_same_script(script)


def test_parameter_list_converts_tensors_and_keeps_parameters() -> None:
    p = reimpl.nn.Parameter(torch.randn(2))
    t = torch.randn(3)
    pl = reimpl.nn.ParameterList([p, t])
    assert pl[0] is p
    assert isinstance(pl[1], reimpl.nn.Parameter) and pl[1].data_ptr() == t.data_ptr()
    assert [n for n, _ in pl.named_parameters()] == ["0", "1"]


@pytest.mark.parametrize(
    ("exc", "call"),
    [
        (IndexError, lambda nn: _pl(nn)[4]),
        (IndexError, lambda nn: _setitem(_pl(nn), -5, torch.zeros(1))),
        (TypeError, lambda nn: _pl(nn).extend(torch.zeros(3))),
        (TypeError, lambda nn: nn.ParameterList(3)),
        (RuntimeError, lambda nn: _pl(nn)(torch.zeros(1))),
    ],
)
def test_parameter_list_errors_match_torch(exc: type[Exception], call) -> None:
    assert_raises_like_torch(exc, call)


# --------------------------------------------------------------------------- ParameterDict


def _pd(nn):
    # a plain dict is added in sorted key order
    return nn.ParameterDict({"b": torch.randn(2), "a": nn.Parameter(torch.randn(1)), "c": 3})


@pytest.mark.parametrize(
    "script",
    [
        _pd,
        lambda nn: nn.ParameterDict(OrderedDict(z=torch.randn(1), y=torch.randn(2))),
        lambda nn: nn.ParameterDict([("z", torch.randn(1)), ("a", "text")]),
        lambda nn: (lambda d: (d["a"], d.get("c"), d.get("x", 5), "b" in d, len(d)))(_pd(nn)),
        lambda nn: (lambda d: (list(d), list(d.keys()), list(d.values()), list(reversed(d))))(
            _pd(nn)
        ),
        lambda nn: (lambda d: [k for k, _ in d.items()])(_pd(nn)),
        lambda nn: _setitem(_pd(nn), "new", torch.ones(2)),
        lambda nn: _delitem(_pd(nn), "b"),
        lambda nn: (lambda d: (d.pop("a"), d))(_pd(nn)),
        lambda nn: (lambda d: (d.popitem(), d))(_pd(nn)),
        lambda nn: (lambda d: (d.setdefault("a"), d.setdefault("z", torch.ones(1)), d))(_pd(nn)),
        lambda nn: (lambda d: (d.clear(), d))(_pd(nn)),
        lambda nn: (lambda d: (d.copy(), d.fromkeys(["x", "y"], torch.zeros(1))))(_pd(nn)),
        lambda nn: _pd(nn) | nn.ParameterDict({"d": torch.ones(1)}),
        lambda nn: (lambda d: (d.__ior__(nn.ParameterDict({"a": torch.ones(1)})), d))(_pd(nn)),
        lambda nn: [n for n, _ in _pd(nn).named_parameters()],
    ],
)
def test_parameter_dict_semantics(script) -> None:
    assert_same_script(script)


@pytest.mark.parametrize(
    ("exc", "call"),
    [
        (AttributeError, lambda nn: _pd(nn)["missing"]),
        (TypeError, lambda nn: _setitem(_pd(nn), 1, torch.zeros(1))),
        (TypeError, lambda nn: nn.ParameterDict(5)),
        (TypeError, lambda nn: nn.ParameterDict([3])),
        (ValueError, lambda nn: nn.ParameterDict(["abc"])),
        (KeyError, lambda nn: _delitem(_pd(nn), "missing")),
        (RuntimeError, lambda nn: _pd(nn)(torch.zeros(1))),
    ],
)
def test_parameter_dict_errors_match_torch(exc: type[Exception], call) -> None:
    assert_raises_like_torch(exc, call)


# --------------------------------------------------------------------------- nesting


def _nested(nn):
    return nn.Sequential(
        OrderedDict(
            stem=nn.Conv2d(1, 2, 3, padding=1),
            blocks=nn.ModuleList([nn.Sequential(nn.Conv2d(2, 2, 1), nn.ReLU()) for _ in range(2)]),
            heads=nn.ModuleDict({"cls": nn.Linear(2, 3), "box": nn.Linear(2, 4)}),
            scales=nn.ParameterList([torch.ones(2), torch.zeros(2)]),
            extra=nn.ParameterDict({"temp": torch.ones(1)}),
        )
    )


def test_nested_containers_state_dict_and_names() -> None:
    ours = assert_same_script(
        lambda nn: (
            _nested(nn),
            [n for n, _ in _nested(nn).named_modules()],
            [n for n, _ in _nested(nn).named_parameters()],
        )
    )
    assert list(ours[0].state_dict())[:4] == [
        "stem.weight",
        "stem.bias",
        "blocks.0.0.weight",
        "blocks.0.0.bias",
    ]


# --------------------------------------------------------------------------- random edits

EDIT = st.one_of(
    st.tuples(st.just("append")),
    st.tuples(st.just("insert"), st.integers(-6, 6)),
    st.tuples(st.just("setitem"), st.integers(-6, 6)),
    st.tuples(st.just("delitem"), st.integers(-6, 6)),
    st.tuples(
        st.just("delslice"), st.integers(-6, 6), st.integers(-6, 6), st.sampled_from([1, -1])
    ),
    st.tuples(st.just("pop"), st.integers(-6, 6)),
)


def _apply_edits(nn, kind: str, edits: list[tuple]) -> list:
    """Applies ``edits`` to a container; returns what happened, in comparable form."""
    counter = iter(range(1000))

    def fresh():
        m = nn.Identity()
        m.tag = next(counter)  # a plain attribute: identifies the module across libraries
        return m

    first = [fresh() for _ in range(3)]
    c = nn.Sequential(*first) if kind == "Sequential" else nn.ModuleList(first)
    log = []
    for op, *args in edits:
        try:
            if op == "append":
                c.append(fresh())
            elif op == "insert":
                c.insert(args[0], fresh())
            elif op == "setitem":
                c[args[0]] = fresh()
            elif op == "delitem":
                del c[args[0]]
            elif op == "delslice":
                del c[slice(*args)]
            else:
                log.append(c.pop(args[0]).tag)
        except Exception as e:
            log.append(type(e).__name__)
        log.append([(name, m.tag) for name, m in c.named_children()])
    log.append([m.tag for m in c])
    return log


@pytest.mark.parametrize("kind", ["Sequential", "ModuleList"])
@settings(max_examples=60, deadline=None)
@given(edits=st.lists(EDIT, max_size=8))
def test_random_edits_match_torch(kind: str, edits: list[tuple]) -> None:
    assert_same_script(lambda nn: _apply_edits(nn, kind, edits))
