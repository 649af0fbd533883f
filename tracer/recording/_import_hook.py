"""Times every import as a span, nested by who imported whom.

This file imports nothing that a fresh interpreter has not already loaded at
startup (``sys``, ``time``, ``_thread``), so that ``torchscope imports``
can install it before the import it measures and see every module that
import loads, exactly the set ``python -X importtime`` reports.

It wraps ``importlib._bootstrap._find_and_load``: CPython's import statement
looks that function up on the frozen importlib module for every module not
yet in ``sys.modules`` (``import_find_and_load`` in Python/import.c), which
is exactly where ``-X importtime`` starts and stops its clock.
"""

import sys
import time
from _thread import get_ident

_bootstrap = sys.modules["_frozen_importlib"]
FUNC = "importlib._bootstrap._find_and_load"
EXTENSION_SUFFIXES = (".so", ".pyd", ".dylib")


def describe(name, error, import_):
    """What the import produced: file, package, extension or not, the error."""
    module = sys.modules.get(name)
    attrs = {}
    if error is not None:
        attrs["error"] = error
    if import_ is _bootstrap._gcd_import:
        # importlib.import_module(): CPython's -X importtime does not see these.
        attrs["via"] = "importlib.import_module"
    if module is None:
        return attrs
    spec = getattr(module, "__spec__", None)
    origin = getattr(spec, "origin", None) if spec is not None else None
    file = getattr(module, "__file__", None) or origin
    if file:
        attrs["file"] = file
    package = getattr(module, "__package__", None)
    if package:
        attrs["package"] = package
    if hasattr(module, "__path__"):
        attrs["is_package"] = True
    if origin in ("built-in", "frozen"):
        attrs["origin"] = origin
    if isinstance(file, str) and file.endswith(EXTENSION_SUFFIXES):
        attrs["extension"] = True
    return attrs


class ImportHook:
    """Emits one ``import`` record per module loaded while installed."""

    def __init__(self, sink):
        self.sink = sink  # anything with next_id() and append(record)
        self._original = None

    def install(self):
        """Starts timing imports (idempotent)."""
        if self._original is not None:
            return
        original = self._original = _bootstrap._find_and_load
        sink = self.sink
        perf = time.perf_counter_ns

        def _find_and_load(name, import_):
            sid = sink.next_id()
            error = None
            t0 = perf()
            try:
                return original(name, import_)
            except BaseException as exc:
                error = type(exc).__name__ + ": " + str(exc)
                raise
            finally:
                t1 = perf()
                sink.append(
                    (
                        sid,
                        0,
                        get_ident(),
                        t0,
                        t1,
                        "import",
                        name,
                        FUNC,
                        describe(name, error, import_),
                    )
                )

        _bootstrap._find_and_load = _find_and_load

    def uninstall(self):
        """Stops timing imports."""
        if self._original is not None:
            _bootstrap._find_and_load = self._original
            self._original = None


class ListSink:
    """The smallest sink: records in a list, until a real recorder can be imported."""

    def __init__(self):
        self.records = []
        self.append = self.records.append
        counter = iter(range(1, 1 << 62))
        self.next_id = counter.__next__
