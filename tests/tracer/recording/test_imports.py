"""Import tracing: the same modules as ``python -X importtime``, nested, timed, deep."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from collections import Counter

import numpy as np
import pytest

import tracer
from tracer.recording.imports import CHILD, HOOK_PATH, render_imports, run_imports

BUSY = "x = 0\nfor i in range({n}):\n    x += i\n"


@pytest.fixture
def package(tmp_path, monkeypatch):
    """pkgimp: a package whose modules import each other and do measurable work."""
    pkg = tmp_path / "pkgimp"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from . import heavy, light\nimport colorsys\n")
    (pkg / "heavy.py").write_text("from . import leaf\n" + BUSY.format(n=400_000))
    (pkg / "light.py").write_text("from . import leaf\nimport fractions\n")
    (pkg / "leaf.py").write_text(BUSY.format(n=100_000))
    (pkg / "broken.py").write_text("from . import leaf\nraise ValueError('broken on purpose')\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    return "pkgimp"


IMPORTTIME_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \| ( *)(\S+)")


def parse_importtime(stderr: str) -> dict[str, int]:
    """name -> inclusive microseconds (the largest when a name repeats)."""
    out: dict[str, int] = {}
    for m in IMPORTTIME_LINE.finditer(stderr):
        out[m.group(4)] = max(out.get(m.group(4), 0), int(m.group(2)))
    return out


def importtime(module: str) -> dict[str, int]:
    """What ``python -X importtime -c "import module"`` reports beyond startup.

    Counted as a multiset against ``-c pass``: a failed import (``_winapi``
    on Linux) is attempted at startup and again later, and only the later
    attempts belong to the module.
    """

    def run(code: str) -> tuple[dict[str, int], Counter]:
        args = [sys.executable, "-X", "importtime", "-c", code]
        err = subprocess.run(args, capture_output=True, text=True).stderr
        return parse_importtime(err), Counter(m.group(4) for m in IMPORTTIME_LINE.finditer(err))

    _, startup = run("pass")
    times, seen = run(f"import {module}")
    return {k: times[k] for k in seen - startup}


def recorded(path: str) -> dict[str, int]:
    """Import spans that -X importtime also times (not importlib.import_module's)."""
    t = tracer.load(path)
    rows = np.flatnonzero(t.kind == t.code("import"))
    out: dict[str, int] = {}
    for r in rows:
        if t.attrs(int(r)).get("via") == "importlib.import_module":
            continue
        name = t.name_of(int(r))
        out[name] = max(out.get(name, 0), int(t.dur_ns[r]) // 1000)
    return out


def test_same_modules_as_importtime(package, tmp_path):
    out = str(tmp_path / "imp.tsdb")
    assert run_imports(package, out) == 0
    ours = recorded(out)
    assert set(ours) == set(importtime(package))
    assert {"pkgimp", "pkgimp.heavy", "pkgimp.light", "pkgimp.leaf", "fractions"} <= set(ours)


def test_import_module_calls_are_recorded_and_marked(package, tmp_path):
    pkg = tmp_path / "pkgimp"
    (pkg / "extra.py").write_text("")
    (pkg / "lazy.py").write_text("import importlib\nimportlib.import_module('pkgimp.extra')\n")
    out = str(tmp_path / "imp.tsdb")
    assert run_imports("pkgimp.lazy", out) == 0
    t = tracer.load(out)
    extra = next(r for r in range(t.n) if t.name_of(r) == "pkgimp.extra")
    assert t.attrs(extra)["via"] == "importlib.import_module"
    lazy = next(r for r in range(t.n) if t.name_of(r) == "pkgimp.lazy")
    assert t.parent[extra] == lazy
    assert "pkgimp.extra" not in importtime("pkgimp.lazy")


def test_inclusive_times_agree_with_importtime_on_the_same_run(package, tmp_path):
    """Both clocks around the very same imports: the recorder under -X importtime.

    Stated tolerance: 10% or 0.5 ms per module, whichever is larger (what is
    left is the hook's own cost, a few microseconds per nested import).
    """
    out = str(tmp_path / "imp.tsdb")
    args = [sys.executable, "-X", "importtime", "-c", CHILD, HOOK_PATH, package, out, "0", "40"]
    result = subprocess.run(args, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    theirs = parse_importtime(result.stderr)
    ours = recorded(out)
    for name in ours:
        assert abs(ours[name] - theirs[name]) <= max(0.10 * theirs[name], 500), name
    assert ours["pkgimp.heavy"] > ours["pkgimp.light"]


def test_nesting_follows_who_imported_whom(package, tmp_path):
    out = str(tmp_path / "imp.tsdb")
    assert run_imports(package, out) == 0
    t = tracer.load(out)
    row = {t.name_of(int(r)): int(r) for r in np.flatnonzero(t.kind == t.code("import"))}
    assert t.parent[row["pkgimp.heavy"]] == row["pkgimp"]
    assert t.parent[row["pkgimp.leaf"]] == row["pkgimp.heavy"]  # first importer wins
    assert t.parent[row["pkgimp"]] == -1
    assert t.attrs(row["pkgimp"])["is_package"] is True
    assert t.attrs(row["pkgimp.heavy"])["file"].endswith("pkgimp/heavy.py")
    # the heavy module's own loop dominates its self time
    assert t.self_ns[row["pkgimp.heavy"]] > t.self_ns[row["pkgimp.light"]]


def test_failed_import_is_recorded_and_trace_written(package, tmp_path):
    out = str(tmp_path / "imp.tsdb")
    assert run_imports("pkgimp.broken", out) == 1
    t = tracer.load(out)
    row = {t.name_of(int(r)): int(r) for r in np.flatnonzero(t.kind == t.code("import"))}
    assert t.attrs(row["pkgimp.broken"])["error"] == "ValueError: broken on purpose"
    assert "pkgimp.leaf" in row and "error" not in t.attrs(row["pkgimp.leaf"])
    assert t.processes[0].status.startswith("error: ValueError")
    assert "failed imports" in render_imports(out)


def test_extension_modules_are_described(tmp_path):
    out = str(tmp_path / "imp.tsdb")
    assert run_imports("decimal", out) == 0
    t = tracer.load(out)
    natives = {s["key"]: s["payload"] for s in t.snapshots if s["kind"] == "native_init"}
    assert natives["_decimal"]["classes"] > 5
    row = next(int(r) for r in range(t.n) if t.name_of(r) == "_decimal")
    assert t.attrs(row)["extension"] is True


def test_deep_puts_python_calls_beneath_import_spans(package, tmp_path):
    out = str(tmp_path / "deep.tsdb")
    assert run_imports(package, out, deep=True) == 0
    t = tracer.load(out)
    calls = t.kind == t.code("py.call")
    assert calls.sum() > 50
    heavy = next(r for r in range(t.n) if t.name_of(r) == "pkgimp.heavy")
    # the module body of heavy.py runs beneath the import span of pkgimp.heavy
    body = [
        r for r in range(t.n) if t.name_of(r).startswith("<module>") and "heavy.py" in t.name_of(r)
    ]
    assert body
    p = t.parent[body[0]]
    while p >= 0 and p != heavy:
        p = t.parent[p]
    assert p == heavy


@pytest.mark.slow
def test_import_torch_matches_importtime(tmp_path):
    out = str(tmp_path / "torch.tsdb")
    assert run_imports("torch", out) == 0
    ours = recorded(out)
    assert set(ours) == set(importtime("torch"))
    assert len(ours) > 700
    t = tracer.load(out)
    c = next(s["payload"] for s in t.snapshots if s["key"] == "torch._C")
    assert c["operators"] > 1000 and c["dispatch_keys"] > 50 and c["classes"] > 50


SCRIPT = textwrap.dedent(
    """
    import colorsys
    from numba import njit
    from reimpl import _trace

    @njit
    def add(a, b):
        return a + b

    def inner(x):
        return add(x, 1)

    for i in range(2):
        with _trace.step(i):
            inner(i)
    """
)


@pytest.mark.parametrize("deep", [False, True])
def test_record_keeps_imports_compiles_and_deep_calls(tmp_path, deep):
    script = tmp_path / "prog.py"
    script.write_text(SCRIPT)
    out = str(tmp_path / "prog.tsdb")
    args = ["record", "-o", out, *(["--deep"] if deep else []), str(script)]
    result = subprocess.run(
        [sys.executable, "-m", "tracer.cli", *args], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    t = tracer.load(out)
    kinds = {t.kind_of(r) for r in range(t.n)}
    assert {"import", "numba.compile", "step"} <= kinds
    names = {t.name_of(r) for r in range(t.n) if t.kind_of(r) == "import"}
    assert "colorsys" in names
    compile_row = next(r for r in range(t.n) if t.kind_of(r) == "numba.compile")
    assert t.attrs(compile_row)["function"].endswith("add")
    if deep:
        step = next(r for r in range(t.n) if t.kind_of(r) == "step")
        below = {t.name_of(int(c)).split(" ")[0] for c in t.children(step)}
        assert "inner" in below
    else:
        assert "py.call" not in kinds


FAKE_TORCH = {
    "__init__.py": textwrap.dedent(
        """
        import colorsys

        def _load_global_deps():
            return sum(range(1000))

        _load_global_deps()
        from torch._C import *
        from torch._C import _initExtension  # torch's sentinel import
        import fractions
        _C._initExtension("manager")
        from torch import late
        """
    ),
    "_C.py": textwrap.dedent(
        """
        class dtype:
            pass

        OPS = ["aten::add", "aten::mul", "prims::sum"]

        def _dispatch_get_all_op_names():
            return list(OPS)

        def _initExtension(path):
            import torch
            torch.float32, torch.int64 = dtype(), dtype()
            OPS.append("aten::from_init")
        """
    ),
    "late.py": "from torch import _C\n_C.OPS.append('custom::late')\n",
}


def test_torch_init_steps_carry_the_registry_of_their_moment(tmp_path, monkeypatch):
    """A stand-in torch (same names, tiny): _load_global_deps and _initExtension become
    import.init spans, and each count sits on the span of the step that filled it."""
    pkg = tmp_path / "torch"
    pkg.mkdir()
    for name, text in FAKE_TORCH.items():
        (pkg / name).write_text(text)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    out = str(tmp_path / "fake.tsdb")
    assert run_imports("torch", out) == 0
    t = tracer.load(out)
    by_name = {t.name_of(r): r for r in range(t.n)}
    deps, init = by_name["torch._load_global_deps"], by_name["torch._C._initExtension"]
    assert t.kind_of(deps) == t.kind_of(init) == "import.init"
    assert t.name_of(int(t.parent[deps])) == "torch" == t.name_of(int(t.parent[init]))
    assert t.attrs(deps)["line"] == 4
    counts = {n: (t.attrs(by_name[n])["operators"], t.attrs(by_name[n])["dtypes"])
              for n in ("torch._C", "torch._C._initExtension", "torch")}  # fmt: skip
    assert counts == {"torch._C": (3, 0), "torch._C._initExtension": (4, 2), "torch": (5, 2)}
    assert t.attrs(by_name["torch._C"])["operator_namespaces"] == 2
    # nested imports ran untraced: colorsys's and fractions's functions are no init step
    assert [t.name_of(r) for r in range(t.n) if t.kind_of(r) == "import.init"] == [
        "torch._load_global_deps", "torch._C._initExtension"
    ]  # fmt: skip
    report = render_imports(out)
    steps = report[report.index("initialisation steps") :].splitlines()
    assert [line.split()[0] for line in steps[2:6]] == [
        "torch._load_global_deps", "import", "torch._C._initExtension", "import"
    ]  # fmt: skip
    assert steps[4].split()[-2:] == ["4", "2"]  # _initExtension: the dtypes appear there


@pytest.mark.slow
def test_import_torch_shows_init_extension_and_where_dtypes_appear(tmp_path):
    out = str(tmp_path / "torch.tsdb")
    assert run_imports("torch", out) == 0
    t = tracer.load(out)
    rows = {t.name_of(r): r for r in range(t.n) if t.kind_of(r) in ("import", "import.init")}
    c, init, torch_ = rows["torch._C"], rows["torch._C._initExtension"], rows["torch"]
    assert t.kind_of(rows["torch._load_global_deps"]) == "import.init"
    assert t.end_ns[rows["torch._load_global_deps"]] <= t.start_ns[c]  # before torch._C loads
    assert t.attrs(c)["dtypes"] == 0 < t.attrs(init)["dtypes"] == t.attrs(torch_)["dtypes"]
    assert 1000 < t.attrs(c)["operators"] <= t.attrs(init)["operators"]
    assert t.attrs(init)["operators"] < t.attrs(torch_)["operators"]  # Python registers more
    snapshot = next(s["payload"] for s in t.snapshots if s["key"] == "torch._C")
    assert snapshot["operators"] == t.attrs(c)["operators"]  # counted as it loaded
    report = render_imports(out)
    line = next(x for x in report.splitlines() if x.strip().startswith("torch._C._initExtension"))
    assert line.split()[-1] == str(t.attrs(init)["dtypes"])
