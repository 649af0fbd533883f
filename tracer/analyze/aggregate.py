"""Loops over span columns, compiled with numba.

Each kernel is plain Python first (readable, and what runs under
``NUMBA_DISABLE_JIT=1``) and compiled in one place at the bottom, as
minitorch does. All inputs are the columnar arrays of a loaded trace.
"""

from __future__ import annotations

import numpy as np
from numba import njit, types
from numba.typed import Dict

_PATH_KEY = types.UniTuple(types.int64, 3)  # (parent path, kind, name)


def _parents(group: np.ndarray, ids: np.ndarray, n_groups: int) -> np.ndarray:
    """Rebuilds each thread's call tree from start-order ids and close order.

    Rows arrive in close order within each group (a thread of a process).
    When a span closes, every still-unclaimed span of its thread that started
    after it (a larger id) closed inside it: those are its children. The
    unclaimed spans form a stack whose ids increase towards the top.
    """
    n = len(ids)
    parent = np.full(n, -1, dtype=np.int64)
    top = np.full(n_groups, -1, dtype=np.int64)  # row at the top of each stack
    below = np.full(n, -1, dtype=np.int64)  # the row under each stacked row
    for row in range(n):
        g = group[row]
        my_id = ids[row]
        t = top[g]
        while t >= 0 and ids[t] > my_id:
            parent[t] = row
            t = below[t]
        below[row] = t
        top[g] = row
    return parent


def _self_times(parent: np.ndarray, dur: np.ndarray) -> np.ndarray:
    """Inclusive time minus the inclusive time of the direct children."""
    out = dur.copy()
    for row in range(len(parent)):
        p = parent[row]
        if p >= 0:
            out[p] -= dur[row]
    return out


def _self_times_covered(
    start: np.ndarray,
    end: np.ndarray,
    thread: np.ndarray,
    offsets: np.ndarray,
    kids: np.ndarray,
) -> np.ndarray:
    """Each span's time not covered by its children on the same thread.

    Two refinements of inclusive-minus-children, each seen in real traces:
    a child on another thread (a DataParallel replica under ``parallel_apply``)
    ran alongside its parent, not inside its time, so it is not taken off; and
    children of one thread can overlap (autograd runs two replicas' backward
    interleaved on one thread, each module's span linked to its own parent),
    so what is taken off is the union of their intervals, clipped to the
    parent. Self time is never negative. ``offsets``/``kids``: the CSR
    children in start order (``Trace.children_index``), row ``r`` at
    ``offsets[r + 1]:offsets[r + 2]``.
    """
    n = len(start)
    out = end - start
    for p in range(n):
        covered = 0
        run_start = 0
        run_end = -1
        for i in range(offsets[p + 1], offsets[p + 2]):
            k = kids[i]
            if thread[k] != thread[p]:
                continue
            s = max(start[k], start[p])
            e = min(end[k], end[p])
            if e <= s:
                continue
            if s > run_end:  # a new run of covered time
                if run_end > run_start:
                    covered += run_end - run_start
                run_start = s
                run_end = e
            elif e > run_end:
                run_end = e
        if run_end > run_start:
            covered += run_end - run_start
        out[p] -= covered
    return out


def _depths(parent: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Depth of each span; ``order`` visits parents before children."""
    depth = np.zeros(len(parent), dtype=np.int32)
    for row in order:
        p = parent[row]
        if p >= 0:
            depth[row] = depth[p] + 1
    return depth


def _call_paths(
    parent: np.ndarray, kind: np.ndarray, name: np.ndarray, order: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Merges spans with the same call path (same kind and name at every level).

    Returns (path of each row, and for each path: its parent path, kind, name).
    This is what folds the same layer across fifty training steps into one node.
    """
    n = len(parent)
    path = np.full(n, -1, dtype=np.int64)
    seen = Dict.empty(key_type=_PATH_KEY, value_type=types.int64)
    path_parent = np.empty(n, dtype=np.int64)
    path_kind = np.empty(n, dtype=np.int64)
    path_name = np.empty(n, dtype=np.int64)
    count = 0
    for row in order:
        p = parent[row]
        parent_path = path[p] if p >= 0 else -1
        key = (parent_path, np.int64(kind[row]), np.int64(name[row]))
        found = seen.get(key, -1)
        if found < 0:
            found = count
            seen[key] = count
            path_parent[count] = parent_path
            path_kind[count] = kind[row]
            path_name[count] = name[row]
            count += 1
        path[row] = found
    return path, path_parent[:count], path_kind[:count], path_name[:count]


def _sum_by(keys: np.ndarray, values: np.ndarray, n_keys: int) -> np.ndarray:
    """Sums values per key (np.bincount without the float conversion)."""
    out = np.zeros(n_keys, dtype=np.int64)
    for i in range(len(keys)):
        out[keys[i]] += values[i]
    return out


def _inherit(parent: np.ndarray, order: np.ndarray, seed: np.ndarray) -> np.ndarray:
    """Each span's nearest seeded ancestor-or-self (-1: none); ``order`` visits
    parents before children. The replica a hook call ran in, for instance."""
    out = seed.copy()
    for row in order:
        p = parent[row]
        if out[row] < 0 and p >= 0:
            out[row] = out[p]
    return out


parents = njit(cache=True, nogil=True)(_parents)
inherit = njit(cache=True, nogil=True)(_inherit)
self_times = njit(cache=True, nogil=True)(_self_times)
self_times_covered = njit(cache=True, nogil=True)(_self_times_covered)
depths = njit(cache=True, nogil=True)(_depths)
call_paths = njit(cache=True, nogil=True)(_call_paths)
sum_by = njit(cache=True, nogil=True)(_sum_by)
