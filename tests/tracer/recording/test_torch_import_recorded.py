"""``record`` sees the program's own ``import torch``: the recorder must not import
torch first (the native backward stamp needs torch, so it waits for the program's
import), and the backward spans still come from the stamp afterwards."""

from __future__ import annotations

import subprocess
import sys

import tracer
from tests.torchscope_cli import torchscope

PROGRAM = """
import torch
from reimpl import nn
model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 1))
model(torch.randn(2, 4)).sum().backward()
"""


def test_recorder_and_commands_import_no_torch():
    code = (
        "import sys, tracer, tracer.cli\n"
        "from tracer.commands import command_modules\n"
        "command_modules()\n"
        "from tracer.recording import runner\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_program_import_of_torch_is_recorded_and_stamps_still_native(tmp_path):
    script = tmp_path / "prog.py"
    script.write_text(PROGRAM)
    out = tmp_path / "prog.tsdb"
    done = torchscope("record", "-o", str(out), str(script))
    assert done.returncode == 0, done.stderr
    assert "unavailable" not in done.stderr  # the native stamp was taken, not the fallback
    t = tracer.load(str(out))
    kinds = [t.kind_of(i) for i in range(t.n)]
    top_imports = [t.name_of(i) for i in range(t.n) if kinds[i] == "import" and t.depth[i] == 0]
    assert "torch" in top_imports
    torch_row = next(i for i in range(t.n) if kinds[i] == "import" and t.name_of(i) == "torch")
    assert len(t.children(torch_row)) > 50  # torch's own imports nest under it
    backward = sorted(t.name_of(i) for i in range(t.n) if kinds[i] == "module.backward")
    forward = sorted(t.name_of(i) for i in range(t.n) if kinds[i] == "module.forward")
    assert backward == forward and len(forward) == 4
    assert len(set(zip(t.part.tolist(), t.seq.tolist()))) == t.n  # ids unique across the switch
