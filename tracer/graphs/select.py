"""Which spans a graph is drawn from: one step, one thread, one process, one subtree.

Every selection is a boolean mask over the trace's rows, so graph builders
stay vectorised: a million-span trace is filtered with numpy, and the only
loop (propagating "inside this subtree" from parents to children) is numba.
"""

from __future__ import annotations

import re

import numpy as np
from numba import njit

from tracer.file.errors import TraceError
from tracer.file.trace import ThreadInfo, Trace


def _spread_down(parent: np.ndarray, order: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Marks every descendant of a marked row; ``order`` visits parents first."""
    out = mask.copy()
    for row in order:
        p = parent[row]
        if p >= 0 and out[p]:
            out[row] = True
    return out


spread_down = njit(cache=True, nogil=True)(_spread_down)


def subtree_mask(trace: Trace, rows: np.ndarray | list[int]) -> np.ndarray:
    """The rows of ``rows`` and everything below them, linked threads included."""
    mask = np.zeros(trace.n, dtype=np.bool_)
    mask[np.asarray(rows, dtype=np.int64)] = True
    if trace.n == 0:
        return mask
    return spread_down(trace.parent, trace.start_order, mask)


def _step_index(trace: Trace, row: int) -> int | None:
    """A step's number: its ``index`` attribute, else a number ending its name."""
    attrs = trace.attrs(row)
    if isinstance(attrs.get("index"), int):
        return int(attrs["index"])
    match = re.search(r"(\d+)\s*$", trace.name_of(row))
    return int(match.group(1)) if match else None


def step_rows(trace: Trace, step: int) -> np.ndarray:
    """The ``step`` spans numbered ``step`` in every process (a rank each).

    ``with step(i)`` records ``index=i``; samples that name steps ``step 3``
    are read from the name; unnumbered steps count from 0 in start order.
    """
    code = trace.code("step")
    rows = trace.start_order[trace.kind[trace.start_order] == code] if code >= 0 else []
    found: list[int] = []
    ordinal: dict[int, int] = {}
    for row in map(int, rows):
        part = int(trace.part[row])
        position = ordinal.get(part, 0)
        ordinal[part] = position + 1
        index = _step_index(trace, row)
        if (index if index is not None else position) == step:
            found.append(row)
    if not found:
        raise TraceError(
            f"{trace.path}: no step {step} in this trace ({len(rows)} step spans); "
            "give a step number that `torchscope summary` lists, or leave out --step."
        )
    return np.array(found, dtype=np.int64)


def threads_matching(trace: Trace, text: str) -> list[ThreadInfo]:
    """Threads named ``text`` (name, label, tid or device); a substring as fallback."""
    exact = [
        t
        for t in trace.threads
        if text in (t.name, t.label, str(t.tid), t.device or "", f"#{t.row}")
    ]
    if exact:
        return exact
    return [t for t in trace.threads if text.lower() in t.label.lower()]


def parts_matching(trace: Trace, text: str) -> list[int]:
    """Process parts named ``text``: a pid, a role (``rank``), ``rank 1`` or a label."""
    out = []
    for p in trace.processes:
        role = p.role if p.role_index is None else f"{p.role} {p.role_index}"
        if text in (str(p.pid), p.role, role, p.label, f"#{p.part}"):
            out.append(p.part)
    return out


def select(
    trace: Trace,
    *,
    step: int | None = None,
    thread: str | None = None,
    process: str | None = None,
) -> np.ndarray:
    """The rows a graph is built from; unset filters select everything."""
    mask = np.ones(trace.n, dtype=np.bool_)
    if step is not None:
        mask &= subtree_mask(trace, step_rows(trace, step))
    if thread is not None:
        threads = threads_matching(trace, thread)
        if not threads:
            names = ", ".join(sorted({t.label for t in trace.threads})) or "none"
            raise TraceError(f"{trace.path}: no thread matches {thread!r} (threads: {names}).")
        mask &= np.isin(trace.thread, [t.row for t in threads])
    if process is not None:
        parts = parts_matching(trace, process)
        if not parts:
            names = ", ".join(p.label for p in trace.processes) or "none"
            raise TraceError(
                f"{trace.path}: no process matches {process!r} (processes: {names}); "
                "give a pid, a role such as 'rank 1', or 'main'."
            )
        mask &= np.isin(trace.part, parts)
    return mask


def parse_duration(text: str) -> int:
    """``2ms``, ``150us``, ``1.5s``, ``300ns`` (a bare number means ms) -> nanoseconds."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(ns|us|µs|ms|s)?\s*", text)
    if not match:
        raise ValueError(f"not a duration: {text!r} (write 2ms, 150us, 1.5s)")
    scale = {"ns": 1, "us": 1e3, "µs": 1e3, "ms": 1e6, "s": 1e9, None: 1e6}[match.group(2)]
    return int(float(match.group(1)) * scale)
