"""Running the rules on a trace file, storing their findings in it, printing them."""

from __future__ import annotations

import json
import os
from typing import Any

from tracer.analyze.check import Finding, all_rules, at_or_above, run_rules
from tracer.file.errors import TraceError
from tracer.file.findings import replace_findings
from tracer.file.trace import Trace

SCHEMA = 1  # of the --json output: {"schema", "file", "findings": [...], "counts"}
_COLUMNS = ("rule", "severity", "message")  # stored in their own columns, not in data


def check(trace: Trace, rule_ids: list[str] | None = None) -> tuple[list[Finding], str | None]:
    """Runs the rules and stores their findings in the trace file (replacing
    what an earlier check of the same rules stored: no duplicates).

    Returns the findings and, when they could not be stored (a read-only
    file), why: the findings are worth printing all the same.
    """
    findings = run_rules(trace, rule_ids)
    ran = [r.id for r in all_rules()] if rule_ids is None else list(rule_ids)
    rows = [
        (
            f.rule,
            f.severity,
            f.message,
            f.evidence[0] if f.evidence else None,
            json.dumps({k: v for k, v in f.to_json(trace).items() if k not in _COLUMNS}),
        )
        for f in findings
    ]
    try:
        replace_findings(trace.path, ran, rows)
    except TraceError as exc:
        return findings, str(exc)
    return findings, None


def failing(findings: list[Finding], fail_on: str) -> bool:
    """Whether a finding reaches ``fail_on`` (``never``: none does)."""
    return fail_on != "never" and any(at_or_above(f.severity, fail_on) for f in findings)


def _where(trace: Trace, row: int) -> str:
    thread = trace.threads[int(trace.thread[row])]
    process = trace.process_of(row)
    return (
        f"span {row}: {trace.kind_of(row)} {trace.name_of(row)!r} on {thread.label}, "
        f"{process.label}"
    )


def render_text(trace: Trace, findings: list[Finding]) -> str:
    """Each finding: severity, rule, message, evidence spans, source, fix."""
    if not findings:
        return f"{trace.path}: no findings ({len(all_rules())} rules)"
    out = []
    for f in findings:
        out.append(f"{f.severity}: [{f.rule}] {f.message}")
        for row in f.evidence[:6]:
            out.append(f"    {_where(trace, row)}")
        if len(f.evidence) > 6:
            out.append(f"    ... and {len(f.evidence) - 6} more spans")
        source = f.details.get("source")
        if source:
            out.append(
                f"    source: {os.path.relpath(source) if os.path.isabs(source) else source}"
            )
        out.append(f"    fix: {f.fix}")
    counts = {s: sum(f.severity == s for f in findings) for s in ("error", "warning", "info")}
    out.append(
        f"{trace.path}: "
        + ", ".join(f"{n} {s}{'s' if n != 1 else ''}" for s, n in counts.items() if n)
    )
    return "\n".join(out)


def render_json(trace: Trace, findings: list[Finding]) -> str:
    """One object with a stable schema (``SCHEMA``)."""
    data: dict[str, Any] = {
        "schema": SCHEMA,
        "file": trace.path,
        "findings": [f.to_json(trace) for f in findings],
        "counts": {s: sum(f.severity == s for f in findings) for s in ("error", "warning", "info")},
    }
    return json.dumps(data, indent=2)
