"""docs/walkthroughs.md stays true: every span kind it names is one the code
records, every sample it names exists, every DeOldify variant is the sample's."""

from __future__ import annotations

import re
from pathlib import Path

from samples import dataparallel_hooks

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs" / "walkthroughs.md").read_text(encoding="utf-8")
FAMILIES = ("bn", "data", "dp", "hook", "import", "module", "optim", "py", "sched", "swa")
KIND = r"((?:{})\.[a-z_]+)".format("|".join(FAMILIES))


def _recorded_kinds() -> set[str]:
    """Kind literals in reimpl/ and tracer/: "dp.reduce_add", KIND = "import.init"."""
    pattern = re.compile(f'"{KIND}"')
    found: set[str] = set()
    for package in ("reimpl", "tracer"):
        for path in (ROOT / package).rglob("*.py"):
            found.update(pattern.findall(path.read_text(encoding="utf-8")))
    return found


def test_every_kind_named_is_recorded_somewhere():
    named = set(re.findall(f"`{KIND}`", DOC))
    assert len(named) > 40  # the map names the kinds of every walkthrough
    assert named - _recorded_kinds() == set()


def test_samples_and_variants_exist():
    for sample in set(re.findall(r"`(?:-m )?(samples[./][\w/.]+)", DOC)):
        # a file (samples/train_step.py) or a module (-m samples.syncbn)
        path = sample if sample.endswith(".py") else sample.replace(".", "/") + ".py"
        assert (ROOT / path).exists(), sample
    variants = set(re.findall(r"--variant ([\w-]+)`", DOC))
    assert variants == set(dataparallel_hooks.HOOKS)
