"""``collective.*`` spans: which group, which call of that group, what moved.

Every rank of a process group calls that group's collectives in the same
order (that is what makes them collective), so the pair (group, sequence
number) names one synchronisation point on every rank. Each span carries:

* ``group``: ``"world"`` for the default group, else the group's global
  ranks (``"0,1"``), so the id reads the same on every rank and host;
* ``seq``: this process's count of the group's collectives, from 0;
* ``op``, ``sizes`` (the shape of each tensor this rank contributed),
  ``dtype``, ``bytes``, ``backend``, ``world_size``;
* ``wait_ns``: the time inside the call. ``torchscope merge`` replaces it
  with the time this rank waited for the slowest one, from the matched spans
  of every rank.

A collective still running is kept in ``in_flight`` (thread id -> span), so
a recorder terminated while this rank blocks in it (a peer died) can still
write it: the last collective a rank reached is what tells a hang apart.

The sequence numbers restart when the default group is created anew
(``destroy_process_group`` then ``init_process_group``). torchscope's own
clock exchange goes around these spans, so it never shifts the numbering.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from threading import get_ident
from time import perf_counter_ns
from typing import Any

import torch
import torch.distributed as dist

from reimpl import _trace

__all__ = ["collective", "cut_in_flight", "group_id", "in_flight", "next_seq"]

in_flight: dict[int, Any] = {}
"""Thread id -> the ``collective.*`` span it is blocked in (a ``_trace._Span``)."""

after: list[Callable[[str, int], None]] = []
"""Called with (group, seq) once a traced collective has returned, outside its
span: every rank reaches the same point, so a recorder can exchange
something with all of them there (tracer/distributed/rank.py re-estimates
its clock every so many collectives)."""

_seq: dict[str, int] = {}
# The default group the numbers belong to, held (not its id(), which a new one may reuse).
_world: Any = None


def group_id(process_group: Any = None) -> str:
    """``"world"`` for the default group, else its global ranks joined by commas."""
    world = dist.group.WORLD
    if process_group is None or process_group is world:
        return "world"
    try:
        return ",".join(map(str, dist.get_process_group_ranks(process_group)))
    except (RuntimeError, ValueError, KeyError):  # not registered with c10d
        name = getattr(process_group, "group_name", None)
        return str(name) if name else f"pg@{id(process_group):x}"


def next_seq(group: str) -> int:
    """The next sequence number of ``group`` in this process (0, 1, ...)."""
    global _world
    world = dist.group.WORLD if dist.is_initialized() else None
    if world is not _world:  # a new default group: a new numbering
        _seq.clear()
        _world = world
    seq = _seq.get(group, 0)
    _seq[group] = seq + 1
    return seq


def collective(
    op: str,
    run: Callable[[], Any],
    tensors: Sequence[torch.Tensor],
    process_group: Any = None,
    *,
    name: str | None = None,
    func: str | None = None,
    world_size: int | None = None,
) -> Any:
    """Runs one blocking collective inside a ``collective.<op>`` span.

    ``tensors``: what this rank contributes (its input). Untraced, this is
    ``run()`` and nothing else.
    """
    if _trace.sink is None:
        return run()
    group = group_id(process_group)
    first = tensors[0] if tensors else None
    span = _trace.span(
        f"collective.{op}",
        name or op,
        func=func or _trace._caller_func(),
        group=group,
        seq=next_seq(group),
        op=op,
        sizes=[list(t.shape) for t in tensors],
        dtype=str(first.dtype).removeprefix("torch.") if first is not None else None,
        bytes=sum(t.numel() * t.element_size() for t in tensors),
        backend=str(dist.get_backend(process_group)),
        world_size=dist.get_world_size(process_group) if world_size is None else world_size,
    )
    tid = get_ident()
    with span as sp:
        in_flight[tid] = sp
        t0 = perf_counter_ns()
        try:
            result = run()
        finally:
            in_flight.pop(tid, None)
            sp.set(wait_ns=perf_counter_ns() - t0)
    for listener in after:
        listener(group, sp.attrs["seq"])
    return result


class _Discard:
    """Where a span written early goes when it closes after all: nowhere."""

    @staticmethod
    def append(record: tuple) -> None:
        """Drops the record (it was written already)."""


def cut_in_flight(reason: str) -> list[tuple]:
    """Records of the collectives still running, ended now and marked ``interrupted``.

    The spans are disarmed: if a call returns after all, it writes nothing twice.
    """
    now = perf_counter_ns()
    out = []
    for tid, sp in list(in_flight.items()):
        attrs = dict(sp.attrs or {}, interrupted=reason, wait_ns=now - sp.t0)
        out.append((sp.id, sp.link, tid, sp.t0, now, sp.kind, sp.name, sp.func, attrs))
        sp._sink = _Discard
    return out
