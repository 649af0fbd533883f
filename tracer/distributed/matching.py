"""Collectives matched across ranks by (group, sequence number), and who is missing.

Every rank of a group calls the group's collectives in the same order, so
the spans sharing ``(group, seq)`` (``reimpl/_collectives.py``) are one
synchronisation point. A collective cannot finish before its last rank
arrives: each rank's *wait* there is ``last arrival - own arrival`` (on rank
0's timeline, bounded by the span itself), and the rank that arrived last is
the one the others waited for. A point that fewer ranks reached than the
group has is where a run stopped or diverged.

Everything here is per collective and per rank: a run of R ranks and C
collectives holds R x C small tuples while merging, never spans.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from tracer.file.blocks import Block

MAX_LISTED = 64  # ranks named one by one in a span's attributes; beyond, a count


@dataclass
class Arrival:
    """One rank's span of one collective (times on rank 0's timeline)."""

    key: tuple[int, int, int]  # (input, part, span id): where to write the result
    rank: int
    group: str
    seq: int
    op: str
    name: str
    start: int
    end: int
    world_size: int | None
    interrupted: str | None = None


@dataclass
class Matches:
    """The result: per-span attributes to add, and the run's summary."""

    attrs: dict[tuple[int, int, int], dict] = field(default_factory=dict)
    last: dict[int, Arrival] = field(default_factory=dict)  # rank -> last collective reached
    points: int = 0
    complete: int = 0
    incomplete: list[dict] = field(default_factory=list)


def _group_ranks(group: str, world: int | None) -> list[int] | None:
    """The global ranks of a group id (``"world"``, ``"0,2,4"``)."""
    if group == "world":
        return list(range(world)) if world else None
    try:
        return [int(r) for r in group.split(",")]
    except ValueError:
        return None


def arrivals(
    block: Block, strings: np.ndarray, rank: int, where: int, starts: np.ndarray
) -> list[Arrival]:
    """The collective spans of one block (``where``: the input's index; ``starts``:
    the block's start times on rank 0's timeline)."""
    codes = [i for i, s in enumerate(strings) if s is not None and str(s).startswith("collective.")]
    rows = np.flatnonzero(np.isin(block.kinds, codes))
    out = []
    for row in rows.tolist():
        slot = int(block.attr_index[row]) if block.attr_index is not None else -1
        attrs = block.attrs[slot] if slot >= 0 and block.attrs else {}
        group, seq = attrs.get("group"), attrs.get("seq")
        if not isinstance(group, str) or not isinstance(seq, int):
            continue  # recorded before collectives were numbered: nothing to match on
        start = int(starts[row])
        world = attrs.get("world_size")
        out.append(
            Arrival(
                (where, block.part, int(block.ids[row])),
                rank,
                group,
                seq,
                str(attrs.get("op") or strings[block.kinds[row]]),
                str(strings[block.names[row]]),
                start,
                start + int(block.durs[row]),
                world if isinstance(world, int) else None,
                attrs.get("interrupted"),
            )
        )
    return out


def match(found: list[Arrival], world_size: int | None) -> Matches:
    """Groups arrivals by (group, seq); each span gets its wait and its peers."""
    points: dict[tuple[str, int], list[Arrival]] = defaultdict(list)
    out = Matches()
    for a in found:
        points[(a.group, a.seq)].append(a)
        last = out.last.get(a.rank)
        if last is None or a.start > last.start:
            out.last[a.rank] = a
    for (group, seq), present in sorted(points.items()):
        expected = _group_ranks(group, world_size or present[0].world_size)
        ranks = sorted({a.rank for a in present})
        missing = sorted(set(expected or ranks) - set(ranks))
        finished = [a for a in present if a.interrupted is None]
        last_in = max(present, key=lambda a: a.start)
        out.points += 1
        if missing or len(finished) < len(present):
            out.incomplete.append(
                {"group": group, "seq": seq, "op": present[0].op, "reached": ranks,
                 "missing": missing[:MAX_LISTED], "missing_count": len(missing)}
            )  # fmt: skip
        else:
            out.complete += 1
        for a in present:
            extra = {
                "wait_ns": max(0, min(last_in.start - a.start, a.end - a.start)),
                "call_ns": a.end - a.start,
                "last_rank": last_in.rank,
                "arrival": sum(1 for b in present if b.start < a.start),
                "peers": len(ranks),
                "expected": len(expected) if expected else len(ranks),
            }
            if missing:
                extra["missing"] = missing if len(missing) <= MAX_LISTED else len(missing)
            out.attrs[a.key] = extra
    return out
