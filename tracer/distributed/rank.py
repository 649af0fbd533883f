"""What a recorded rank says about itself when its process group starts.

While a recorder is active, ``torch.distributed.init_process_group`` is
wrapped (as soon as ``torch.distributed`` is imported: importing it here
ourselves would take ``import torch`` out of the program's recorded imports).
When the group is up, the rank:

* names its lane ``rank R`` (unless the program already did);
* stores a ``rank`` snapshot: rank, local rank, world size, host, node rank,
  backend, and the launch command (``TORCHSCOPE_LAUNCH``, set by
  ``torchscope record --nproc-per-node``; otherwise this process's argv);
* estimates its clock against rank 0's (``clock.py``) and stores a ``clock``
  snapshot; again after every ``TORCHSCOPE_CLOCK_EVERY``-th (1000) collective
  of the default group, which every rank reaches together, for long runs.

This works the same under torchrun, ``torch.multiprocessing.spawn`` or any
other launcher: it rides on the process group, never on the launcher.
"""

from __future__ import annotations

import functools
import importlib.abc
import multiprocessing
import os
import socket
import sys
from collections.abc import Callable
from typing import Any

from reimpl import _trace
from tracer.distributed import clock

_C10D = "torch.distributed.distributed_c10d"
_originals: dict[str, Callable] = {}
_finder: importlib.abc.MetaPathFinder | None = None


def _payload() -> dict[str, Any]:
    import torch.distributed as dist

    def env_int(name: str) -> int | None:
        value = os.environ.get(name)
        return int(value) if value and value.lstrip("-").isdigit() else None

    return {
        "rank": dist.get_rank(),
        "local_rank": env_int("LOCAL_RANK"),
        "world_size": dist.get_world_size(),
        "node_rank": env_int("GROUP_RANK"),
        "host": socket.gethostname(),
        "backend": str(dist.get_backend()),
        "launch": os.environ.get("TORCHSCOPE_LAUNCH") or " ".join(sys.argv),
    }


def _estimate(when: str) -> None:
    """The clock exchange, stored as a snapshot; a failure is said, never raised."""
    try:
        estimate = clock.exchange()
    except Exception as exc:  # the program goes on unaligned rather than fail
        print(f"torchscope: clock exchange with rank 0 failed: {exc}", file=sys.stderr)
        return
    _trace.snapshot("clock", when, {**estimate, "reference_rank": 0, "when": when})


def clock_every() -> int:
    """Re-estimate the clock every this many collectives of the default group
    (``TORCHSCOPE_CLOCK_EVERY``, the same on every rank; 0: never)."""
    value = os.environ.get("TORCHSCOPE_CLOCK_EVERY", "")
    return int(value) if value.isdigit() else 1000


def _periodic(group: str, seq: int) -> None:
    """After a collective (``reimpl._collectives.after``): every rank reaches the
    same one, so every rank runs the exchange there together."""
    every = clock_every()
    if group == "world" and every and (seq + 1) % every == 0 and _sync():
        _estimate(f"after world collective {seq}")


def _sync() -> bool:
    """Whether this process takes part in clock exchanges (every rank or none)."""
    return _trace.sink is not None and os.environ.get("TORCHSCOPE_CLOCK_SYNC", "1") != "0"


def joined() -> None:
    """Called once the default group is up (every rank at the same moment)."""
    if _trace.sink is None:
        return
    # Imported here, not at the top: reimpl._collectives imports torch, and the
    # recorder must not import torch before the program does (its import is recorded).
    from reimpl import _collectives

    if _periodic not in _collectives.after:
        _collectives.after.append(_periodic)
    info = _payload()
    if _trace._role[0] != "rank":
        _trace.set_process_role("rank", info["rank"])
    _trace.snapshot("rank", str(info["rank"]), info)
    if _sync():
        _estimate("start")


def _wrap_init(original: Callable) -> Callable:
    @functools.wraps(original)
    def init_process_group(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        joined()
        return result

    init_process_group.__torchscope_original__ = original  # type: ignore[attr-defined]
    return init_process_group


def _patch() -> None:
    """Wraps ``init_process_group`` in c10d and in ``torch.distributed``'s namespace."""
    c10d = sys.modules[_C10D]
    if getattr(c10d.init_process_group, "__torchscope_original__", None):
        return
    name = "init_process_group"
    _originals[name] = getattr(c10d, name)
    wrapped = _wrap_init(_originals[name])
    setattr(c10d, name, wrapped)
    package = sys.modules.get("torch.distributed")
    if package is not None and getattr(package, name, None) is _originals[name]:
        setattr(package, name, wrapped)


class _AfterC10dImport(importlib.abc.MetaPathFinder):
    """Patches c10d right after it is first imported (its loader runs, then ours)."""

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name != _C10D:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None and spec.loader is not None:
                exec_module = spec.loader.exec_module

                def exec_then_patch(module: Any, _exec: Callable = exec_module) -> None:
                    _exec(module)
                    _patch()

                spec.loader.exec_module = exec_then_patch  # type: ignore[method-assign]
                return spec
        return None


def launched() -> None:
    """Under torchrun (``RANK`` and ``WORLD_SIZE`` set): the rank is named from
    the start, so a rank that dies or hangs before its process group is up
    (or never gets one) is still rank R of W in the merge."""
    rank, world = os.environ.get("RANK", ""), os.environ.get("WORLD_SIZE", "")
    if _trace.sink is None or not (rank.isdigit() and world.isdigit()):
        return
    if multiprocessing.parent_process() is not None:
        return  # a rank's own spawned child (a DataLoader worker) inherits RANK
    local = os.environ.get("LOCAL_RANK", "")
    node = os.environ.get("GROUP_RANK", "")
    _trace.set_process_role("rank", int(rank))
    _trace.snapshot(
        "rank",
        rank,
        {
            "rank": int(rank),
            "local_rank": int(local) if local.isdigit() else None,
            "world_size": int(world),
            "node_rank": int(node) if node.isdigit() else None,
            "host": socket.gethostname(),
            "backend": None,  # not known before init_process_group
            "launch": os.environ.get("TORCHSCOPE_LAUNCH") or " ".join(sys.argv),
        },
    )


def follow() -> None:
    """Starts watching for the process group (idempotent)."""
    global _finder
    launched()
    if _C10D in sys.modules:
        _patch()
    elif _finder is None:
        _finder = _AfterC10dImport()
        sys.meta_path.insert(0, _finder)


def unfollow() -> None:
    """Stops watching: the wrappers are removed, the import hook too."""
    global _finder
    collectives = sys.modules.get("reimpl._collectives")  # imported once a group was up
    if collectives is not None and _periodic in collectives.after:
        collectives.after.remove(_periodic)
    if _finder is not None and _finder in sys.meta_path:
        sys.meta_path.remove(_finder)
    _finder = None
    c10d = sys.modules.get(_C10D)
    package = sys.modules.get("torch.distributed")
    for name, original in _originals.items():
        for module in (c10d, package):
            current = getattr(module, name, None) if module is not None else None
            if getattr(current, "__torchscope_original__", None) is original:
                setattr(module, name, original)
    _originals.clear()
