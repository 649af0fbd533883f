"""Finding sources: longest importable prefix, upstream mirrors, safe failures."""

from __future__ import annotations

import inspect

import torch

from tui.source import resolve, script_of, source_of, upstream_name


def test_resolves_a_reimpl_method_by_qualname():
    from reimpl.nn.modules.batchnorm import _BatchNorm

    assert resolve("reimpl.nn.modules.batchnorm._BatchNorm.forward") is _BatchNorm.forward
    src = source_of("reimpl.nn.modules.batchnorm._BatchNorm.forward")
    assert src.error is None and "def forward" in src.text
    assert src.file is not None and src.file.endswith("reimpl/nn/modules/batchnorm.py")
    assert src.mirrors == "torch.nn.modules.batchnorm._BatchNorm.forward"


def test_upstream_comes_from_the_trace_or_the_decorator():
    func = "reimpl.nn.modules.batchnorm._BatchNorm.forward"
    assert upstream_name(func, {}) == "torch.nn.modules.batchnorm._BatchNorm.forward"
    assert upstream_name(func, {func: "torch.x"}) == "torch.x"
    torch_src = source_of("torch.nn.modules.batchnorm._BatchNorm.forward")
    assert torch_src.error is None
    assert torch_src.file == inspect.getsourcefile(torch.nn.modules.batchnorm._BatchNorm)


def test_unknown_or_foreign_names_fail_softly():
    assert source_of("reimpl.nope.Missing.method").error is not None
    assert source_of("").error == "the span names no function"
    # Not imported just because a trace names it: a trace file is data.
    assert resolve("some_untrusted_module.run") is None
    assert source_of("builtins.len").error is not None  # no Python source, said so


def test_main_functions_come_from_the_recorded_script(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(
        "import sys\n\nclass Loop:\n    @staticmethod\n    def step():\n"
        "        def inner():\n            return 1\n        return inner()\n"
    )
    src = source_of("__main__.Loop.step", str(script))
    assert src.error is None and src.start == 4 and "def step" in src.text
    assert "def inner" in source_of("__main__.Loop.step.<locals>.inner", str(script)).text
    assert source_of("__main__.Loop.nope", str(script)).error is not None
    assert source_of("__main__.main").error == "the recorded script is unknown"
    assert script_of(["python", str(script)]) == str(script)
    assert script_of([str(tmp_path / "gone.py")]) is None
