"""Finds the source of the function behind a span, and of the torch code it mirrors.

A trace file is data: viewing one never imports or runs anything it names. A
span's ``func`` is ``package.module.Class.method``; its module is the longest
prefix that is a file ``package/module.py`` or ``package/module/__init__.py``
in the project or in a directory on ``sys.path`` (found by path, never by the
import system, which would run the package's ``__init__``). That file is read
as text and parsed with :mod:`ast`; the definition is found by its qualified
name, following re-exports (``from .sgd import SGD``) and base classes the way
attribute lookup would. A name found in none of those files shows nothing.
"""

from __future__ import annotations

import _imp
import ast
import builtins
import inspect
import io
import keyword
import os
import stat
import sys
import tokenize
import warnings
from dataclasses import dataclass
from functools import lru_cache
from importlib.util import decode_source
from typing import NamedTuple

PROJECT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROJECT_PACKAGES = ("reimpl", "samples", "tracer", "tui")
"""Looked up in the project first: an editable install puts no path on sys.path."""

MAX_BYTES = 16 << 20  # ten times torch's largest module: bounds what one name makes us read
MAX_PARTS = 64  # a longer dotted name is not a real one; it would only cost stat calls
MAX_STEPS = 32  # re-exports and base classes followed for one name (import cycles exist)

FROZEN_ALIASES = ("importlib._bootstrap", "importlib._bootstrap_external")
"""The import system: always run from the frozen copy, under another name (_frozen_importlib)."""

_DEFS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
_BLOCKS = (ast.If, ast.Try, ast.With, ast.AsyncWith, ast.For, ast.AsyncFor, ast.While) + (
    (ast.TryStar,) if hasattr(ast, "TryStar") else ()
)
_WRAPPERS = ("property", "staticmethod", "classmethod", "cached_property")


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


class _Module(NamedTuple):
    """One source file, parsed, and the dotted name it was found under."""

    name: str
    file: str
    package: bool  # an ``__init__.py``: relative imports start from the module itself
    lines: tuple[str, ...]
    tree: ast.Module
    scopes: dict[tuple[int, str], _Scope]  # the file's scope tables, built as looked up


class _Search:
    """One lookup's roots and step budget (a crafted name must not make it loop)."""

    def __init__(self, steps: int = MAX_STEPS) -> None:
        self.steps = steps
        # Only absolute directories: the working directory ('') is not an installed
        # package, and the same trace must show the same code wherever it is opened.
        self.path = tuple(p for p in dict.fromkeys(sys.path) if _is_abs_dir(p))

    def roots(self, top: str) -> tuple[str, ...]:
        """Directories that hold the top-level package ``top``, as the import system sees it."""
        return _package_roots(top, (PROJECT, *self.path) if top in PROJECT_PACKAGES else self.path)

    def step(self) -> bool:
        """Counts one redirection; False once the budget is spent."""
        self.steps -= 1
        return self.steps >= 0


def _is_abs_dir(entry: object) -> bool:
    return isinstance(entry, str) and os.path.isabs(entry) and os.path.isdir(entry)


def _is_regular_file(path: str) -> bool:
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):  # ValueError: a NUL byte, refused by the OS layer
        return False


@lru_cache(maxsize=1024)
def _package_roots(top: str, roots: tuple[str, ...]) -> tuple[str, ...]:
    """The first root with a module or regular package ``top`` (it hides the others),
    else every root with a ``top`` directory (the portions of a namespace package)."""
    portions = []
    for root in roots:
        base = os.path.join(root, top)
        if _is_regular_file(os.path.join(base, "__init__.py")) or _is_regular_file(f"{base}.py"):
            return (root,)
        if os.path.isdir(base):
            portions.append(root)
    return tuple(portions)


@lru_cache(maxsize=64)
def _parse(path: str) -> tuple[tuple[str, ...], ast.Module, dict] | None:
    """The lines and syntax tree of a source file (cached: one file backs many spans)."""
    try:
        # O_NONBLOCK and fstat: a FIFO or device put where a module should be is refused
        # without blocking, and the file checked is the file read.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with open(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None
            data = fh.read(MAX_BYTES + 1)
        if len(data) > MAX_BYTES:
            return None
        text = decode_source(data)  # the coding cookie and universal newlines, as linecache
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # invalid escapes in old code: not ours to report
            tree = ast.parse(text, filename=path)
    except (OSError, ValueError, SyntaxError, RecursionError, MemoryError):
        return None
    # Split on "\n" only, as inspect does: str.splitlines also splits on form feeds.
    return tuple(io.StringIO(text).readlines()), tree, {}


@lru_cache(maxsize=4096)
def _module_file(name: str, roots: tuple[str, ...]) -> tuple[str, bool] | None:
    """The file of module ``name`` and whether it is a package, found by path as the
    import system would find it (cached: lookups try many prefixes of many names)."""
    parts = name.split(".")
    for root in roots:
        base = os.path.join(root, *parts)
        for path, package in ((os.path.join(base, "__init__.py"), True), (base + ".py", False)):
            if _is_regular_file(path):
                return path, package
    return None


def _module(name: str, search: _Search) -> _Module | None:
    """Module ``name``, parsed, if it is a file under the search's roots."""
    found = _module_file(name, search.roots(name.partition(".")[0]))
    parsed = None if found is None else _parse(found[0])
    return None if parsed is None else _Module(name, *found, *parsed)  # type: ignore[misc]


def _is_module_part(part: str) -> bool:
    """An identifier, hence no empty part, ``..``, ``/`` or absolute path in the file name."""
    return part.isidentifier() and not keyword.iskeyword(part) and part != "__main__"


def _is_frozen(module: str) -> bool:
    """Whether this interpreter runs ``module`` from a frozen copy (no file is what runs)."""
    return module in FROZEN_ALIASES or _imp.is_frozen(module)


def _dotted(node: ast.expr) -> str | None:
    """``a.b.c`` for a name or attribute chain, else None."""
    names = []
    while isinstance(node, ast.Attribute):
        names.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return ".".join([node.id, *reversed(names)])


def _statements(body: list[ast.stmt]) -> list[ast.stmt]:
    """The statements of one scope in order, with those inside if/try/with/for blocks."""
    out: list[ast.stmt] = []
    for stmt in body:
        if isinstance(stmt, _BLOCKS):
            handlers = [s for h in getattr(stmt, "handlers", ()) for s in h.body]
            inner = [
                *stmt.body,
                *handlers,
                *getattr(stmt, "orelse", ()),
                *getattr(stmt, "finalbody", ()),
            ]
            out.extend(_statements(inner))
        else:
            out.append(stmt)
    return out


def _is_accessor(node: ast.stmt, name: str) -> bool:
    """``@name.setter`` / ``@name.deleter``: the property keeps its getter's source."""
    return any(
        isinstance(d, ast.Attribute)
        and d.attr in ("setter", "deleter")
        and isinstance(d.value, ast.Name)
        and d.value.id == name
        for d in getattr(node, "decorator_list", ())
    )


def _absolute(module: str, package: bool, stmt: ast.ImportFrom) -> str | None:
    """The absolute module a ``from ... import`` names, relative levels resolved."""
    if stmt.level == 0:
        return stmt.module
    parts = module.split(".") if package else module.split(".")[:-1]
    if stmt.level - 1 >= len(parts):
        return None
    base = parts[: len(parts) - (stmt.level - 1)]
    return ".".join(base + ([stmt.module] if stmt.module else []))


def _alias(value: ast.expr | None) -> str | None:
    """The name an assignment rebinds: ``x = y``, ``x = property(y, ...)``, ``x = wrap(y)``."""
    if isinstance(value, ast.Call):
        func = _dotted(value.func) if not isinstance(value.func, ast.Call) else None
        wrapper = func is not None and func.rpartition(".")[2] in _WRAPPERS
        if value.args and (wrapper or len(value.args) == 1):
            value = value.args[0]  # what inspect.unwrap would reach through functools.wraps
    return _dotted(value) if isinstance(value, (ast.Name, ast.Attribute)) else None


class _Ref(NamedTuple):
    """A name bound to another one: ``dotted`` is absolute, or looked up from the scope."""

    dotted: str
    absolute: bool
    stmt: ast.stmt | None = None  # the assignment, shown when ``dotted`` leads nowhere


class _Scope(NamedTuple):
    """The names one module, class or function body binds, and its star imports."""

    names: dict[str, ast.stmt | _Ref]
    stars: tuple[str, ...]  # modules re-exported with ``from x import *``, the last first


def _scope(node: ast.AST, module: _Module) -> _Scope:
    """What each name in a body is bound to last (kept with the parsed file: a class
    backs many lookups)."""
    key = (id(node), module.name)
    if key not in module.scopes:
        module.scopes[key] = _bindings(node, module.name, module.package)
    return module.scopes[key]


def _bindings(node: ast.AST, module: str, package: bool) -> _Scope:
    """The bindings of one module, class or function body, read in order."""
    names: dict[str, ast.stmt | _Ref] = {}
    stars: list[str] = []
    for stmt in _statements(node.body):  # type: ignore[attr-defined]
        if isinstance(stmt, _DEFS):
            if not (stmt.name in names and _is_accessor(stmt, stmt.name)):
                names[stmt.name] = stmt
        elif isinstance(stmt, ast.ImportFrom):
            source = _absolute(module, package, stmt)
            for alias in stmt.names:
                if source and alias.name == "*":
                    stars.insert(0, source)
                elif source:
                    names[alias.asname or alias.name] = _Ref(f"{source}.{alias.name}", True)
        elif isinstance(stmt, ast.Import):
            for alias in stmt.names:
                top = alias.name.split(".")[0]
                names[alias.asname or top] = _Ref(alias.name if alias.asname else top, True)
        elif isinstance(stmt, (ast.Assign, ast.AnnAssign)) and stmt.value is not None:
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
            for target in targets:
                if isinstance(target, ast.Name):
                    other = _alias(stmt.value)
                    if other is None:
                        names[target.id] = stmt
                    elif other != target.id:
                        names[target.id] = _Ref(other, False, stmt)
                    elif target.id not in names:  # ``f = wrap(f)`` keeps the def it wraps
                        names[target.id] = stmt
    return _Scope(names, tuple(stars))


def _walk(module: _Module, names: list[str], search: _Search) -> tuple[_Module, ast.AST] | None:
    """The node that ``names`` reach from a module's top, as attribute lookup would."""
    node: ast.AST = module.tree
    scopes = [(module.name, node)]  # enclosing scopes, innermost last
    for i, name in enumerate(names):
        rest = names[i + 1 :]
        if name == "<locals>":  # a function's inner definitions are in its body
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                return None
            continue
        scope = _scope(node, module)
        found = scope.names.get(name)
        if found is None:
            if isinstance(node, ast.ClassDef):
                return _inherited(node, scopes[-2], module, names[i:], search)
            for star in scope.stars:
                hit = _locate(".".join([star, *names[i:]]), search)
                if hit is not None:
                    return hit
            return None
        if isinstance(found, _Ref):
            hit = _follow(found, scopes, module, rest, search)
            if hit is None and found.stmt is not None and not rest:
                return module, found.stmt
            return hit
        if not isinstance(found, _DEFS):  # an assignment: its statement, nothing inside
            return (module, found) if not rest else None
        node = found
        scopes.append((f"{scopes[-1][0]}.{name}", node))
    return module, node


def _follow(
    ref: _Ref,
    scopes: list[tuple[str, ast.AST]],
    module: _Module,
    rest: list[str],
    search: _Search,
) -> tuple[_Module, ast.AST] | None:
    """Where a reference leads: an import's target, or a name from the innermost scope
    that binds it outwards (a class body sees its own names, then the module's)."""
    if ref.absolute:
        return _locate(".".join([ref.dotted, *rest]), search)
    first = ref.dotted.split(".")[0]
    where = next(
        (q for q, n in reversed(scopes) if first in _scope(n, module).names),
        module.name,  # not bound anywhere: perhaps a star import of the module's
    )
    return _locate(".".join([where, ref.dotted, *rest]), search)


def _inherited(
    cls: ast.ClassDef,
    outer: tuple[str, ast.AST],
    module: _Module,
    names: list[str],
    search: _Search,
) -> tuple[_Module, ast.AST] | None:
    """``names`` looked up in the bases of ``cls`` (left to right, depth first)."""
    for base in cls.bases:
        dotted = _dotted(base)
        if dotted is None:
            continue
        first = dotted.split(".")[0]
        if first not in _scope(outer[1], module).names and hasattr(builtins, first):
            continue  # object, Exception, ...: nothing of theirs has Python source here
        hit = _locate(".".join([outer[0], dotted, *names]), search)
        if hit is not None:
            return hit
    return None


def _locate(qualname: str, search: _Search) -> tuple[_Module, ast.AST] | None:
    """The file and node of ``qualname``: the longest module prefix, then its members."""
    if not search.step():
        return None
    parts = qualname.split(".")
    if len(parts) > MAX_PARTS or "__main__" in parts:
        return None
    usable = next((i for i, p in enumerate(parts) if not _is_module_part(p)), len(parts))
    cuts = list(range(min(usable, len(parts) - 1), 0, -1))
    if usable == len(parts):
        # The whole name as a module comes last: a package often rebinds a submodule's
        # name to the function it exports (``reimpl.nn.parallel.parallel_apply``).
        cuts.append(len(parts))
    for cut in cuts:
        module = _module(".".join(parts[:cut]), search)
        if module is not None:
            hit = _walk(module, parts[cut:], search)
            if hit is not None:
                return hit
    return None


def _frozen_prefix(parts: list[str]) -> str | None:
    """The longest prefix of ``parts`` that names a frozen module, if any."""
    for cut in range(len(parts), 0, -1):
        name = ".".join(parts[:cut])
        if all(_is_module_part(p) for p in parts[:cut]) and _is_frozen(name):
            return name
    return None


def _mirrors(node: ast.AST) -> str | None:
    """The upstream name in a ``@mirrors("torch...")`` decorator, if the node has one."""
    for dec in getattr(node, "decorator_list", ()):
        if not (isinstance(dec, ast.Call) and len(dec.args) == 1 and not dec.keywords):
            continue
        func = _dotted(dec.func)
        arg = dec.args[0]
        named = func is not None and func.rpartition(".")[2] == "mirrors"
        if named and isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            return arg.value
    return None


def _source(qualname: str, module: _Module, node: ast.AST) -> Source:
    """The lines of ``node``, from its first decorator, as inspect.getsourcelines gives them."""
    if isinstance(node, ast.Module):
        return Source(qualname, module.file, 1, "".join(module.lines))
    first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])  # type: ignore[attr-defined]
    end: int = node.end_lineno  # type: ignore[attr-defined]
    if isinstance(node, _DEFS):
        # inspect's own block finder: it keeps the comments indented under the last
        # statement, which end_lineno leaves out.
        try:
            end = max(end, first - 1 + len(inspect.getblock(module.lines[first - 1 :])))
        except (tokenize.TokenError, SyntaxError):
            pass
    text = "".join(module.lines[first - 1 : end])
    return Source(qualname, module.file, first, text, mirrors=_mirrors(node))


def _missing(qualname: str, search: _Search) -> str:
    """Why ``qualname`` was not found: no module file at all, or no such name in it."""
    parts = qualname.split(".")
    usable = next((i for i, p in enumerate(parts) if not _is_module_part(p)), len(parts))
    for cut in range(usable, 0, -1):
        module = _module(".".join(parts[:cut]), search)
        if module is not None:
            return f"{qualname} not found in {_short_path(module.file)}"
    return f"{qualname} is not in the installed packages or this project: nothing to show"


def _from_script(qualname: str, script: str) -> Source:
    """A ``__main__`` function read from the recorded script with ast, never run."""
    parsed = _parse(os.path.abspath(script))
    if parsed is None:
        return Source(qualname, error=f"cannot read {script} as Python source")
    module = _Module("__main__", os.path.abspath(script), False, *parsed)
    hit = _walk(module, qualname.split(".")[1:], _Search(steps=0))  # no imports followed
    if hit is None or hit[1] is module.tree:
        return Source(qualname, error=f"{qualname} not found in {script}")
    return _source(qualname, *hit)


@lru_cache(maxsize=512)
def source_of(qualname: str, script: str | None = None) -> Source:
    """The source of ``qualname`` (cached: the same function backs many spans).

    ``script`` is the file a recorded program ran as ``__main__``: its
    functions are found there, since this process's ``__main__`` is torchscope.
    Nothing is imported: see the module docstring.
    """
    if not qualname or qualname == "?":
        return Source(qualname, error="the span names no function")
    if qualname.startswith("__main__."):
        if script is None:
            return Source(qualname, error="the recorded script is unknown")
        return _from_script(qualname, script)
    parts = qualname.split(".", MAX_PARTS)
    if len(parts) > MAX_PARTS:
        return Source(qualname, error=f"{qualname[:80]}... is not a Python name")
    if "__main__" in parts:  # another program's entry point: reading it is all it is for
        return Source(qualname, error=f"{qualname} names a __main__ module: never looked up")
    frozen = _frozen_prefix(parts)
    if frozen is not None or parts[0] in sys.builtin_module_names:
        why = f"{frozen} runs frozen" if frozen else f"{parts[0]} is built in"
        return Source(qualname, error=f"no Python source for {qualname} ({why})")
    hit = _locate(qualname, _Search())
    if hit is None:
        return Source(qualname, error=_missing(qualname, _Search()))
    return _source(qualname, *hit)


def script_of(argv: list[str]) -> str | None:
    """The script a recorded process ran, when it was a ``.py`` file that still exists."""
    for arg in argv[:2]:
        if arg.endswith(".py") and os.path.isfile(arg):
            return arg
    return None


def upstream_name(func: str, recorded: dict[str, str]) -> str | None:
    """The torch function a reimpl one mirrors: as recorded, else its ``@mirrors``."""
    if func in recorded:
        return recorded[func]
    return source_of(func).mirrors
