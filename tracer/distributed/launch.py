"""``torchscope record --nproc-per-node N ...``: torchrun launches, every rank records.

A thin front: every launch option goes to torchrun (``torch.distributed.run``)
unchanged, and each rank's program becomes ``python -m tracer.cli record -o
PART program...``. The ranks of one host write one part file beside the
output (``NAME.node<K>.tsdb``: never a file shared across hosts), each rank
its own part of it; the launch command travels to them in
``TORCHSCOPE_LAUNCH`` and lands in each rank's ``rank`` snapshot. When a
single-node launch ends (however it ends) the part is merged into the output
(``merge.py``); with several nodes each host keeps its part and the command
to merge them is printed.
"""

from __future__ import annotations

import argparse
import os
import shlex
import socket
import subprocess
import sys

# torchrun's options that take a value, and its flags (see torch/distributed/run.py);
# tests/tracer/distributed/test_launch.py checks this list against the installed torch.
VALUE_OPTIONS = (
    "nnodes", "nproc-per-node", "rdzv-backend", "rdzv-endpoint", "rdzv-id", "rdzv-conf",
    "max-restarts", "monitor-interval", "start-method", "event-log-handler", "role",
    "log-dir", "redirects", "tee", "local-ranks-filter", "duplicate-stdout-filters",
    "duplicate-stderr-filters", "node-rank", "master-addr", "master-port", "local-addr",
    "logs-specs", "numa-binding", "signals-to-handle", "shutdown-timeout",
)  # fmt: skip
FLAG_OPTIONS = ("standalone", "virtual-local-rank")
# What the front decides itself: the program each rank runs.
NOT_PASSED = ("module", "no-python", "run-path")
_SHOWN = {"nproc-per-node", "nnodes", "node-rank", "rdzv-endpoint", "rdzv-backend", "standalone"}


def _dest(name: str) -> str:
    return "torchrun_" + name.replace("-", "_")


def add_launch_options(parser: argparse.ArgumentParser) -> None:
    """Declares torchrun's options on ``record`` (the common ones in --help)."""
    group = parser.add_argument_group(
        "distributed launch (any torchrun option; --nproc-per-node starts one)"
    )
    for name in VALUE_OPTIONS:
        group.add_argument(
            f"--{name}",
            f"--{name.replace('-', '_')}",
            dest=_dest(name),
            metavar=name.split("-")[-1].upper(),
            help=f"torchrun --{name}" if name in _SHOWN else argparse.SUPPRESS,
        )
    for name in FLAG_OPTIONS:
        group.add_argument(
            f"--{name}",
            dest=_dest(name),
            action="store_true",
            help=f"torchrun --{name}" if name in _SHOWN else argparse.SUPPRESS,
        )


def requested(ns: argparse.Namespace) -> bool:
    """Whether this ``record`` is a distributed launch."""
    return getattr(ns, _dest("nproc-per-node"), None) is not None


def torchrun_args(ns: argparse.Namespace) -> list[str]:
    """The launch options given, as torchrun's command line spells them."""
    out: list[str] = []
    for name in VALUE_OPTIONS:
        value = getattr(ns, _dest(name), None)
        if value is not None:
            out += [f"--{name}", str(value)]
    for name in FLAG_OPTIONS:
        if getattr(ns, _dest(name), False):
            out.append(f"--{name}")
    return out


def part_path(output: str, ns: argparse.Namespace) -> str:
    """This host's part file: ``NAME.node<K>.tsdb`` (the host's name when
    the node rank is assigned at rendezvous)."""
    stem = output[: -len(".tsdb")] if output.endswith(".tsdb") else output
    node = getattr(ns, _dest("node-rank"), None)
    nnodes = str(getattr(ns, _dest("nnodes"), None) or "1")
    if node is None:
        node = "0" if nnodes == "1" else socket.gethostname()
    return f"{stem}.node{node}.tsdb"


def record_flags(ns: argparse.Namespace) -> list[str]:
    """The recorder options each rank's ``record`` gets from the front's."""
    flags = ["--flush-interval", str(ns.flush_interval)]
    for name in ("deep", "no_imports", "no_backward_spans"):
        if getattr(ns, name, False):
            flags.append("--" + name.replace("_", "-"))
    if getattr(ns, "deep", False):
        flags += ["--depth", str(ns.depth)]
    if getattr(ns, "target", "reimpl") != "reimpl":
        flags += ["--target", ns.target]
    return flags


def launch(ns: argparse.Namespace, program: list[str], output: str) -> int:
    """Runs torchrun over ``record``; merges a single node's part into ``output``.

    ``program``: ``[script, args...]`` or ``["-m", module, args...]``.
    """
    part = part_path(output, ns)
    if os.path.exists(part):
        os.unlink(part)  # a previous launch's part: this run's ranks start it afresh
    command = [
        sys.executable, "-m", "torch.distributed.run", *torchrun_args(ns),
        "-m", "tracer.cli", "record", "-o", part, *record_flags(ns), *program,
    ]  # fmt: skip
    env = dict(os.environ, TORCHSCOPE_LAUNCH=shlex.join(sys.argv))
    print(f"torchscope: torchrun, each rank recorded into {part}", file=sys.stderr)
    try:
        code = subprocess.call(command, env=env)
    except KeyboardInterrupt:
        code = 130
    nnodes = str(getattr(ns, _dest("nnodes"), None) or "1")
    if not os.path.exists(part):
        print(f"torchscope: no rank wrote {part}; nothing to merge", file=sys.stderr)
        return code or 1
    if nnodes != "1":
        print(
            f"torchscope: this host's part is {part}; copy every host's part here and run\n"
            f"  torchscope merge {output} {part.rsplit('.node', 1)[0]}.node*.tsdb",
            file=sys.stderr,
        )
        return code
    from tracer.distributed.merge import merge_and_report

    return merge_and_report(output, [part]) or code
