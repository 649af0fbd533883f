"""The native boundary stamp: ``module.backward`` spans without a Python callback.

``boundary.cpp`` is a C++ autograd pre-hook that ``Module._call_impl`` installs
from forward on each module boundary (``link``); in backward it timestamps the
boundary into a buffer of the running thread without taking the GIL, and the
recorder drains the buffers at each flush (``Stamps.take``) into the very
records the Python hooks of ``reimpl/nn/modules/module.py`` would have made.
Its ``Forward`` records the forward spans of module calls the same way, in one
C call each (``module.py``'s ``_record_forward_py`` is the Python reference),
and serves the torch target as ``Module._call_impl``.

Built with ``torch.utils.cpp_extension`` **ahead of time** by ``setup.sh``
(``python -m reimpl._native``), into a cache folder keyed by the source, torch
and Python (``~/.cache/torchscope/``, or ``$TORCHSCOPE_CACHE``): building
takes about a minute, which belongs to setting up, not to the first recording
or to a test. A checkout set up without ``setup.sh`` builds it just in time on
the first recording, saying so. Without a compiler, or when the build fails,
``load()`` says so once on stderr and returns None: backward spans then come
from the Python hooks, as before. ``TORCHSCOPE_NATIVE=0`` asks for the Python
hooks. Nothing here is imported until a recorder asks (``reimpl`` itself
imports nothing but torch).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
from itertools import pairwise
from operator import itemgetter
from pathlib import Path
from time import perf_counter_ns
from typing import Any

SOURCE = Path(__file__).with_name("boundary.cpp")
_loaded: list[Any] = []  # [Stamps or None] once load() has decided


def cache_dir(stem: str, key: str) -> Path:
    """``<cache>/<stem>-<digest of key>``: where a compiled part lives
    (``$TORCHSCOPE_CACHE``, else ``~/.cache/torchscope``); the recorder's column
    writer (tracer/recording/native_columns.py) keeps its build there too."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    root = os.environ.get("TORCHSCOPE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "torchscope"
    )
    return Path(root) / f"{stem}-{digest}"


def build_dir() -> Path:
    """Where the extension for this source, torch and Python lives."""
    import torch

    key = f"{SOURCE.read_bytes().hex()}|{torch.__version__}|{sys.version}|{sys.platform}"
    return cache_dir("boundary", key)


_NAME = "torchscope_boundary"


def _import(folder: Path) -> Any:
    """Imports the built extension from ``folder``; None when it is not there."""
    import torch  # noqa: F401  (libtorch must be loaded first)

    found = sorted(folder.glob(f"{_NAME}*.so"))
    if not found:
        return None
    spec = importlib.util.spec_from_file_location(_NAME, found[0])
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def build(verbose: bool = False) -> Any:
    """Compiles the extension into ``build_dir()`` (about a minute) and imports it."""
    from torch.utils import cpp_extension

    folder = build_dir()
    folder.mkdir(parents=True, exist_ok=True)
    return cpp_extension.load(
        name=_NAME,
        sources=[str(SOURCE)],
        build_directory=str(folder),
        extra_cflags=["-O2"],
        verbose=verbose,
    )


class Stamps:
    """The loaded extension, as the seam (``reimpl._trace``) and a recorder use it."""

    def __init__(self, ext: Any) -> None:
        self.link = ext.link  # installs the stamps of one forward call
        self.ext = ext  # ext.Forward: module.forward records (module.py's native_forward)
        self.next_id = ext.next_id  # a recorder draws its span ids from here
        self.reset = ext.reset
        self.enable = ext.enable
        self.clock_ns = ext.clock_ns
        self.pending = ext.pending
        self.kind = "module.backward"
        self.func = "?"  # set by module.py: the function the Python path names

    def take(self, records: list[tuple], final: bool = False) -> tuple[list[tuple], int]:
        """Drains the stamps into the front of ``records``, a sink's buffer.

        Returns the records to write now, in close order within each thread, and
        how many of ``records`` they took (delete those). A record appended after
        the cut may enclose a stamp not yet drained, so the buffer is cut at the
        first record that closed after the stamps were drained, and the rest
        waits for the next flush; ``final`` (the sink detached, no stamp can
        come any more) takes everything.
        """
        m = len(records)  # records[:m] were appended, so closed, before the cut
        cut = _FOREVER if final else perf_counter_ns()
        stamped = self.ext.drain(self.kind, self.func, cut)
        n = len(records)
        k = next((i for i in range(m, n) if records[i][4] > cut), n)
        taken = records[:k]
        return (in_close_order(taken, stamped) if stamped else taken), k


_FOREVER = 2**63 - 1


def in_close_order(records: list[tuple], stamped: list[tuple]) -> list[tuple]:
    """Merges ``stamped`` into ``records`` by end time, thread by thread.

    Both are in close order within each thread (``stamped`` comes from one
    buffer per thread). Each stamped record goes right before the first record
    of its thread that closed after it; records of other threads keep their
    places. A thread-name marker (id 0, no time) counts as closing with the
    record before it. In numpy: this runs at every flush, on the writer thread.
    """
    import numpy as np  # the recorder's dependency, not reimpl's

    if not records or not stamped:
        return records + stamped
    n = len(records)
    tids = np.fromiter(map(_tid, records), np.uint64, n)
    ends = np.fromiter(map(_end, records), np.int64, n)
    s_tids = np.fromiter(map(_tid, stamped), np.uint64, len(stamped))
    s_ends = np.fromiter(map(_end, stamped), np.int64, len(stamped))
    at = np.empty(len(stamped), np.int64)  # the record each goes before (n: at the end)
    for tid in np.unique(s_tids):
        mine = np.flatnonzero(s_tids == tid)
        rows = np.flatnonzero(tids == tid)
        closed = np.maximum.accumulate(ends[rows]) if len(rows) else ends[rows]
        k = np.searchsorted(closed, s_ends[mine], side="right")
        at[mine] = np.append(rows, n)[k]
    # Each thread's stamped records are in close order, so their places only
    # grow: a few runs (about one per backward pass) spliced in with slices.
    order = np.argsort(at, kind="stable")
    places = at[order]
    if (np.diff(order) < 0).any():  # several threads' runs interleave
        stamped = list(map(stamped.__getitem__, order.tolist()))
    runs = [0, *(np.flatnonzero(np.diff(places)) + 1).tolist(), len(stamped)]
    out: list[tuple] = []
    prev = 0
    for first, last in pairwise(runs):
        place = int(places[first])
        out += records[prev:place]
        out += stamped[first:last]
        prev = place
    out += records[prev:]
    return out


_tid = itemgetter(2)
_end = itemgetter(4)


FALLBACK = "recording module spans in Python (backward spans with Python hooks)"


def reason(exc: BaseException) -> str:
    """The last line of an error (a compiler's is long), for a one-line message."""
    lines = str(exc).strip().splitlines()
    return lines[-1] if lines else type(exc).__name__


def load(*, build_missing: bool = True) -> Stamps | None:
    """The stamp, built or imported once per process; None means the Python hooks.

    The reason is said once on stderr when the stamp cannot be had.
    """
    if _loaded:
        return _loaded[0]
    stamps = None
    if os.environ.get("TORCHSCOPE_NATIVE", "1") != "0":
        try:
            ext = _import(build_dir())
            if ext is None and build_missing:
                print(
                    "torchscope: building the native backward stamp (once, about a minute)...",
                    file=sys.stderr,
                )
                ext = build()
            if ext is None:
                raise ImportError("not built (run ./setup.sh or python -m reimpl._native)")
            stamps = Stamps(ext)
        except Exception as exc:  # no compiler, no headers, a failed build
            print(f"torchscope: native backward stamp unavailable ({reason(exc)}); {FALLBACK}",
                  file=sys.stderr)  # fmt: skip
    _loaded.append(stamps)
    return stamps
