"""``torchscope check``: detectors that name the bugs a trace shows.

Each rule is a function from a loaded trace to findings, registered with a
stable id and a severity. Rules read only the trace file (what the recorder
captured at record time: hook identity, thread, device, the attributes a
hook object rebound, the order of optimizer and scheduler calls), so they
run on any trace, later, in another process.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tracer import progress
from tracer.file.trace import Trace

SEVERITIES = ("info", "warning", "error")


@dataclass
class Finding:
    """One bug a rule found, with the spans that show it and how to fix it."""

    rule: str
    severity: str
    message: str
    evidence: list[int]  # span rows, the most telling first
    fix: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self, trace: Trace) -> dict[str, Any]:
        """The stable JSON form (``check --json``, the findings table)."""
        return {
            "rule": self.rule,
            "severity": self.severity,
            "message": self.message,
            "evidence": [
                {"span": row, "part": int(trace.part[row]), "seq": int(trace.seq[row])}
                for row in self.evidence
            ],
            "fix": self.fix,
            "details": self.details,
        }


@dataclass(frozen=True)
class Rule:
    """A detector: its id, its severity, what it looks for."""

    id: str
    severity: str
    summary: str
    run: Callable[[Trace], Iterable[Finding]]


RULES: dict[str, Rule] = {}


def rule(rule_id: str, severity: str, summary: str) -> Callable:
    """Registers a detector function under a stable id."""

    def register(fn: Callable[[Trace], Iterable[Finding]]) -> Callable:
        RULES[rule_id] = Rule(rule_id, severity, summary, fn)
        return fn

    return register


def rows_of_kinds(trace: Trace, kinds: tuple[str, ...]) -> np.ndarray:
    """Rows of the spans of any of ``kinds`` (empty when the trace has none)."""
    codes = [c for c in (trace.code(k) for k in kinds) if c >= 0]
    return np.flatnonzero(np.isin(trace.kind, codes)) if codes else np.empty(0, dtype=np.int64)


def run_rules(trace: Trace, rule_ids: Iterable[str] | None = None) -> list[Finding]:
    """The findings of the chosen rules (all by default), in rule order."""
    _load_rules()
    chosen = list(RULES) if rule_ids is None else list(rule_ids)
    unknown = [r for r in chosen if r not in RULES]
    if unknown:
        raise ValueError(f"unknown rule {unknown[0]!r}; the rules are: {', '.join(RULES)}")
    findings: list[Finding] = []
    for rule_id in progress.track(chosen, "running the rules", total=len(chosen)):
        findings.extend(RULES[rule_id].run(trace))
    return findings


def at_or_above(severity: str, threshold: str) -> bool:
    """Whether ``severity`` reaches ``threshold`` (info < warning < error)."""
    return SEVERITIES.index(severity) >= SEVERITIES.index(threshold)


def _load_rules() -> None:
    from tracer.analyze.check import batchnorm, data, devices, hooks, params, training  # noqa: F401  registers the rules


def all_rules() -> list[Rule]:
    """Every registered rule, in order."""
    _load_rules()
    return list(RULES.values())
