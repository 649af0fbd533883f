"""What is the program's own work: imports and compilations stand aside.

``torchscope record`` records the program's imports (``import`` spans) and
numba compilations (``numba.compile``) too; a small training script makes
hundreds of them, which would fill every top list. They stay in the trace,
with views of their own (the Imports view, ``graph --kind imports``,
``summary``'s imports line), and the other views leave them out unless asked.
"""

from __future__ import annotations

import numpy as np

from tracer.analyze import aggregate
from tracer.file.trace import Trace

ASIDE_KINDS = ("import", "numba.compile")


def aside_mask(trace: Trace) -> np.ndarray:
    """Rows that are an import or compilation, or ran inside one."""
    codes = [c for c in (trace.code(k) for k in ASIDE_KINDS) if c >= 0]
    if not codes or trace.n == 0:
        return np.zeros(trace.n, dtype=bool)
    seed = np.where(np.isin(trace.kind, codes), np.arange(trace.n), -1).astype(np.int64)
    return aggregate.inherit(trace.parent, trace.start_order, seed) >= 0


def aside_totals(trace: Trace, aside: np.ndarray) -> dict[str, int]:
    """How much stood aside: spans, top-level imports/compilations, their time."""
    roots = aside & ((trace.parent < 0) | ~aside[np.maximum(trace.parent, 0)])
    return {
        "spans": int(aside.sum()),
        "top_level": int(roots.sum()),
        "incl_ns": int(trace.dur_ns[roots].sum()),
    }
