"""Each rank's clock against rank 0's, estimated over the process group itself.

Ranks on one host share ``perf_counter_ns`` (CLOCK_MONOTONIC); ranks on
different hosts do not, and their monotonic clocks may be hours apart. At
process-group start every rank ``r > 0`` runs a few round trips with rank 0
over the group (point-to-point send/recv on the ``ProcessGroup`` object, so
no collective span and no sequence number is spent):

    r: t0 = now ──send──▶ 0: t1 = now ──send──▶ r: t2 = now

Rank 0 read ``t1`` somewhere between ``t0`` and ``t2`` of rank ``r``'s clock,
so ``offset = t1 - (t0 + t2) / 2`` is wrong by at most ``(t2 - t0) / 2``. Of
``ROUNDS`` round trips the one with the smallest round-trip time is kept (the
minimum-RTT filter of Cristian's algorithm and NTP's clock filter): queueing
only ever adds delay, so the fastest exchange is the least disturbed. The
estimate is stored as a ``clock`` snapshot of the part, with its error bound
and the local time it was taken (``at_ns``).

Two hosts' monotonic clocks drift apart by tens of ppm (tens of ms an hour),
so a long run exchanges again after every ``TORCHSCOPE_CLOCK_EVERY``-th
collective of the default group (``rank.py``): a point every rank reaches
together, right after they all left the same collective. The merge follows
the offset from one estimate to the next (``offset_at``).

``TORCHSCOPE_CLOCK_SKEW_NS`` adds a constant to every time this process
records (spans, parts, snapshots, this exchange): it simulates another
host's clock on one machine, for tests.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

ROUNDS = 8
TAG = 0x7C10  # torchscope's point-to-point tag, apart from a program's own


def skew_ns() -> int:
    """The simulated clock skew of this process (0 unless a test sets it)."""
    try:
        return int(os.environ.get("TORCHSCOPE_CLOCK_SKEW_NS", "0"))
    except ValueError:
        return 0


def now_ns() -> int:
    """This process's clock, as its spans record it."""
    return time.perf_counter_ns() + skew_ns()


def exchange(rounds: int = ROUNDS) -> dict[str, Any]:
    """Runs the round trips with rank 0 on the default group; every rank must call it.

    Returns this rank's estimate: ``offset_ns`` (add it to a time of this
    process to get rank 0's), ``error_ns`` (the bound), ``rtt_ns``, ``rounds``.
    """
    import torch
    import torch.distributed as dist

    pg = dist.group.WORLD
    rank, world = dist.get_rank(), dist.get_world_size()
    device = torch.device("cpu")
    if "nccl" in str(dist.get_backend()):
        device = torch.device("cuda", torch.cuda.current_device())
    buf = torch.zeros(1, dtype=torch.int64, device=device)
    at = now_ns()
    if rank == 0:
        for peer in range(1, world):
            for _ in range(rounds):
                pg.recv([buf], peer, TAG).wait()
                buf.fill_(now_ns())
                pg.send([buf], peer, TAG).wait()
        return {"offset_ns": 0, "error_ns": 0, "rtt_ns": 0, "rounds": 0, "at_ns": at}
    best: tuple[int, int] | None = None
    for _ in range(rounds):
        t0 = now_ns()
        buf.fill_(t0)
        pg.send([buf], 0, TAG).wait()
        pg.recv([buf], 0, TAG).wait()
        t2 = now_ns()
        rtt, offset = t2 - t0, int(buf.item()) - (t0 + t2) // 2
        if best is None or rtt < best[0]:
            best = (rtt, offset)
    assert best is not None
    return {
        "offset_ns": best[1],
        "error_ns": (best[0] + 1) // 2,
        "rtt_ns": best[0],
        "rounds": rounds,
        "at_ns": at,
    }


def offset_at(estimates: list[dict], times: np.ndarray) -> np.ndarray:
    """The offset to add at each local time: interpolated between the estimates
    (by ``at_ns``), held constant before the first and after the last."""
    at = np.array([e["at_ns"] for e in estimates], dtype=np.float64)
    offsets = np.array([e["offset_ns"] for e in estimates], dtype=np.float64)
    if len(at) == 1:
        return np.full(np.shape(times), int(offsets[0]), dtype=np.int64)
    return np.rint(np.interp(np.asarray(times, dtype=np.float64), at, offsets)).astype(np.int64)


def alignment(snapshots: list[dict], parts: set[int]) -> tuple[int, int, list[dict]] | None:
    """(offset_ns, error_ns, estimates) for the parts of one host, from their
    ``clock`` snapshots; None when none has one.

    The parts share the host's clock, so one rank's estimates serve them all:
    the rank whose best estimate has the smallest error bound. ``offset_ns``
    and ``error_ns`` are that best estimate's; ``estimates`` are all of that
    rank's, in time order, for ``offset_at``.
    """
    found = [
        (s["part"], s["payload"])
        for s in snapshots
        if s["kind"] == "clock"
        and s["part"] in parts
        and isinstance(s["payload"], dict)
        and isinstance(s["payload"].get("offset_ns"), int)
        and isinstance(s["payload"].get("error_ns"), int)
    ]
    if not found:
        return None
    best = min(found, key=lambda p: p[1]["error_ns"])
    same_rank = sorted(
        (p for part, p in found if part == best[0] and isinstance(p.get("at_ns"), int)),
        key=lambda p: p["at_ns"],
    )
    return int(best[1]["offset_ns"]), int(best[1]["error_ns"]), same_rank or [best[1]]
