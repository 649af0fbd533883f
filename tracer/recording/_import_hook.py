"""Times every import as a span, nested by who imported whom.

This file imports nothing that a fresh interpreter has not already loaded at
startup (``sys``, ``time``, ``_thread``), so that ``torchscope imports``
can install it before the import it measures and see every module that
import loads, exactly the set ``python -X importtime`` reports.

It wraps ``importlib._bootstrap._find_and_load``: CPython's import statement
looks that function up on the frozen importlib module for every module not
yet in ``sys.modules`` (``import_find_and_load`` in Python/import.c), which
is exactly where ``-X importtime`` starts and stops its clock.

With ``torch_init`` (``torchscope imports``), ``import torch``'s own steps
that are not imports become spans too (``TorchInit``): ``_load_global_deps``
and ``torch._C._initExtension``, and the registry counts (operators, dtypes)
are taken at the moments they belong to, each on its span: after ``torch._C``
loads, after ``_initExtension``, after the whole import.
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


def registry(c, torch):
    """What torch's registries hold right now: operators (and their namespaces),
    dispatch keys, and the dtypes bound in the ``torch`` namespace (about 8 ms,
    almost all of it listing the operator names)."""
    out = {}
    try:
        names = c._dispatch_get_all_op_names()
        out["operators"] = len(names)
        out["operator_namespaces"] = len({n.split("::")[0] for n in names})
    except (AttributeError, RuntimeError):
        pass
    if hasattr(c, "DispatchKey"):
        out["dispatch_keys"] = len(c.DispatchKey.__members__)
    dtype = getattr(c, "dtype", None)
    if torch is not None and isinstance(dtype, type):
        out["dtypes"] = sum(isinstance(v, dtype) for v in list(vars(torch).values()))
    return out


class TorchInit:
    """Spans for the steps of ``import torch`` that are calls, not imports.

    ``_load_global_deps`` is a Python function that ``torch/__init__.py``
    defines and calls with no import in between, so it is caught by a trace
    function (``sys.settrace``: new frames only, no line or C events) armed
    while ``torch/__init__.py``'s own code runs up to ``from torch._C import
    *``, and disarmed inside every nested import: a few thousand calls.
    ``_initExtension`` is a C function reached as ``_C._initExtension``:
    when ``torch._C`` has loaded its attribute is wrapped, for that one call.
    """

    KIND = "import.init"

    def __init__(self, sink, perf):
        self.sink = sink
        self.perf = perf
        self.open = False  # torch's own import is in progress
        self.armed = False  # the trace function is wanted: torch/__init__ before torch._C
        self.depth = 0  # imports open inside torch's

    def begin(self, name):
        """An import starts (before its clock)."""
        if self.open:
            self.depth += 1
            if self.armed:
                sys.settrace(None)  # nested imports run untraced
                if name == "torch._C":
                    self.armed = False  # _load_global_deps has run by now
        elif name == "torch" and "torch" not in sys.modules:
            self.open, self.depth = True, 0
            if sys.gettrace() is None:  # a debugger's or coverage's own tracer wins
                self.armed = True
                sys.settrace(self._call)

    def end(self, name, attrs):
        """The import ``name`` ended (after its clock); ``attrs`` are its span's."""
        if not self.open:
            return
        if self.depth == 0:  # torch's own
            self.open = False
            if self.armed:
                sys.settrace(None)
                self.armed = False
            self._count(attrs)
            return
        self.depth -= 1
        if name == "torch._C" and "torch._C" in sys.modules:
            self._count(attrs)
            self._wrap_init_extension(sys.modules["torch._C"])
        if self.armed and self.depth == 0:
            sys.settrace(self._call)

    def _count(self, attrs):
        c = sys.modules.get("torch._C")
        if c is not None:
            attrs.update(registry(c, sys.modules.get("torch")))

    def _call(self, frame, event, arg):
        """The trace function: only ``torch._load_global_deps`` gets a local tracer."""
        code = frame.f_code
        if code.co_name != "_load_global_deps" or frame.f_globals.get("__name__") != "torch":
            return None
        sink, perf = self.sink, self.perf
        sid = sink.next_id()
        t0 = perf()
        name = "torch._load_global_deps"

        def local(frame, event, arg):
            if event == "return":
                attrs = {"file": code.co_filename, "line": code.co_firstlineno}
                sink.append((sid, 0, get_ident(), t0, perf(), self.KIND, name, name, attrs))
            return local

        return local

    def _wrap_init_extension(self, c):
        """``_C._initExtension`` as a span, for its one call; then the original is back."""
        original = getattr(c, "_initExtension", None)
        if original is None:
            return
        sink, perf, count = self.sink, self.perf, self._count
        name = "torch._C._initExtension"

        def _initExtension(*args):
            c._initExtension = original
            torch = sys.modules.get("torch")
            if torch is not None and vars(torch).get("_initExtension") is _initExtension:
                torch._initExtension = original  # bound by torch's sentinel import
            sid = sink.next_id()
            error = None
            t0 = perf()
            try:
                return original(*args)
            except BaseException as exc:
                error = type(exc).__name__ + ": " + str(exc)
                raise
            finally:
                t1 = perf()
                attrs = {} if error is None else {"error": error}
                count(attrs)
                sink.append((sid, 0, get_ident(), t0, t1, self.KIND, name, name, attrs))

        c._initExtension = _initExtension


class ImportHook:
    """Emits one ``import`` record per module loaded while installed."""

    def __init__(self, sink, torch_init=False, after_torch=None):
        self.sink = sink  # anything with next_id() and append(record)
        self._original = None
        # Called once ``import torch`` has completed (a recorder's deferred stamp).
        self.after_torch = after_torch
        self.torch_init = TorchInit(sink, time.perf_counter_ns) if torch_init else None

    def install(self):
        """Starts timing imports (idempotent)."""
        if self._original is not None:
            return
        original = self._original = _bootstrap._find_and_load
        sink = self.sink
        perf = time.perf_counter_ns
        torch_init = self.torch_init
        hook = self

        def _find_and_load(name, import_):
            if torch_init is not None:
                torch_init.begin(name)
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
                attrs = describe(name, error, import_)
                if torch_init is not None:
                    torch_init.end(name, attrs)  # counts taken after t1: not in this span
                sink.append((sid, 0, get_ident(), t0, t1, "import", name, FUNC, attrs))
                if name == "torch" and error is None and hook.after_torch is not None:
                    after, hook.after_torch = hook.after_torch, None
                    after()

        _bootstrap._find_and_load = _find_and_load

    def uninstall(self):
        """Stops timing imports."""
        if self.torch_init is not None and self.torch_init.armed:
            sys.settrace(None)
            self.torch_init.armed = False
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
