"""``torchscope merge``: the part files of a distributed run become one trace.

Two streaming passes over the inputs, one block in memory at a time:

1. every ``collective.*`` span is read (rank, group, seq, times shifted onto
   rank 0's timeline) and matched across ranks (``matching.py``);
2. every part is copied through the ordinary writer (``StoreWriter``: run
   ids, checksums, format 2), one lane per rank as it was recorded, with its
   times shifted by its host's clock offset (``clock.py``), its strings
   re-interned, and each collective span given its wait for the slowest
   rank, its peers and who was missing.

The run's summary (inputs and their clock shifts with the error bound, world
size, missing ranks, ranks that stopped early with the last collective each
reached, incomplete collectives) is stored as JSON in the ``merge`` meta key
and returned. Findings stay behind: run ``torchscope check`` on the result.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

from tracer import progress
from tracer.distributed.matching import Arrival, Matches, arrivals, match
from tracer.distributed.parts import PartFile, open_part_file, thread_index
from tracer.file.blocks import Block
from tracer.file.errors import TraceError
from tracer.file.store import SQLITE_MAGIC, Batch, StoreWriter, connect, file_kind, new_run_id

_NEVER_CLOSED = "died (never closed its part: killed, crashed, or still running)"


@dataclass
class MergeResult:
    """What the merge found; ``report`` is also stored in the trace's ``merge`` meta."""

    output: str
    spans: int
    report: dict
    warnings: list[str]


def _rank_of(pf: PartFile, part: int) -> int | None:
    return pf.ranks.get(part)


def _world_size(inputs: list[PartFile], found: list[Arrival]) -> int | None:
    sizes = [
        s["payload"]["world_size"]
        for pf in inputs
        for s in pf.snapshots
        if s["kind"] == "rank" and isinstance(s["payload"].get("world_size"), int)
    ]
    sizes += [a.world_size for a in found if a.group == "world" and a.world_size]
    return max(sizes) if sizes else None


def _total_spans(inputs: list[PartFile]) -> int:
    return sum(p.spans for pf in inputs for p in pf.processes)


def _scan(inputs: list[PartFile]) -> list[Arrival]:
    """Pass 1: every numbered collective span of every rank."""
    found: list[Arrival] = []
    with progress.task("merge: matching collectives", total=_total_spans(inputs)) as bar:
        for where, pf in enumerate(inputs):
            ranks = pf.ranks
            for block in pf.blocks():
                rank = ranks.get(block.part)
                if rank is not None:
                    starts = pf.shifted(block.starts)
                    found.extend(arrivals(block, pf.strings, rank, where, starts))
                bar.advance(block.n)
    return found


def _with_matches(block: Block, where: int, matches: Matches) -> tuple[np.ndarray | None, list]:
    """The block's attribute index and list, collective spans given their match."""
    index = None if block.attr_index is None else block.attr_index.copy()
    values = list(block.attrs or [])
    for row, span_id in enumerate(block.ids.tolist()):
        extra = matches.attrs.get((where, block.part, span_id))
        if extra is None:
            continue
        if index is None:
            index = np.full(block.n, -1, dtype=np.int32)
        slot = int(index[row])
        values.append({**(values[slot] if slot >= 0 else {}), **extra})
        index[row] = len(values) - 1
    return index, values


def _copy(
    pf: PartFile, where: int, writer: StoreWriter, matches: Matches, run_id: str, bar: Any
) -> tuple[int, dict[int, int]]:
    """Pass 2 for one input: its parts, threads, snapshots and blocks."""
    new_part: dict[int, int] = {}
    for p in pf.processes:
        writer.run_id = p.run or run_id  # each part keeps the run it was recorded in
        new_part[p.part] = writer.add_process(
            p.pid, p.ppid or 0, p.role, p.role_index, json.dumps(p.argv), p.host or "",
            pf.shifted_one(p.start_ns) or 0,
        )  # fmt: skip
        status = _NEVER_CLOSED if p.status == "running" else p.status
        writer.update_process(new_part[p.part], end_ns=pf.shifted_one(p.end_ns), status=status)
    writer.run_id = run_id
    for p in pf.processes:
        threads = [(t.idx, t.tid, t.name, t.device) for t in pf.threads if t.part == p.part]
        snaps = [
            (pf.shifted_one(s["t_ns"]), s["kind"], s["key"], s["payload"])
            for s in pf.snapshots
            if s["part"] == p.part
        ]
        if threads or snaps:
            writer.write(new_part[p.part], None, threads, snaps)
    texts = [str(s) if s is not None else "" for s in pf.strings[1:]]
    ids = writer.string_ids(set(texts) - {""})
    recode = np.array([0] + [ids.get(t, 0) for t in texts], dtype=np.int64)
    local = thread_index(pf)
    spans = 0
    for block in pf.blocks():
        index, values = _with_matches(block, where, matches)
        batch = Batch(
            id_base=int(block.ids.min()),
            ids=block.ids,
            threads=local[block.threads],
            starts=pf.shifted(block.starts),
            durs=block.durs,
            kinds=recode[block.kinds],
            names=recode[block.names],
            funcs=recode[block.funcs],
            links=block.links,
            attr_index=index,
            attrs=values or None,
        )
        writer.write(new_part[block.part], batch, [], [])
        spans += block.n
        bar.advance(block.n)
    return spans, new_part


def _input_report(pf: PartFile) -> dict:
    ranks = sorted(pf.ranks.values())
    out = {"path": pf.path, "host": pf.host, "ranks": ranks, "shift_ns": pf.shift_ns,
           "error_ns": pf.error_ns, "estimates": pf.estimates}  # fmt: skip
    if len(pf.estimates) >= 2:  # a long run: how fast this host's clock ran against rank 0's
        first, last = pf.estimates[0], pf.estimates[-1]
        span = max(last["at_ns"] - first["at_ns"], 1)
        out["drift_ppm"] = (last["offset_ns"] - first["offset_ns"]) / span * 1e6
    return out


def _report(inputs: list[PartFile], matches: Matches, world: int | None) -> dict:
    """Which ranks are missing or stopped early, the last collective each reached."""
    parts = [(pf, p) for pf in inputs for p in pf.processes]
    present: dict[int, list[str]] = {}
    for pf, p in parts:
        rank = _rank_of(pf, p.part)
        if rank is not None:
            present.setdefault(rank, []).append(p.status)
    last = {
        r: {"group": a.group, "seq": a.seq, "op": a.op, "name": a.name,
            "interrupted": a.interrupted}
        for r, a in sorted(matches.last.items())
    }  # fmt: skip
    stopped = [
        {"rank": r, "status": _NEVER_CLOSED if s[0] == "running" else s[0], "last": last.get(r)}
        for r, s in sorted(present.items())
        if s[0] != "ok"
    ]
    return {
        "inputs": [_input_report(pf) for pf in inputs],
        "world_size": world,
        "ranks": sorted(present),
        "missing": sorted(set(range(world or 0)) - set(present)),
        "stopped_early": stopped,
        "last_collective": {str(r): v for r, v in last.items()},
        "collectives": {"points": matches.points, "complete": matches.complete},
        "incomplete": matches.incomplete[:100],
        "incomplete_count": len(matches.incomplete),
    }


def _merged_meta(inputs: list[PartFile], report: dict) -> dict[str, str]:
    meta = {k: v for k, v in inputs[0].meta.items() if k not in ("format", "schema_version")}
    mirrors: dict[str, str] = {}
    for pf in inputs:
        try:
            mirrors.update(json.loads(pf.meta.get("mirrors", "{}")))
        except ValueError:
            pass
    meta["mirrors"] = json.dumps(mirrors)
    meta["merge"] = json.dumps(report)
    errors = [i["error_ns"] for i in report["inputs"]]
    meta["clock_error_ns"] = str(max(errors) if None not in errors else "unknown")
    return meta


def _refuse_output(output: str) -> None:
    """Replaces only a trace: any other file at ``output`` is left untouched."""
    if not os.path.exists(output):
        return
    if os.path.isdir(output):
        raise TraceError(f"{output}: is a directory; give the merged trace a file name.")
    with open(output, "rb") as fh:
        is_sqlite = fh.read(len(SQLITE_MAGIC)) == SQLITE_MAGIC
    kind = "foreign"
    if is_sqlite:
        conn = connect(output, readonly=True)
        try:
            kind = file_kind(conn)[0]
        finally:
            conn.close()
    if kind == "foreign":
        raise TraceError(
            f"{output}: exists and is not a torchscope trace; refusing to overwrite it. "
            "Choose another output file."
        )


def merge(output: str, paths: list[str]) -> MergeResult:
    """Merges the part files ``paths`` into a new trace at ``output``."""
    if not paths:
        raise TraceError("merge: give the part files to merge.")
    out_abs = os.path.abspath(output)
    if any(os.path.abspath(p) == out_abs for p in paths):
        raise TraceError(f"{output}: is also an input; write the merged trace elsewhere.")
    _refuse_output(output)
    inputs = []
    try:
        for path in paths:
            inputs.append(open_part_file(path))
        found = _scan(inputs)
        world = _world_size(inputs, found)
        matches = match(found, world)
        report = _report(inputs, matches, world)
        run_id = inputs[0].meta.get("run_id") or new_run_id()
        tmp = f"{output}.merging"
        if os.path.exists(tmp):
            os.unlink(tmp)
        writer = StoreWriter(tmp, run_id=run_id, mode="new")
        spans = 0
        try:
            writer.set_meta(_merged_meta(inputs, report))
            with progress.task("merge: writing", total=_total_spans(inputs)) as bar:
                for where, pf in enumerate(inputs):
                    spans += _copy(pf, where, writer, matches, run_id, bar)[0]
        except BaseException:
            writer.close()
            os.unlink(tmp)  # never half a trace
            raise
        writer.close()
        os.replace(tmp, output)
    finally:
        for pf in inputs:
            pf.close()
    warnings = [w for pf in inputs for w in pf.warnings]
    return MergeResult(output, spans, report, warnings)


def merge_and_report(output: str, paths: list[str]) -> int:
    """``merge`` for the command line: the report (and warnings) on stderr, progress
    bars on a terminal; 2 on a bad input, as every command."""
    try:
        with progress.shown():
            result = merge(output, paths)
    except TraceError as exc:
        print(f"torchscope merge: {exc}", file=sys.stderr)
        return 2
    for warning in result.warnings:
        print(f"torchscope: warning: {warning}", file=sys.stderr)
    print(render(result), file=sys.stderr)
    return 0


def render(result: MergeResult) -> str:
    """The report as a few lines for the terminal."""
    r = result.report
    lines = [f"torchscope: merged {len(r['inputs'])} part file(s) into {result.output} "
             f"({result.spans:,} spans, ranks {_ranges(r['ranks'])})"]  # fmt: skip
    for i in r["inputs"]:
        err = "no estimate" if i["error_ns"] is None else f"± {i['error_ns'] / 1e6:.3f} ms"
        name = f"{os.path.basename(i['path'])} ({i['host']}, ranks {_ranges(i['ranks'])})"
        drift = f", drift {i['drift_ppm']:+.1f} ppm" if "drift_ppm" in i else ""
        lines.append(f"  {name}: clock shift {i['shift_ns'] / 1e6:+.3f} ms {err}{drift}")
    c = r["collectives"]
    lines.append(f"  collectives: {c['points']} matched points, {c['complete']} complete")
    if r["missing"]:
        lines.append(f"  missing ranks (no part): {_ranges(r['missing'])}")
    for s in r["stopped_early"]:
        last = s["last"]
        where = "no collective" if last is None else (
            f"last collective {last['op']} #{last['seq']} of group {last['group']} "
            f"({last['name']}{', interrupted' if last['interrupted'] else ''})"
        )  # fmt: skip
        lines.append(f"  rank {s['rank']} stopped early: {s['status']}; {where}")
    return "\n".join(lines)


def _ranges(numbers: list[int]) -> str:
    from tracer.file.trace import _ranges as ranges

    return ranges(numbers) or "none"
