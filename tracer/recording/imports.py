"""``torchscope imports``: what ``import torch`` (or any module) does, as a call tree.

A fresh interpreter installs ``tracer/recording/_import_hook.py`` before anything else,
imports the module, and only then imports torchscope to write the trace, so
the recorded set of modules is the set ``python -X importtime`` reports. After
the import it describes what each extension module set up (classes,
functions, submodules), so the native initialisation is described, not just
timed. For ``import torch`` the hook also records ``_load_global_deps`` and
``torch._C._initExtension`` as ``import.init`` spans and counts the registries
(operators, dispatch keys, dtypes) on the span of the step that filled them:
``torch._C``'s import, ``_initExtension``, the whole ``import torch``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import types
from typing import Any

from tracer.recording._import_hook import registry
from tracer.recording.deep import DEFAULT_DEPTH, merge, viztracer_records
from tracer.recording.recorder import Recorder

HOOK_PATH = os.path.join(os.path.dirname(__file__), "_import_hook.py")

# Runs in the child with nothing imported beyond interpreter startup.
CHILD = r"""
import sys
hook_path, target, output, deep, depth = sys.argv[1:6]
ns = {"__name__": "torchscope_import_hook"}
exec(compile(open(hook_path).read(), hook_path, "exec"), ns)
sink = ns["ListSink"]()
hook = ns["ImportHook"](sink, torch_init=True)
viz = None
if deep == "1":  # viztracer's own imports (json, ...) happen here, before the hook
    from viztracer import VizTracer
    viz = VizTracer(verbose=0, max_stack_depth=int(depth), tracer_entries=2_000_000,
                    ignore_c_function=True)
    viz.start()
hook.install()
error = None
try:
    __import__(target)
except BaseException as exc:
    error = type(exc).__name__ + ": " + str(exc)
finally:
    hook.uninstall()
    if viz is not None:
        viz.stop()
from tracer.recording.imports import finish_child
sys.exit(finish_child(output, sink.records, target, error, viz))
"""


REGISTRY_KEYS = ("operators", "operator_namespaces", "dispatch_keys", "dtypes")


def describe_native(name: str, at_load: dict | None = None) -> dict[str, Any]:
    """Counts what an extension module registered: classes, functions, submodules.

    For ``torch._C``, the registry counts its import span took when it loaded
    (``at_load``); counted now, after the whole import, only when there are none.
    """
    module = sys.modules.get(name)
    if module is None:
        return {}
    classes = functions = other = 0
    submodules = []
    for attr in dir(module):
        value = getattr(module, attr, None)
        if isinstance(value, types.ModuleType):
            submodules.append(attr)
        elif isinstance(value, type):
            classes += 1
        elif callable(value):
            functions += 1
        else:
            other += 1
    payload: dict[str, Any] = {
        "classes": classes,
        "functions": functions,
        "other": other,
        "submodules": sorted(submodules),
    }
    if name == "torch._C":
        counted = {k: at_load[k] for k in REGISTRY_KEYS if k in (at_load or {})}
        payload.update(counted or registry(module, sys.modules.get("torch")))
    return payload


def finish_child(
    output: str, records: list[tuple], target: str, error: str | None, viz: Any = None
) -> int:
    """In the child, after the import: describe natives and write the trace."""
    from reimpl import _trace

    for rec in records:
        attrs = rec[8]
        if attrs.get("extension"):
            attrs["native"] = describe_native(rec[6], attrs)
    overflow = False
    if viz is not None:
        calls, overflow = viztracer_records(viz)
        records = merge(records, calls)
    meta = {"target": "imports", "command": f"torchscope imports {target}", "import_target": target}
    if overflow:
        meta["deep_overflow"] = "1"
    recorder = Recorder(output, argv=[f"import {target}"], meta=meta, flush_interval=3600).start()
    _trace.set_thread_info("main")
    for rec in records:
        recorder.append(rec)
    for rec in records:
        if rec[0] and rec[5] == "import" and rec[8] and "native" in rec[8]:
            recorder.snapshot("native_init", rec[6], rec[8]["native"])
    recorder.stop("ok" if error is None else f"error: {error}")
    if error is not None:
        print(f"torchscope imports: import {target} failed: {error}", file=sys.stderr)
        return 1
    return 0


def run_imports(target: str, output: str, *, deep: bool = False, depth: int = DEFAULT_DEPTH) -> int:
    """Records ``import target`` in a fresh interpreter; returns its exit code."""
    if os.path.exists(output):
        os.remove(output)
    result = subprocess.run(
        [sys.executable, "-c", CHILD, HOOK_PATH, target, output, "1" if deep else "0", str(depth)],
        check=False,
    )
    return result.returncode


def render_imports(path: str, top: int = 15) -> str:
    """The terminal report: totals, slowest modules, extension modules, failures."""
    import numpy as np

    from tracer.file.trace import load

    trace = load(path)
    kind = trace.code("import")
    rows = np.flatnonzero(trace.kind == kind) if kind >= 0 else np.empty(0, dtype=np.int64)
    if not len(rows):
        return f"{path}: no imports recorded"
    roots = rows[trace.parent[rows] < 0]
    total = int(trace.dur_ns[roots].sum())
    # Self time among imports only: children that are py.calls stay inside.
    own = trace.dur_ns[rows].copy()
    import_child = rows[(trace.parent[rows] >= 0)]
    for child in import_child:
        p = trace.parent[child]
        while p >= 0 and trace.kind[p] != kind:
            p = trace.parent[p]
        if p >= 0:
            own[np.searchsorted(rows, p)] -= trace.dur_ns[child]
    out = [f"{len(rows):,} modules imported in {total / 1e6:.1f} ms ({path})", ""]
    out.append(f"{'slowest by inclusive time':<48}{'incl ms':>10}{'self ms':>10}")
    for i in np.argsort(-trace.dur_ns[rows])[:top]:
        out.append(
            f"{trace.name_of(int(rows[i])):<48}{trace.dur_ns[rows[i]] / 1e6:10.1f}"
            f"{own[i] / 1e6:10.1f}"
        )
    out += ["", f"{'slowest by self time':<48}{'self ms':>10}"]
    for i in np.argsort(-own)[:top]:
        out.append(f"{trace.name_of(int(rows[i])):<48}{own[i] / 1e6:10.1f}")
    natives = list({s["key"]: s for s in trace.snapshots if s["kind"] == "native_init"}.values())
    if natives:
        out += ["", "extension modules and what they registered"]
        for s in natives:
            p = s["payload"]
            extra = "".join(
                f", {k} {p[k]:,}" for k in ("operators", "dispatch_keys", "dtypes") if k in p
            ) + (" (as it loaded)" if "operators" in p else "")
            out.append(
                f"  {s['key']}: {p.get('classes', 0):,} classes, "
                f"{p.get('functions', 0):,} functions, "
                f"{len(p.get('submodules', [])):,} submodules{extra}"
            )
    out += _init_steps(trace)
    failed = [int(r) for r in rows if "error" in trace.attrs(int(r))]
    optional = [
        r
        for r in failed
        if trace.attrs(r)["error"].startswith("ModuleNotFoundError") and trace.parent[r] >= 0
    ]
    broken = [r for r in failed if r not in optional]
    if optional:
        names = sorted({trace.name_of(r) for r in optional})
        out += [
            "",
            f"{len(optional)} optional imports not found (the importer caught them): "
            + ", ".join(names[:12])
            + (" ..." if len(names) > 12 else ""),
        ]
    if broken:
        out += ["", "failed imports"]
        out += [f"  {trace.name_of(r)}: {trace.attrs(r)['error']}" for r in broken]
    deep = trace.code("py.call")
    if deep >= 0:
        out += ["", f"{int((trace.kind == deep).sum()):,} Python calls recorded (--deep)"]
    return "\n".join(out)


def _init_steps(trace: Any) -> list[str]:
    """``import torch`` step by step: the ``import.init`` calls and the spans that
    counted the registries, in the order they ended (when each count was taken)."""
    import numpy as np

    init, imp = trace.code("import.init"), trace.code("import")
    if init < 0:
        return []
    rows = [int(r) for r in np.flatnonzero(trace.kind == init)]
    counted = [int(r) for r in np.flatnonzero(trace.kind == imp)]
    rows += [r for r in counted if "operators" in trace.attrs(r)]
    rows.sort(key=lambda r: int(trace.end_ns[r]))
    out = [
        "",
        "initialisation steps, with the registries as each ended",
        f"  {'step':<40}{'ms':>10}{'operators':>11}{'dtypes':>8}",
    ]
    for r in rows:
        attrs = trace.attrs(r)
        label = ("import " if trace.kind[r] == imp else "") + trace.name_of(r)
        ops, dtypes = attrs.get("operators"), attrs.get("dtypes")
        out.append(
            f"  {label:<40}{trace.dur_ns[r] / 1e6:10.1f}"
            f"{'-' if ops is None else f'{ops:,}':>11}{'-' if dtypes is None else dtypes:>8}"
        )
    return out
