"""The writer's transpose in C (``_columns.c``), built once, with a Python fallback.

Why: after the hot path's tuple append, turning each flushed batch of records
into numpy columns was most of the recording's CPU (about 650 ns a record in
Python; on 2 cores the writer thread competes with the traced program for the
GIL and the CPU). The C pass costs a few tens of ns a record.

Built by ``setup.sh`` ahead of time (``native_columns.main()``)
with the system C compiler and the Python headers only (no numpy or torch
headers), in about a second, into the cache folder the native boundary stamp
uses (``~/.cache/torchscope`` or ``$TORCHSCOPE_CACHE``), keyed by the source and
the Python. A checkout set up another way builds it on the first recording.
Without a compiler, or with ``TORCHSCOPE_NATIVE=0``, the recorder keeps its
Python transpose: same columns, just slower (a test compares the two).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path
from typing import Any

from reimpl._native import cache_dir

SOURCE = Path(__file__).with_name("_columns.c")
_NAME = "torchscope_columns"
_loaded: list[Any] = []  # [module or None] once load() has decided


def build_dir() -> Path:
    """Where the extension for this source and this Python lives."""
    return cache_dir("columns", f"{SOURCE.read_bytes().hex()}|{sys.version}|{sys.platform}")


def _target(folder: Path) -> Path:
    return folder / f"{_NAME}{sysconfig.get_config_var('EXT_SUFFIX') or '.so'}"


def _import(path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(_NAME, path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def build(folder: Path | None = None) -> Path:
    """Compiles ``_columns.c`` into ``folder`` (default ``build_dir()``); returns the file.

    Written to a temporary name and renamed, so processes building at once (a
    recorder's DataLoader workers, parallel tests) never load a half-written file.
    """
    folder = folder or build_dir()
    folder.mkdir(parents=True, exist_ok=True)
    target = _target(folder)
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=folder)
    os.close(fd)
    try:
        subprocess.run(
            [
                compiler,
                "-O2",
                "-shared",
                "-fPIC",
                f"-I{sysconfig.get_paths()['include']}",
                str(SOURCE),
                "-o",
                tmp,
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        os.replace(tmp, target)
    except BaseException:
        os.unlink(tmp)
        raise
    return target


def reason(exc: BaseException) -> str:
    """One line on why the build failed (the compiler's first error line, if any)."""
    stderr = getattr(exc, "stderr", "") or ""
    first = next((line for line in stderr.splitlines() if "error" in line), "")
    return first.strip() or f"{type(exc).__name__}: {exc}"


def load() -> Any:
    """The compiled module, building it if needed; None for the Python fallback.

    Decided once per process. Says why on stderr when a build was tried and
    failed; says nothing when ``TORCHSCOPE_NATIVE=0`` asked for Python.
    """
    if _loaded:
        return _loaded[0]
    module = None
    if os.environ.get("TORCHSCOPE_NATIVE", "1") != "0":
        target = _target(build_dir())
        try:
            module = _import(target if target.exists() else build())
        except Exception as exc:
            print(
                f"torchscope: the native column writer is unavailable ({reason(exc)}); "
                "using the Python one (same trace, more CPU)",
                file=sys.stderr,
            )
    _loaded.append(module)
    return module


def main() -> int:
    """setup.sh builds it ahead of time; never fails the set-up."""
    try:
        print(f"setup: native column writer ready ({build()})", file=sys.stderr)
    except Exception as exc:
        print(
            f"setup: the native column writer did not build ({reason(exc)}); "
            "the recorder will use its Python one",
            file=sys.stderr,
        )
    return 0
