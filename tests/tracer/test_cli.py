"""The torchscope command: record, summary, export, with exit codes passed through."""

from __future__ import annotations

import json
import textwrap

import pytest
from torchscope_cli import torchscope

import tracer

SCRIPT = textwrap.dedent(
    """
    import sys
    from reimpl import _trace

    for i in range(int(sys.argv[1])):
        with _trace.span("step", "step", index=i):
            _trace.instant("mark", "tick")
    if sys.argv[2] == "crash":
        raise RuntimeError("the script failed")
    sys.exit(int(sys.argv[2]))
    """
)


@pytest.fixture
def script(tmp_path):
    path = tmp_path / "train.py"
    path.write_text(SCRIPT)
    return str(path)


@pytest.mark.parametrize("ending, code", [("0", 0), ("3", 3), ("crash", 1)])
def test_record_passes_exit_code_and_keeps_trace(tmp_path, script, ending, code):
    out = str(tmp_path / "run.tsdb")
    result = torchscope("record", "-o", out, script, "4", ending)
    assert result.returncode == code, result.stderr
    if ending == "crash":
        assert "RuntimeError: the script failed" in result.stderr
    t = tracer.load(out)
    assert t.n == 8
    assert t.processes[0].status == (
        "ok"
        if code == 0
        else "error: RuntimeError: the script failed"
        if ending == "crash"
        else f"exit {code}"
    )
    assert t.processes[0].argv == [script, "4", ending]


def test_record_module_and_default_output(tmp_path):
    pkg = tmp_path / "mypkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "run.py").write_text(SCRIPT)
    result = torchscope("record", "-m", "mypkg.run", "2", "0", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    t = tracer.load(str(tmp_path / "mypkg_run.tsdb"))
    kinds = [t.kind_of(r) for r in range(t.n)]
    assert kinds.count("step") == 2 and kinds.count("mark") == 2
    # runpy imports the package, then the module runs as __main__
    assert [t.name_of(r) for r in range(t.n) if kinds[r] == "import"] == ["mypkg"]


def test_summary_text_and_json(tmp_path, script):
    out = str(tmp_path / "run.tsdb")
    torchscope("record", "-o", out, script, "5", "0")
    text = torchscope("summary", out)
    assert text.returncode == 0
    assert "10 spans" in text.stdout and "step" in text.stdout and "threads" in text.stdout
    data = json.loads(torchscope("summary", out, "--json").stdout)
    kinds = {k["kind"]: k for k in data["kinds"]}
    assert kinds["step"]["count"] == 5 and kinds["mark"]["count"] == 5
    assert kinds["step"]["incl_ns"] >= kinds["step"]["self_ns"] > 0
    assert data["processes"][0]["status"] == "ok"


def test_export_chrome_command(tmp_path, script):
    out = str(tmp_path / "run.tsdb")
    torchscope("record", "-o", out, script, "2", "0")
    result = torchscope("export", out, "--format", "chrome", "-o", str(tmp_path / "c.json"))
    assert result.returncode == 0, result.stderr
    events = json.loads((tmp_path / "c.json").read_text())["traceEvents"]
    assert sum(e["ph"] in "Xi" for e in events) == 4


def test_bad_trace_gives_one_line_error(tmp_path):
    bad = tmp_path / "bad.tsdb"
    bad.write_text("not a trace")
    result = torchscope("summary", str(bad))
    assert result.returncode == 2
    assert result.stderr.startswith("torchscope: ") and "bad.tsdb: not a torchscope trace" in (
        result.stderr
    )
    assert "Traceback" not in result.stderr


def test_record_missing_script(tmp_path):
    result = torchscope("record", str(tmp_path / "nope.py"))
    assert result.returncode == 2 and "no such script" in result.stderr


def test_record_module_passes_its_own_flags(tmp_path):
    (tmp_path / "flags.py").write_text("import sys\nprint(sys.argv[1:])\n")
    out = str(tmp_path / "f.tsdb")
    result = torchscope(
        "record", "-o", out, "-m", "flags", "--variant", "fixed", "-x", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['--variant', 'fixed', '-x']"


MODEL_SCRIPT = textwrap.dedent(
    """
    import torch
    from reimpl import nn

    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 1))
    model(torch.randn(3, 4)).sum().backward()
    """
)


@pytest.mark.parametrize("flag", [False, True])
def test_record_without_backward_spans(tmp_path, flag):
    path = tmp_path / "model.py"
    path.write_text(MODEL_SCRIPT)
    out = str(tmp_path / "model.tsdb")
    result = torchscope("record", *(["--no-backward-spans"] if flag else []), "-o", out, str(path))
    assert result.returncode == 0, result.stderr
    t = tracer.load(out)
    kinds = [t.kind_of(r) for r in range(t.n)]
    assert kinds.count("module.forward") == 4
    assert kinds.count("module.backward") == (0 if flag else 4)
    assert t.meta["backward_spans"] == ("no" if flag else "yes")
    summary = torchscope("summary", out)
    assert summary.returncode == 0, summary.stderr
    assert ("--no-backward-spans: no module.backward spans" in summary.stdout) == flag
