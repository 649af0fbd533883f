"""``torchscope record``: runs a program under the recorder."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

from tracer.distributed import launch
from tracer.targets import TARGETS

if TYPE_CHECKING:
    from tracer.targets.torch.sim_devices import SimDevices

ORDER = 30  # place in --help


def default_output(target: str, module: bool) -> str:
    """train.py -> train.tsdb; -m pkg.train -> pkg_train.tsdb."""
    stem = target if module else os.path.splitext(os.path.basename(target))[0]
    return f"{(stem or 'trace').replace('.', '_')}.tsdb"


def _device_count(text: str) -> int:
    """``--sim-devices N``: a positive number of devices."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a number of devices >= 1, got {text!r}")
    return int(text)


def _sim_devices(ns: argparse.Namespace) -> SimDevices | None:
    """``--sim-devices N`` and its options: the simulation the run installs (None without)."""
    if not ns.sim_devices:
        return None
    from tracer.targets.torch.sim_devices import SimDevices

    return SimDevices(ns.sim_devices, lockstep=ns.lockstep, device_count=ns.sim_device_count)


def run(ns: argparse.Namespace) -> int:
    """Runs a program under the recorder."""
    from tracer.recording.runner import run_under_recorder

    if ns.module:
        target, args = ns.module[0], ns.module[1:] + ns.args
    elif ns.args:
        target, args = ns.args[0], ns.args[1:]
    else:
        print("torchscope record: give a script (record train.py) or -m module", file=sys.stderr)
        return 2
    if (ns.sim_device_count or not ns.lockstep) and not ns.sim_devices:
        print(
            "torchscope record: --sim-device-count and --no-lockstep go with --sim-devices N",
            file=sys.stderr,
        )
        return 2
    if ns.sim_devices and ns.target != "torch":
        print(
            "torchscope record: --sim-devices runs torch.nn.DataParallel on simulated devices: "
            "add --target torch (reimpl programs name sim:k devices themselves)",
            file=sys.stderr,
        )
        return 2
    output = ns.output or default_output(target, bool(ns.module))
    if launch.requested(ns):  # torchrun starts the ranks; each one records (launch.py)
        return launch.launch(ns, (["-m"] if ns.module else []) + [target, *args], output)
    return run_under_recorder(
        target,
        args,
        module=bool(ns.module),
        output=output,
        flush_interval=ns.flush_interval,
        deep=ns.deep,
        depth=ns.depth,
        backward_spans=not ns.no_backward_spans,
        append=ns.append,
        check=ns.check,
        imports=not ns.no_imports,
        record_target=ns.target,
        sim_devices=_sim_devices(ns),
    )


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Declares ``record``."""
    p = sub.add_parser("record", help="run a script (or -m module) under the recorder")
    p.add_argument("-o", "--output", help="trace file to write (default: SCRIPT.tsdb)")
    p.add_argument(
        "-m",
        dest="module",
        nargs=argparse.REMAINDER,
        help="run a module as __main__, like python -m (what follows goes to it)",
    )
    p.add_argument(
        "--target",
        choices=TARGETS,
        default="reimpl",
        help="what to record: reimpl's instrumented code (default), or an unmodified "
        "PyTorch program through torch's public hooks (docs/torch-target.md)",
    )
    p.add_argument(
        "--flush-interval",
        type=float,
        default=1.0,
        help="seconds between flushes to disk (default 1)",
    )
    p.add_argument(
        "--deep",
        action="store_true",
        help="also record every Python call (viztracer) beneath the spans",
    )
    p.add_argument("--depth", type=int, default=40, help="--deep: deepest call stack kept")
    p.add_argument(
        "--no-imports",
        action="store_true",
        help="do not record the program's imports (they stand aside in the views anyway)",
    )
    p.add_argument(
        "--check",
        action="store_true",
        help="run `torchscope check` on the trace when the program ends",
    )
    p.add_argument(
        "--append",
        action="store_true",
        help="add this run to an existing trace instead of replacing it",
    )
    p.add_argument(
        "--no-backward-spans",
        action="store_true",
        help="skip the per-module backward spans (one autograd hook per module boundary, "
        "most of the recording cost of models with many small layers)",
    )
    p.add_argument(
        "--sim-devices",
        type=_device_count,
        default=0,
        metavar="N",
        help="run torch.nn.DataParallel on N simulated devices on the CPU (with --target torch; "
        "device ids 0..N-1 become sim:0..sim:N-1)",
    )
    p.add_argument(
        "--lockstep",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="with --sim-devices: replica threads take turns at every module forward and "
        "print, so a race between replicas reproduces on every run (default: on)",
    )
    p.add_argument(
        "--sim-device-count",
        action="store_true",
        help="with --sim-devices N: torch.cuda.device_count() answers N during the run, for "
        "programs that wrap their model only when it is > 1 (is_available() stays False)",
    )
    launch.add_launch_options(p)
    p.add_argument("args", nargs=argparse.REMAINDER, help="script and its arguments")
    p.set_defaults(func=run)
