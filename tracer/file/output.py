"""Writing an output file whole or not at all (exports, graphs)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

from tracer.file.errors import TraceError


@contextmanager
def atomic_output(path: str, mode: str = "w") -> Iterator[IO[Any]]:
    """Yields a temporary file beside ``path`` that replaces it only on success.

    A failure half way (a damaged trace, a full disk, Ctrl-C) leaves whatever
    was at ``path`` before, never half a JSON file.
    """
    folder = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=".torchscope-", suffix=".part", dir=folder)
    except OSError as exc:
        raise TraceError(f"{path}: cannot write here ({exc.strerror}).") from exc
    encoding = None if "b" in mode else "utf-8"
    try:
        with os.fdopen(fd, mode, encoding=encoding) as fh:
            yield fh
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
