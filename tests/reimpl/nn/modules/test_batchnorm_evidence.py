"""A traced BatchNorm forward records its evidence only when its state changes.

``_evidence`` skips both records while one key repeats; every part of the key
must still bring the records back when it changes, on reimpl's layers and on
torch's (the torch target's seam calls the same helper).
"""

from __future__ import annotations

import torch

from reimpl import _trace
from reimpl import nn as rnn
from tests.sinks import ListSink
from tracer.targets.torch.attach import attach


def kinds(sink: ListSink) -> list[str]:
    out = [r[5] for r in sink.records if r[5] in ("bn.forward", "bn.running_stats")]
    sink.records.clear()
    return out


def changes(layer, x: torch.Tensor) -> list[tuple[str, list[str]]]:
    """What each step of a loop that changes one thing at a time records."""
    sink = ListSink()
    _trace.attach(sink)
    seen = []
    try:
        for what, run in [
            ("first", lambda: layer(x)),
            ("steady", lambda: [layer(x) for _ in range(3)]),
            ("batch", lambda: layer(torch.cat([x, x]))),
            ("batch again", lambda: layer(torch.cat([x, x]))),
            ("no_grad", lambda: torch.no_grad()(layer)(x)),
            ("inference_mode", lambda: torch.inference_mode()(layer)(x)),
            ("eval", lambda: layer.eval()(x)),
            ("eval again", lambda: layer(x)),
            ("train", lambda: layer.train()(x)),
            ("momentum", lambda: (setattr(layer, "momentum", 0.5), layer(x))),
        ]:
            run()
            seen.append((what, kinds(sink)))
        other = ListSink()  # a new recording records every state afresh
        _trace.attach(other)
        layer(x)
        seen.append(("new sink", kinds(other)))
    finally:
        _trace.detach()
    return seen


EXPECTED = [
    ("first", ["bn.forward", "bn.running_stats"]),
    ("steady", []),
    ("batch", ["bn.forward"]),
    ("batch again", []),
    ("no_grad", ["bn.forward"]),
    ("inference_mode", ["bn.forward"]),
    ("eval", ["bn.running_stats"]),
    ("eval again", []),
    ("train", ["bn.forward", "bn.running_stats"]),
    ("momentum", ["bn.running_stats"]),
    ("new sink", ["bn.forward", "bn.running_stats"]),
]


def test_reimpl_layers_record_each_change_once() -> None:
    assert changes(rnn.BatchNorm1d(3), torch.randn(4, 3)) == EXPECTED


def test_torch_layers_record_the_same_under_the_torch_target() -> None:
    detach = attach()
    try:
        assert changes(torch.nn.BatchNorm1d(3), torch.randn(4, 3)) == EXPECTED
    finally:
        detach()
