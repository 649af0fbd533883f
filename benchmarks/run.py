"""Runs every benchmark in one process, one after the other, and writes RESULTS.md.

Each ``benchmarks/bench_*.py`` has ``run() -> str`` returning a markdown
section. Ratios inside a section are measured side by side in the same run,
so they hold on this machine even when absolute numbers drift.

    python -m benchmarks.run [--only tracer,module] [-o benchmarks/RESULTS.md]

With ``--only`` the other sections of an existing results file are kept.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import platform
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).parent


def machine() -> str:
    """One line describing where the numbers were measured."""
    return (
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"torch {torch.__version__}, {time.strftime('%Y-%m-%d')}"
    )


def _previous_sections(path: Path) -> dict[str, str]:
    """The sections of an earlier results file, so --only refreshes just its topics."""
    if not path.exists():
        return {}
    parts = path.read_text().split("<!-- bench:")[1:]
    return {p.split(" ", 1)[0]: "<!-- bench:" + p.rstrip() for p in parts}


def main(argv: list[str] | None = None) -> int:
    """Runs the selected benchmarks and writes the results file."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", help="comma-separated topics (tracer, module, optim, ...)")
    parser.add_argument("-o", "--output", default=str(HERE / "RESULTS.md"))
    ns = parser.parse_args(argv)
    topics = sorted(
        m.name[len("bench_") :]
        for m in pkgutil.iter_modules([str(HERE)])
        if m.name.startswith("bench_")
    )
    if ns.only:
        topics = [t for t in topics if t in ns.only.split(",")]
    sections = _previous_sections(Path(ns.output)) if ns.only else {}
    for topic in topics:
        print(f"benchmark {topic}...", file=sys.stderr, flush=True)
        started = time.perf_counter()
        module = importlib.import_module(f"benchmarks.bench_{topic}")
        body = module.run()
        sections[topic] = f"<!-- bench:{topic} measured {machine()} -->\n{body}"
        print(f"  {time.perf_counter() - started:.1f} s", file=sys.stderr)
    text = "\n\n".join(
        [
            "# Benchmark results",
            "Measured by `python -m benchmarks.run` (each section's machine and date are in "
            "the comment above it). Each section's ratios come from one run, side by side.",
            *(sections[t] for t in sorted(sections)),
        ]
    )
    Path(ns.output).write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
