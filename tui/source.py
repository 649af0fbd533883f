"""Finds the source of the function behind a span, and of the torch code it mirrors.

A span's ``func`` is ``module.Class.method``; the module part is the longest
importable prefix. Only modules of torchscope's reimpl, its samples and torch
itself are imported on demand (a trace file is data: opening one must not run
arbitrary code); anything else is looked up only if already imported.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import os
import sys
from dataclasses import dataclass
from functools import lru_cache

IMPORTABLE = ("reimpl", "samples", "torch", "tracer", "importlib")


@dataclass(frozen=True)
class Source:
    """The lines of one function, or why they could not be found."""

    qualname: str
    file: str | None = None
    start: int = 1
    text: str = ""
    error: str | None = None
    mirrors: str | None = None

    @property
    def title(self) -> str:
        """``file:line`` where the function lives, shortened for the pane's border."""
        if self.file is None:
            return self.qualname
        return f"{_short_path(self.file)}:{self.start}"


def _short_path(path: str) -> str:
    """The path from the package root (``torch/nn/modules/module.py``)."""
    parts = path.replace(os.sep, "/").split("/")
    for anchor in ("site-packages", "main", "work"):
        if anchor in parts:
            return "/".join(parts[len(parts) - parts[::-1].index(anchor) :])
    return "/".join(parts[-4:])


def _import(name: str) -> object | None:
    """The module ``name`` if allowed and importable, else None."""
    if name == "__main__":  # torchscope itself here, not the recorded program
        return None
    if name in sys.modules:
        return sys.modules[name]
    if name.split(".", 1)[0] not in IMPORTABLE:
        return None
    try:
        return importlib.import_module(name)
    except Exception:  # a broken or missing module just means no source
        return None


def resolve(qualname: str) -> object | None:
    """The object named ``qualname``: the longest importable module, then attributes."""
    parts = qualname.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        obj = _import(".".join(parts[:cut]))
        if obj is None:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr, None)
            if obj is None:
                break
        if obj is not None:
            return obj
    return None


def _unwrap(obj: object) -> object:
    """The plain function behind properties, static/class methods and decorators."""
    if isinstance(obj, property) and obj.fget is not None:
        obj = obj.fget
    obj = getattr(obj, "__func__", obj)
    try:
        return inspect.unwrap(obj)  # type: ignore[arg-type]
    except ValueError:
        return obj


def _find_def(body: list[ast.stmt], names: list[str]) -> ast.AST | None:
    """The def or class reached by ``names`` (``<locals>`` steps skipped)."""
    names = [n for n in names if n != "<locals>"]
    node: ast.AST | None = None
    for name in names:
        node = next(
            (
                n
                for n in body
                if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                and n.name == name
            ),
            None,
        )
        if node is None:
            return None
        body = node.body  # type: ignore[attr-defined]
    return node


def _from_script(qualname: str, script: str) -> Source:
    """A ``__main__`` function read from the recorded script with ast, never run."""
    try:
        with open(script, encoding="utf-8") as fh:
            text = fh.read()
        node = _find_def(ast.parse(text).body, qualname.split(".")[1:])
    except (OSError, SyntaxError, ValueError) as exc:
        return Source(qualname, error=f"cannot read {script} ({exc})")
    if node is None:
        return Source(qualname, error=f"{qualname} not found in {script}")
    first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])  # type: ignore[attr-defined]
    lines = text.splitlines(keepends=True)[first - 1 : node.end_lineno]  # type: ignore[attr-defined]
    return Source(qualname, os.path.abspath(script), first, "".join(lines))


@lru_cache(maxsize=512)
def source_of(qualname: str, script: str | None = None) -> Source:
    """The source of ``qualname`` (cached: the same function backs many spans).

    ``script`` is the file a recorded program ran as ``__main__``: its
    functions are found there, since this process's ``__main__`` is torchscope.
    """
    if not qualname or qualname == "?":
        return Source(qualname, error="the span names no function")
    if qualname.startswith("__main__."):
        if script is None:
            return Source(qualname, error="the recorded script is unknown")
        return _from_script(qualname, script)
    obj = resolve(qualname)
    if obj is None:
        return Source(qualname, error=f"{qualname} cannot be imported here")
    mirrors = getattr(obj, "__mirrors__", None)
    target = _unwrap(obj)
    try:
        lines, start = inspect.getsourcelines(target)  # type: ignore[arg-type]
        file = inspect.getsourcefile(target)  # type: ignore[arg-type]
    except (OSError, TypeError) as exc:
        return Source(qualname, error=f"no Python source for {qualname} ({exc})", mirrors=mirrors)
    return Source(qualname, file, max(start, 1), "".join(lines), mirrors=mirrors)


def script_of(argv: list[str]) -> str | None:
    """The script a recorded process ran, when it was a ``.py`` file that still exists."""
    for arg in argv[:2]:
        if arg.endswith(".py") and os.path.isfile(arg):
            return arg
    return None


def upstream_name(func: str, recorded: dict[str, str]) -> str | None:
    """The torch function a reimpl one mirrors: as recorded, else its ``__mirrors__``."""
    if func in recorded:
        return recorded[func]
    return source_of(func).mirrors
