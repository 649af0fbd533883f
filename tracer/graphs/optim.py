"""Optimizer state: optimizer -> param groups -> parameters -> state tensors.

Read from ``optim.step`` (attrs ``optimizer``, ``groups``, ``params``),
``optim.group`` (``index`` and the group's hyper-parameters) and
``optim.update`` spans (``param``, ``name``, ``shape``, ``path``: single,
foreach or fused, and ``state``: {state tensor: shape}) of ``reimpl/optim``.
An update without ``state`` (SGD's first step, before its momentum buffer
exists; a tracer that does not record it) gets the state the optimizer's own
rules give (Adam keeps ``step``, ``exp_avg`` and ``exp_avg_sq`` per
parameter, SGD a ``momentum_buffer`` when momentum is on...), drawn dashed
and marked *derived*. The last recorded state of a parameter wins.
"""

from __future__ import annotations

import os
from collections import defaultdict

import networkx as nx
import numpy as np

from tracer.file.trace import Trace
from tracer.graphs.prune import keep_top, note_left_out
from tracer.graphs.render import TIMES, fmt_ns, kind_color, label, short

_HYPER = ("lr", "momentum", "weight_decay", "betas", "eps", "alpha", "nesterov", "amsgrad")


def derived_state(optimizer: str, group: dict, shape: list) -> dict[str, list]:
    """The state tensors ``optimizer`` keeps for one parameter of ``shape`` (torch's rules)."""
    name = optimizer.lower()
    if name == "sgd":
        return {"momentum_buffer": shape} if group.get("momentum") else {}
    if name in ("adam", "adamw"):
        out = {"step": [], "exp_avg": shape, "exp_avg_sq": shape}
        if group.get("amsgrad"):
            out["max_exp_avg_sq"] = shape
        return out
    if name == "adagrad":
        return {"step": [], "sum": shape}
    if name == "rmsprop":
        out = {"step": [], "square_avg": shape}
        if group.get("momentum"):
            out["momentum_buffer"] = shape
        if group.get("centered"):
            out["grad_avg"] = shape
        return out
    return {}


def _optimizer_of(trace: Trace, row: int) -> str:
    """The optimizer class of an ``optim.group`` span, from its enclosing ``optim.step``."""
    step = trace.code("optim.step")
    p = int(trace.parent[row])
    while p >= 0:
        if trace.kind[p] == step:
            return str(trace.attrs(p).get("optimizer") or trace.name_of(p).split(".")[0])
        p = int(trace.parent[p])
    return "optimizer"


def collect(trace: Trace, mask: np.ndarray) -> dict:
    """optimizer -> group index -> {"hyper", "steps", "params": {index: info}}."""
    out: dict = defaultdict(dict)
    code = trace.code("optim.group")
    upd = trace.code("optim.update")
    groups = np.flatnonzero(mask & (trace.kind == code)) if code >= 0 else []
    opt_of_group: dict[int, tuple[str, int]] = {}
    for row in map(int, groups):
        attrs = trace.attrs(row)
        opt = _optimizer_of(trace, row)
        index = int(attrs.get("index", 0))
        g = out[opt].setdefault(index, {"hyper": {}, "steps": 0, "ns": 0, "params": {}})
        g["hyper"] = {k: v for k, v in attrs.items() if k not in ("index", "updated")}
        g["steps"] += 1
        g["ns"] += int(trace.dur_ns[row])
        opt_of_group[row] = (opt, index)
    updates = np.flatnonzero(mask & (trace.kind == upd)) if upd >= 0 else []
    for row in map(int, updates):
        owner = opt_of_group.get(int(trace.parent[row]))
        if owner is None:
            continue
        attrs = trace.attrs(row)
        g = out[owner[0]][owner[1]]
        key = attrs.get("param", trace.name_of(row))
        p = g["params"].setdefault(
            key, {"name": attrs.get("name", trace.name_of(row)), "calls": 0, "ns": 0}
        )
        p["shape"] = attrs.get("shape", p.get("shape"))
        p["path"] = attrs.get("path", p.get("path"))
        if isinstance(attrs.get("state"), dict):
            p["state"] = attrs["state"]
        p["calls"] += 1
        p["ns"] += int(trace.dur_ns[row])
    return dict(out)


def name_params(trace: Trace, groups: dict) -> None:
    """Names ``param[i]`` after the model's parameters when their shapes say which.

    ``Optimizer(model.parameters())`` numbers parameters in ``parameters()``
    order, which is the module snapshot's order; a root whose parameter
    shapes match every updated index names them (``features.0.weight``).
    """
    params = {pi: p for g in groups.values() for pi, p in g["params"].items()}
    if not params or not all(isinstance(pi, int) for pi in params):
        return
    for snap in trace.snapshots:
        if snap["kind"] != "module":
            continue
        order = []
        for m in snap["payload"].get("modules", []):
            prefix = "" if m["path"] == snap["payload"].get("root") else m["path"] + "."
            order += [
                (prefix + t["name"], list(t.get("shape", []))) for t in m.get("parameters", [])
            ]
        if all(pi < len(order) and order[pi][1] == list(p.get("shape") or []) for pi, p in
               params.items()):  # fmt: skip
            for pi, p in params.items():
                if p["name"] == f"param[{pi}]":
                    p["name"] = order[pi][0]
            return


def _hyper_lines(hyper: dict) -> list[str]:
    shown = [f"{k}={hyper[k]}" for k in _HYPER if k in hyper and hyper[k] not in (None, False)]
    return [", ".join(shown[i : i + 3]) for i in range(0, len(shown), 3)]


def _add_param(graph: nx.DiGraph, gnode: tuple, opt: str, pi: int, p: dict, hyper: dict) -> bool:
    """One parameter and its state tensors; True when the state had to be derived."""
    pnode = ("param", opt, pi)
    shape = list(p.get("shape") or [])
    graph.add_node(
        pnode,
        type="param",
        index=pi,
        name=p["name"],
        tensor_shape=shape,
        calls=p["calls"],
        update_ns=p["ns"],
        path=p.get("path"),
        label=label(
            short(p["name"]),
            f"{shape} · {p.get('path') or ''}",
            f"update {TIMES}{p['calls']} · {fmt_ns(p['ns'])}",
        ),
        fillcolor="#ffffff",
    )
    graph.add_edge(gnode, pnode)
    recorded = "state" in p
    state = p["state"] if recorded else derived_state(opt, hyper, shape)
    for sname, sshape in state.items():
        snode = ("state", opt, pi, sname)
        graph.add_node(
            snode,
            type="state",
            name=sname,
            tensor_shape=list(sshape) if isinstance(sshape, list) else sshape,
            derived=not recorded,
            label=label(f"{sname} {sshape}"),
            shape="note",
            style="filled" if recorded else "filled,dashed",
            fillcolor="#f1f8e9",
            fontsize="9",
        )
        graph.add_edge(pnode, snode, arrowhead="none")
    return not recorded and bool(state)


def build(
    trace: Trace, mask: np.ndarray | None = None, *, top: int | None = 40, min_time_ns: int = 0
) -> nx.DiGraph:
    """The optimizers seen in the selection; parameters pruned to the ``top`` by update time."""
    mask = np.ones(trace.n, dtype=bool) if mask is None else mask
    data = collect(trace, mask)
    graph = nx.DiGraph(
        title=f"optimizer state: {os.path.basename(trace.path)}", rankdir="LR", clusters={}
    )
    params = [
        (opt, gi, pi, p)
        for opt, groups in data.items()
        for gi, g in groups.items()
        for pi, p in g["params"].items()
    ]
    kept = keep_top(np.array([p[3]["ns"] for p in params]), top, min_time_ns)
    keep = {(p[0], p[1], p[2]) for p in (params[i] for i in kept.index)}
    derived_any = False
    for opt, groups in data.items():
        name_params(trace, groups)
        steps = max((g["steps"] for g in groups.values()), default=0)
        graph.add_node(
            ("optimizer", opt),
            type="optimizer",
            name=opt,
            label=label(opt, f"{len(groups)} group(s) · {steps} step(s)"),
            fillcolor=kind_color("optim"),
            shape="box",
        )
        for gi, g in sorted(groups.items()):
            gnode = ("group", opt, gi)
            graph.add_node(
                gnode,
                type="group",
                index=gi,
                hyper=g["hyper"],
                params=len(g["params"]),
                label=label(
                    f"param_groups[{gi}]",
                    *_hyper_lines(g["hyper"]),
                    f"{len(g['params'])} params · {fmt_ns(g['ns'])}",
                ),
                fillcolor="#e8f5e9",
            )
            graph.add_edge(("optimizer", opt), gnode)
            for pi, p in g["params"].items():
                if (opt, gi, pi) in keep:
                    derived_any |= _add_param(graph, gnode, opt, pi, p, g["hyper"])
    note_left_out(graph, "parameters", kept, dropped_ns=0)
    if derived_any:
        graph.graph["note"] += "; dashed state: derived from the optimizer's rules, not recorded"
    if not data:
        graph.graph["note"] = "no optim.group spans in the selection (no optimizer step)"
    return graph
