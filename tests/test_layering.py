"""The layers' one rule (DESIGN.md): reimpl knows only its seam; tracer never the UI."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import reimpl
import tracer


def _all_modules(package) -> list[str]:
    return [
        m.name
        for m in pkgutil.walk_packages(package.__path__, package.__name__ + ".")
        if not m.name.startswith("samples")
    ]


def _loaded_after_importing(modules: list[str]) -> set[str]:
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "print('\\n'.join(sorted(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def _roots(modules: set[str]) -> set[str]:
    return {m.split(".")[0] for m in modules}


def test_reimpl_imports_neither_tracer_nor_tui():
    loaded = _roots(_loaded_after_importing(_all_modules(reimpl)))
    assert "reimpl" in loaded
    assert not loaded & {"tracer", "tui", "textual"}


def test_tracer_never_imports_the_ui():
    loaded = _roots(_loaded_after_importing(_all_modules(tracer)))
    assert "tracer" in loaded
    assert not loaded & {"tui", "textual"}
