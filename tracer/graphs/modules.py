"""The module hierarchy: modules, their parameters, buffers and hooks, with forward time.

Structure comes from the ``module`` snapshots (the last one of each root);
time and hook calls come from the spans. A hook is drawn once per hook
*object* (``hook_id``: the object holding its state), with an edge to every
module that registered it or called it. When one hook object is called from
more than one thread -- replica threads of DataParallel sharing the
original's ``_forward_hooks`` -- it is drawn in red: that is the DeOldify bug,
where replicas overwrite each other's ``hook.stored``.
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict

import networkx as nx
import numpy as np

from tracer.file.trace import Trace
from tracer.graphs.prune import keep_top, note_left_out
from tracer.graphs.render import ALERT, TIMES, fmt_ns, kind_color, label, short

HOOK_KINDS = ("hook.forward_pre", "hook.forward", "hook.backward_pre", "hook.backward")
# torchscope's own hooks (lockstep's global turn-taking hooks) are machinery, not the model's
INTERNAL_HOOKS = ("reimpl.nn.parallel._lockstep.",)
_MAX_TENSOR_NODES = 120  # beyond this, parameters and buffers become lines in their module


def latest_snapshots(trace: Trace, parts: set[int] | None = None) -> list[dict]:
    """The last ``module`` snapshot of each root (a structure can change while recording)."""
    last: dict[str, dict] = {}
    for snap in trace.snapshots:
        if snap["kind"] == "module" and (parts is None or snap["part"] in parts):
            last[snap["key"]] = snap
    return list(last.values())


def _forward_times(trace: Trace, mask: np.ndarray) -> dict[str, tuple[int, int]]:
    """module path -> (calls, inclusive ns) of ``module.forward`` spans."""
    code = trace.code("module.forward")
    rows = np.flatnonzero(mask & (trace.kind == code)) if code >= 0 else np.zeros(0, int)
    names, inverse = np.unique(trace.name[rows], return_inverse=True)
    counts = np.bincount(inverse, minlength=len(names))
    total = np.bincount(inverse, weights=trace.dur_ns[rows], minlength=len(names))
    return {str(trace.strings[n]): (int(c), int(t)) for n, c, t in zip(names, counts, total)}


def resolve(
    span_path: str, modules: dict[str, str], root: str, elsewhere: frozenset[str] = frozenset()
) -> str | None:
    """The snapshot path a span's module path names (``modules``: path -> class).

    A DataParallel replica is its own root, so its spans say ``encoder.0``
    (and the class name, ``UNet``, for the replica root) where the snapshot
    of the wrapper says ``module.encoder.0`` and ``module``. A path that
    another root's snapshot has exactly (``elsewhere``) belongs to that root.
    """
    if span_path in modules:
        return span_path
    if span_path in elsewhere:
        return None
    tails = [q for q in modules if q.endswith("." + span_path)]
    if tails:
        return min(tails, key=len)
    tops = [q for q, cls in modules.items() if cls == span_path and "." not in q and q != root]
    return tops[0] if len(tops) == 1 else None


def _snapshot_times(
    snap: dict, times: dict[str, tuple[int, int]], exact: frozenset[str]
) -> dict[str, tuple[int, int]]:
    """Forward calls and time per snapshot path, replicas' spans counted with their original."""
    payload = snap["payload"]
    modules = {m["path"]: m.get("cls", "") for m in payload.get("modules", [])}
    out: dict[str, tuple[int, int]] = {}
    for span_path, (calls, ns) in times.items():
        path = resolve(span_path, modules, payload.get("root", ""), exact)
        if path is not None:
            c, t = out.get(path, (0, 0))
            out[path] = (c + calls, t + ns)
    return out


def hook_calls(trace: Trace, mask: np.ndarray) -> dict[int, dict]:
    """hook object id -> its name, calls per (kind, module path, thread label), total ns."""
    codes = [c for c in map(trace.code, HOOK_KINDS) if c >= 0]
    rows = np.flatnonzero(mask & np.isin(trace.kind, codes)) if codes else []
    labels = {t.row: t.label for t in trace.threads}
    hooks: dict[int, dict] = {}
    for row in map(int, rows):
        attrs = trace.attrs(row)
        hid = attrs.get("hook_id")
        if hid is None:
            continue
        entry = hooks.setdefault(
            int(hid), {"name": attrs.get("hook", trace.name_of(row)), "calls": Counter(), "ns": 0}
        )
        thread = labels.get(int(trace.thread[row]), "?")
        kind = trace.kind_of(row).removeprefix("hook.")
        entry["calls"][(kind, attrs.get("module", "?"), thread)] += 1
        entry["ns"] += int(trace.dur_ns[row])
        if "error" in attrs:
            entry["error"] = attrs["error"]
    return hooks


def _tensor_line(t: dict) -> str:
    return (
        f"{t['name']} {list(t.get('shape', []))} {str(t.get('dtype', '')).removeprefix('torch.')}"
    )


def _add_modules(graph: nx.DiGraph, snap: dict, times: dict, keep: set[str] | None) -> int:
    """Module and tensor nodes of one root; returns how many modules were left out."""
    key = snap["key"]
    modules = snap["payload"].get("modules", [])
    root = snap["payload"].get("root", "")
    by_path = {m["path"]: m for m in modules}
    tensors = sum(len(m.get("parameters", [])) + len(m.get("buffers", [])) for m in modules)
    as_nodes = tensors <= _MAX_TENSOR_NODES
    dropped = 0
    for m in modules:
        path = m["path"]
        if keep is not None and path not in keep:
            dropped += 1
            continue
        calls, ns = times.get(path, (0, 0))
        lines = [short(path), m.get("cls", "")]
        lines.append(f"forward {TIMES}{calls:,} · {fmt_ns(ns)}" if calls else "not called")
        if not as_nodes:
            lines += [_tensor_line(t) for t in m.get("parameters", []) + m.get("buffers", [])]
        graph.add_node(
            ("module", key, path),
            type="module",
            path=path,
            cls=m.get("cls"),
            calls=calls,
            forward_ns=ns,
            label=label(*lines),
            fillcolor=kind_color("module"),
        )
        for child in m.get("children", []):
            child_path = child if path == root else f"{path}.{child}"
            if child_path in by_path and (keep is None or child_path in keep):
                graph.add_edge(("module", key, path), ("module", key, child_path), type="child")
        if as_nodes:
            for kind in ("parameters", "buffers"):
                for t in m.get(kind, []):
                    node = (kind[:-1], key, f"{path}.{t['name']}")
                    graph.add_node(
                        node,
                        type=kind[:-1],
                        name=t["name"],
                        tensor_shape=list(t.get("shape", [])),
                        dtype=t.get("dtype"),
                        label=label(_tensor_line(t)),
                        shape="note",
                        style="filled" if kind == "parameters" else "filled,dashed",
                        fillcolor="#ffffff",
                        fontsize="9",
                    )
                    graph.add_edge(("module", key, path), node, type=kind[:-1], arrowhead="none")
    return dropped


def _kept_paths(snap: dict, times: dict, top: int | None, min_ns: int) -> set[str] | None:
    """The heaviest ``top`` modules by forward time, modules with hooks, and their ancestors."""
    modules = snap["payload"].get("modules", [])
    if top is None or (len(modules) <= top and not min_ns):
        return None
    paths = [m["path"] for m in modules]
    weight = np.array([times.get(p, (0, 0))[1] for p in paths])
    kept = {paths[i] for i in keep_top(weight, top, min_ns).index}
    root = snap["payload"].get("root", "")
    kept.update(m["path"] for m in modules if m.get("hooks"))  # hooks are why people look
    for p in list(kept):
        parts = p.split(".")
        kept.update(".".join(parts[:k]) for k in range(1, len(parts)))
    kept.add(root)
    return kept


def _registered(snaps: list[dict]) -> dict[int, dict]:
    """hook object id -> its name and the (kind, root key, module path) it is registered on."""
    registered: dict[int, dict] = defaultdict(lambda: {"name": "?", "on": set()})
    for snap in snaps:
        key, payload = snap["key"], snap["payload"]
        places = [
            (kind, m["path"], items)
            for m in payload.get("modules", [])
            for kind, items in m.get("hooks", {}).items()
        ]
        places += [
            (f"global {kind}", payload.get("root", ""), items)
            for kind, items in payload.get("global_hooks", {}).items()
        ]
        for kind, path, items in places:
            for h in items:
                registered[int(h["id"])]["name"] = h.get("name", "?")
                registered[int(h["id"])]["on"].add((kind, key, path))
    return registered  # fmt: skip


def _add_hook_node(graph: nx.DiGraph, hid: int, name: str, info: dict) -> tuple[tuple, bool]:
    """The node of one hook object, red when several threads called it."""
    threads = sorted({t for (_k, _m, t) in info["calls"]})
    shared = len(threads) > 1
    n_calls = sum(info["calls"].values())
    lines = [short(name), f"object {hid:#x}"]
    lines.append(f"called {TIMES}{n_calls:,} · {fmt_ns(info['ns'])}" if n_calls else "never called")
    if shared:
        lines += [f"! called from {len(threads)} threads:", *threads[:6]]
    if "error" in info:
        lines.append(short(f"error: {info['error']}", 60))
    node = ("hook", hid)
    graph.add_node(
        node,
        type="hook",
        name=name,
        hook_id=hid,
        calls=n_calls,
        threads=threads,
        shared_threads=shared,
        label=label(*lines),
        shape="octagon" if shared else "hexagon",
        fillcolor="#ffcdd2" if shared else kind_color("hook"),
        color=ALERT if shared else None,
        fontcolor=ALERT if shared else None,
        penwidth="2.5" if shared else None,
    )
    return node, shared


def _add_hooks(graph: nx.DiGraph, snaps: list[dict], calls: dict[int, dict]) -> None:
    """One node per hook object, an edge to each module that registered or ran it."""
    registered = _registered(snaps)
    module_nodes = {(n[1], n[2]): n for n in graph.nodes if n[0] == "module"}
    exact = frozenset(m["path"] for s in snaps for m in s["payload"].get("modules", []))
    tables = [
        (s["key"], {m["path"]: m.get("cls", "") for m in s["payload"].get("modules", [])},
         s["payload"].get("root", ""))
        for s in snaps
    ]  # fmt: skip

    def targets(span_path: str) -> list[tuple]:
        """The drawn modules a hook span's module path names, one per root."""
        found = []
        for key, modules, root in tables:
            path = resolve(span_path, modules, root, exact)
            if path is not None and (key, path) in module_nodes:
                found.append(module_nodes[(key, path)])
        return found or [("module", "?", span_path)]  # "?": in no snapshot, or pruned

    for hid in sorted(set(registered) | set(calls)):
        info = calls.get(hid, {"calls": Counter(), "ns": 0})
        if (info.get("name") or registered[hid]["name"]).startswith(INTERNAL_HOOKS):
            continue
        node, shared = _add_hook_node(graph, hid, info.get("name") or registered[hid]["name"], info)
        edges: dict[tuple, dict] = {}
        for kind, key, path in registered.get(hid, {"on": ()})["on"]:
            if (key, path) in module_nodes:
                edges[module_nodes[(key, path)]] = {"kinds": {kind}, "by_thread": Counter()}
        for (kind, path, thread), n in info["calls"].items():
            for target in targets(path):
                e = edges.setdefault(target, {"kinds": set(), "by_thread": Counter()})
                e["kinds"].add(kind)
                e["by_thread"][thread] += n
        for target, e in edges.items():
            if target not in graph:
                graph.add_node(target, type="module", path=target[2], label=label(target[2]))
            text = [", ".join(sorted(e["kinds"]))]
            text += [f"{t} {TIMES}{n}" for t, n in sorted(e["by_thread"].items())]
            graph.add_edge(
                node,
                target,
                type="hook",
                kinds=sorted(e["kinds"]),
                by_thread=dict(e["by_thread"]),
                label=label(*text),
                style="dashed",
                color=ALERT if shared else "#b36b00",
                fontcolor=ALERT if shared else None,
                constraint="false",
            )


def build(
    trace: Trace, mask: np.ndarray | None = None, *, top: int | None = 40, min_time_ns: int = 0
) -> nx.DiGraph:
    """The module graph of every root module seen in the selected processes."""
    mask = np.ones(trace.n, dtype=bool) if mask is None else mask
    parts = {int(p) for p in np.unique(trace.part[mask])} if mask.any() else None
    snaps = latest_snapshots(trace, parts if parts and len(parts) < len(trace.processes) else None)
    times = _forward_times(trace, mask)
    graph = nx.DiGraph(title=f"modules: {os.path.basename(trace.path)}", rankdir="LR", clusters={})
    total = kept_count = dropped = 0
    exact = frozenset(m["path"] for s in snaps for m in s["payload"].get("modules", []))
    for snap in snaps:
        mine = _snapshot_times(snap, times, exact)
        keep = _kept_paths(snap, mine, top, min_time_ns)
        n = len(snap["payload"].get("modules", []))
        d = _add_modules(graph, snap, mine, keep)
        total, dropped, kept_count = total + n, dropped + d, kept_count + n - d
    _add_hooks(graph, snaps, hook_calls(trace, mask))
    if not snaps:
        graph.graph["note"] = "no module snapshot in this trace (no reimpl module was called)"
    kept = keep_top(np.ones(total), kept_count)
    note_left_out(graph, "modules", kept)
    return graph
