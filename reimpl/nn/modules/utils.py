"""Argument normalisers shared by conv and pooling layers.

Mirrors ``torch/nn/modules/utils.py``. Leaves out ``_list_with_default`` and
``consume_prefix_in_state_dict_if_present`` (no layer here needs them).
"""

from __future__ import annotations

import collections.abc
from collections.abc import Callable
from itertools import repeat
from typing import Any

from ..._trace import mirrors

__all__: list[str] = []


@mirrors("torch.nn.modules.utils._ntuple")
def _ntuple(n: int, name: str = "parse") -> Callable[[Any], tuple]:
    """Builds ``_pair`` and friends: an int becomes an n-tuple, an iterable a tuple."""

    def parse(x: Any) -> tuple:
        if isinstance(x, collections.abc.Iterable):
            return tuple(x)
        return tuple(repeat(x, n))

    parse.__name__ = name
    return parse


_single = _ntuple(1, "_single")
_pair = _ntuple(2, "_pair")
_triple = _ntuple(3, "_triple")
_quadruple = _ntuple(4, "_quadruple")


@mirrors("torch.nn.modules.utils._reverse_repeat_tuple")
def _reverse_repeat_tuple(t: tuple, n: int) -> tuple:
    """Reverses ``t`` and repeats each element ``n`` times.

    Conv padding is given first-dim-first, but ``F.pad`` wants last-dim-first
    pairs: ``(1, 2)`` becomes ``(2, 2, 1, 1)``.
    """
    return tuple(x for x in reversed(t) for _ in range(n))
