"""Progress on stderr: drawn when stderr is a terminal (a real pseudo-terminal
here), absent from pipes, inert outside a command's ``shown()``."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

from torchscope_cli import torchscope

from tracer import progress

SAMPLE = str(Path(__file__).parents[1] / "data" / "sample.tsdb")


def _on_a_terminal(*args: str) -> tuple[int, str, str]:
    """``torchscope ARGS`` with stderr on a pseudo-terminal: (status, stdout, terminal)."""
    primary, secondary = pty.openpty()
    env = dict(os.environ, TERM="xterm-256color", COLUMNS="100")
    child = subprocess.Popen(
        [sys.executable, "-m", "tracer.cli", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=secondary,
        env=env,
    )
    os.close(secondary)
    seen = b""
    while True:
        try:
            chunk = os.read(primary, 65536)
        except OSError:  # the child closed the terminal (EIO on Linux)
            break
        if not chunk:
            break
        seen += chunk
    os.close(primary)
    stdout = child.stdout.read().decode() if child.stdout else ""
    return child.wait(), stdout, seen.decode(errors="replace")


def test_a_terminal_sees_the_bars_and_the_output_is_unchanged(tmp_path) -> None:
    out = tmp_path / "t.json"
    status, stdout, terminal = _on_a_terminal("export", SAMPLE, "-o", str(out))
    assert status == 0
    assert "loading trace blocks" in terminal and "writing Chrome events" in terminal
    assert "\x1b[" in terminal  # drawn in place, then erased (transient)
    assert stdout.startswith("wrote ") and "wrote" not in terminal
    assert json.loads(out.read_text())["traceEvents"]


def test_check_shows_its_rules_on_a_terminal(tmp_path) -> None:
    copy = tmp_path / "c.tsdb"
    copy.write_bytes(Path(SAMPLE).read_bytes())
    status, _, terminal = _on_a_terminal("check", str(copy), "--fail-on", "never")
    assert status == 0 and "running the rules" in terminal


def test_a_pipe_sees_nothing(tmp_path) -> None:
    done = torchscope("export", SAMPLE, "-o", str(tmp_path / "t.json"))
    assert done.returncode == 0
    assert done.stderr == ""
    assert done.stdout.startswith("wrote ")


def test_outside_a_command_every_call_is_inert() -> None:
    assert not progress.is_shown()
    with progress.task("nothing", total=3) as bar:
        bar.advance(2)
        bar.update(completed=3)
    assert list(progress.track(range(5), "nothing", total=5)) == [0, 1, 2, 3, 4]
    with progress.shown():  # pytest's captured stderr is not a terminal
        assert not progress.is_shown()
        assert list(progress.track(iter("abc"), "nothing")) == ["a", "b", "c"]
