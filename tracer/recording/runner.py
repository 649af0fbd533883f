"""Runs a user's script or module as ``__main__`` under the recorder.

The program sees the same ``sys.argv`` and ``sys.path[0]`` it would see when
run by ``python``; its exit status and exceptions pass through, and the trace
is written whatever happens (an exception, ``sys.exit``, SIGTERM, Ctrl-C).
"""

from __future__ import annotations

import importlib.util
import os
import pkgutil  # noqa: F401  runpy imports it lazily; keep it out of the program's imports
import runpy
import sys
import traceback
from typing import TYPE_CHECKING

from tracer.recording import numba_events, terminate
from tracer.recording._import_hook import ImportHook
from tracer.recording.deep import DEFAULT_DEPTH, start_viztracer, viztracer_records
from tracer.recording.recorder import Recorder
from tracer.targets import attach_target, check_target

if TYPE_CHECKING:
    from tracer.targets.torch.sim_devices import SimDevices


def _module_exists(name: str) -> bool:
    """Whether ``python -m name`` can find the top-level package (no import:
    a top-level lookup only searches sys.path; submodules are runpy's to find)."""
    top = name.split(".", 1)[0]
    if not top.isidentifier():
        return False
    sys.path.insert(0, os.getcwd())
    try:
        return importlib.util.find_spec(top) is not None
    except (ImportError, ValueError):
        return False
    finally:
        sys.path.pop(0)


def _raised_by_runpy(exc: BaseException) -> bool:
    """True when the innermost frame is runpy's own module lookup."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and tb.tb_frame.f_globals.get("__name__") == "runpy"


def run_under_recorder(
    target: str,
    args: list[str],
    *,
    module: bool,
    output: str,
    flush_interval: float = 1.0,
    deep: bool = False,
    depth: int = DEFAULT_DEPTH,
    backward_spans: bool = True,
    append: bool = False,
    check: bool = False,
    imports: bool = True,
    record_target: str = "reimpl",
    sim_devices: SimDevices | None = None,
) -> int:
    """Runs ``target`` (a path, or a module name when ``module``); returns its exit code.

    Imports made by the program become ``import`` spans and numba compilations
    ``numba.compile`` spans; with ``deep`` every Python call (viztracer, at
    most ``depth`` frames deep) lands beneath the semantic spans that made it.
    Without ``backward_spans`` modules record forward spans only (no autograd
    hook per module boundary: most of the recording cost of a small-layer model).
    An existing trace at ``output`` is replaced unless ``append``; any other
    file there is refused (TraceError) before the program starts. Without
    ``imports`` the program's imports are not recorded. ``record_target``
    ``"torch"`` also attaches to the installed torch for the run (``tracer/targets/torch/``).
    With ``sim_devices`` (``tracer/targets/torch/sim_devices.py``),
    ``torch.nn.DataParallel`` runs on simulated devices for the run.
    """
    if not module and not os.path.isfile(target):
        print(f"torchscope record: no such script: {target}", file=sys.stderr)
        return 2
    if module and not _module_exists(target):
        print(f"torchscope record: no module named {target!r}", file=sys.stderr)
        return 2
    argv = [target, *args]
    sim = sim_devices  # installed after the torch target attaches, restored before it detaches
    recorder = Recorder(
        output,
        # deep mode keeps everything in memory: viztracer's calls merge in at the end
        flush_interval=3600.0 if deep else flush_interval,
        argv=argv,
        meta={
            "target": check_target(record_target),
            "command": " ".join(argv),
            "deep": str(deep),
            "imports": "yes" if imports else "no",
            **(sim.meta() if sim is not None else {}),
        },
        backward_spans=backward_spans,
        mode="append" if append else "new",
        defer_stamps=imports,  # the stamp imports torch: not before the program does
    )
    recorder.start()  # refuses a non-trace output before anything of the program runs
    if recorder.replaced:
        print(
            f"torchscope: replacing {recorder.replaced} in {output} (--append keeps it)",
            file=sys.stderr,
        )
    saved_argv, saved_path0 = sys.argv[:], sys.path[0] if sys.path else ""
    sys.argv = argv
    if module:
        sys.path.insert(0, os.getcwd())
    else:
        sys.path.insert(0, os.path.dirname(os.path.abspath(target)))
    uninstall_sigterm = terminate.install(recorder)  # SIGTERM flushes, then SystemExit
    code = 0
    status = "ok"
    viz = start_viztracer(depth) if deep else None  # its own imports stay out of the trace
    import_hook = ImportHook(recorder, after_torch=recorder.adopt_stamps) if imports else None
    if import_hook is not None:
        import_hook.install()
    compile_listener = numba_events.install(recorder)
    detach_target = attach_target(record_target, backward_spans=backward_spans)  # torch: its seams
    if sim is not None:
        print(f"torchscope: {sim.describe()}", file=sys.stderr)
        sim.install()
    try:
        if module:
            runpy.run_module(target, run_name="__main__", alter_sys=True)
        else:
            runpy.run_path(target, run_name="__main__")
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if exc.code is not None and not isinstance(exc.code, int):
            print(exc.code, file=sys.stderr)
        status = "ok" if code == 0 else f"exit {code}"
    except KeyboardInterrupt:
        code, status = 130, "interrupted"
        traceback.print_exc()
    except ImportError as exc:
        code, status = 1, f"error: {type(exc).__name__}: {exc}"
        if module and _raised_by_runpy(exc):  # -m pkg.missing: the lookup, not the program
            print(f"torchscope record: {exc}", file=sys.stderr)
        else:
            traceback.print_exc()
    except BaseException as exc:
        code, status = 1, f"error: {type(exc).__name__}: {exc}"
        traceback.print_exc()
    finally:
        if sim is not None:
            sim.restore()
        if viz is not None:
            calls, overflow = viztracer_records(viz)
            recorder.merge_records(calls)
            if overflow:
                print(
                    "torchscope: viztracer's buffer overflowed; the oldest calls were "
                    "dropped (lower --depth)",
                    file=sys.stderr,
                )
        if import_hook is not None:
            import_hook.uninstall()
        numba_events.uninstall(compile_listener)
        detach_target()  # torch is as it was, whatever the program did
        recorder.stop(status)
        uninstall_sigterm()
        sys.argv = saved_argv
        if sys.path and sys.path[0] != saved_path0:
            sys.path.pop(0)
    if sim is not None:
        print(f"torchscope: {sim.summary()}", file=sys.stderr)
    print(
        f"torchscope: trace written to {output} ({recorder.spans_written:,} spans)", file=sys.stderr
    )
    if check:
        found = _check(output)
        return code or found
    return code


def _check(output: str) -> int:
    """``record --check``: the detectors on the finished trace; 1 on an error finding."""
    from tracer.analyze.check.report import check, failing, render_text
    from tracer.file.trace import load

    trace = load(output)
    findings, not_stored = check(trace)
    print(render_text(trace, findings), file=sys.stderr)
    if not_stored:
        print(f"torchscope: warning: findings not stored: {not_stored}", file=sys.stderr)
    return 1 if failing(findings, "error") else 0
