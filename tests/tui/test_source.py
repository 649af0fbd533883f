"""Finding sources by path and ast: the same lines inspect shows, nothing a trace names is run."""

from __future__ import annotations

import inspect
import os
import pkgutil
import sys
import time

import pytest
import torch
from tui_helpers import SIZE, ready, type_text

import samples
import tracer
from reimpl import _trace
from tui import source as source_mod
from tui.app import TorchscopeApp
from tui.source import script_of, source_of, upstream_name
from tui.widgets.source import SourcePane

# Functions the source pane shows for reimpl and torch: hot paths with @mirrors,
# decorators that use functools.wraps, a property, a staticmethod, a nested class,
# a re-export through a package, a star import, a class-body alias, an inherited method.
REPRESENTATIVE = [
    "reimpl.nn.modules.module.Module._call_impl",
    "reimpl.nn.modules.batchnorm._BatchNorm.forward",
    "reimpl.optim.sgd.SGD.step",  # @mirrors over @_use_grad_for_differentiable (wraps)
    "reimpl.utils.data.sampler.RandomSampler.num_samples",  # property
    "reimpl.optim.swa_utils.SWALR._cosine_anneal",  # staticmethod
    "reimpl.utils.data._multiprocessing_iter._MultiProcessingDataLoaderIter."
    "_mark_worker_as_unavailable",  # a decorator over three lines
    "reimpl.nn.parallel.parallel_apply",  # the package's name for the function
    "torch.nn.modules.module.Module._call_impl",
    "torch.optim.sgd.SGD.step",
    "torch.optim.lr_scheduler.ReduceLROnPlateau.in_cooldown",  # property
    "torch.fx.traceback.NodeSource.NodeInfo.__init__",  # nested class
    "torch.optim.SGD.step",  # from .sgd import SGD
    "torch.nn.Linear.forward",  # from .modules import *
    "torch.nn.modules.module.Module.__call__",  # __call__ = _wrapped_call_impl
    "torch.optim.sgd.SGD.zero_grad",  # inherited from Optimizer
]


def _inspected(qualname: str) -> tuple[object, str, int, str]:
    """What the former import-based lookup showed: import, getattr, unwrap, inspect."""
    parent, _, last = qualname.rpartition(".")
    obj = getattr(pkgutil.resolve_name(parent), last)  # as the parent sees it
    wrapped = obj
    if isinstance(obj, property):
        obj = obj.fget
    obj = inspect.unwrap(getattr(obj, "__func__", obj))
    lines, start = inspect.getsourcelines(obj)
    return wrapped, inspect.getsourcefile(obj), start, "".join(lines)


@pytest.mark.parametrize("qualname", REPRESENTATIVE)
def test_finds_the_lines_inspect_finds(qualname):
    src = source_of(qualname)
    obj, file, start, text = _inspected(qualname)
    assert src.error is None, src.error
    assert (src.file, src.start) == (file, start)
    assert src.text == text
    assert src.mirrors == getattr(obj, "__mirrors__", None)


def test_mirrors_come_from_the_decorator_without_importing():
    src = source_of("reimpl.nn.modules.batchnorm._BatchNorm.forward")
    assert src.file is not None and src.file.endswith("reimpl/nn/modules/batchnorm.py")
    assert src.mirrors == "torch.nn.modules.batchnorm._BatchNorm.forward"
    assert src.text.lstrip().startswith('@mirrors("torch.nn.modules.batchnorm')


def test_upstream_comes_from_the_trace_or_the_decorator():
    func = "reimpl.nn.modules.batchnorm._BatchNorm.forward"
    assert upstream_name(func, {}) == "torch.nn.modules.batchnorm._BatchNorm.forward"
    assert upstream_name(func, {func: "torch.x"}) == "torch.x"
    torch_src = source_of("torch.nn.modules.batchnorm._BatchNorm.forward")
    assert torch_src.error is None
    assert torch_src.file == inspect.getsourcefile(torch.nn.modules.batchnorm._BatchNorm)


TRICKY = '''\
"""Shapes of definitions the lookup must place where inspect does."""
import functools
import sys

from .base import Base


def logged(tag):
    def deco(func):
        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            return func(*args, **kwargs)

        return wrapper

    return deco
\f

class Outer(Base):
    class Inner:
        @logged(
            "inner",
        )
        def method(self):
            return 1
            # a comment indented under the body: inspect keeps it

    @property
    def value(self):
        return self._value

    @value.setter
    def value(self, v):
        self._value = v

    @staticmethod
    def static():
        return 2

    @classmethod
    def make(cls):
        return cls()

    def _impl(self):
        return 3

    __call__ = _impl


def plain():
    return 4


plain = logged("again")(plain)

if sys.version_info >= (3, 0):

    def conditional():
        return 5
'''


@pytest.fixture
def tricky(tmp_path, monkeypatch):
    """A package of awkward definitions on sys.path, imported only by the test itself."""
    pkg = tmp_path / "tricky_defs"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "base.py").write_text("class Base:\n    def inherited(self):\n        return 0\n")
    (pkg / "shapes.py").write_text(TRICKY)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "tricky_defs.shapes"
    for name in [m for m in sys.modules if m.startswith("tricky_defs")]:
        del sys.modules[name]


@pytest.mark.parametrize(
    "name",
    [
        "Outer.Inner.method",
        "Outer.value",
        "Outer.static",
        "Outer.make",
        "Outer.__call__",
        "Outer.inherited",
        "plain",
        "conditional",
        "logged.<locals>.deco",
    ],
)
def test_awkward_definitions_match_inspect(tricky, name):
    qualname = f"{tricky}.{name}"
    src = source_of(qualname)  # before anything imports the package
    assert "tricky_defs" not in sys.modules
    if "<locals>" in name:  # no object to getattr: the lines of the inner def
        assert src.error is None and src.text.lstrip().startswith("def deco(func):")
        return
    _, file, start, text = _inspected(qualname)
    assert (src.file, src.start, src.text) == (file, start, text)


SIDE_EFFECT = """\
import pathlib
pathlib.Path({marker!r}).write_text("imported")
raise SystemExit("imported by the viewer")


def run():
    return "payload"
"""


@pytest.fixture
def hostile(tmp_path, monkeypatch):
    """Modules that leave a marker file and raise SystemExit when imported.

    ``sidefx_pkg`` sits in a directory on sys.path; ``samples.sidefx_mod`` is reachable
    by import through ``samples.__path__`` (as the former lookup imported any
    ``samples.*`` name) but is not a file of the project.
    """
    marker = tmp_path / "imported.marker"
    code = SIDE_EFFECT.format(marker=str(marker))
    pkg = tmp_path / "on_path" / "sidefx_pkg"
    pkg.mkdir(parents=True)
    for name in ("__init__.py", "payload.py", "__main__.py"):
        (pkg / name).write_text(code)
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "sidefx_mod.py").write_text(code)
    monkeypatch.syspath_prepend(str(tmp_path / "on_path"))
    monkeypatch.setattr(samples, "__path__", [*samples.__path__, str(extra)])
    names = ("sidefx_pkg", "samples.sidefx_mod", "torch.utils.model_dump.__main__")
    source_of.cache_clear()  # each test looks the names up afresh
    assert not marker.exists() and not any(n in sys.modules for n in names)
    yield marker, names
    assert not marker.exists(), "a module named by a trace was imported"
    assert not any(n in sys.modules for n in names)


def test_a_module_on_sys_path_is_read_never_imported(hostile):
    marker, names = hostile
    src = source_of("sidefx_pkg.payload.run")
    assert src.error is None and "def run" in src.text
    assert src.file is not None and src.file.endswith("sidefx_pkg/payload.py")
    assert source_of("sidefx_pkg.run").start == src.start  # the package's own __init__
    assert upstream_name("sidefx_pkg.payload.run", {}) is None
    assert not marker.exists() and not any(n in sys.modules for n in names)


def test_main_modules_and_names_outside_the_packages_show_nothing(hostile):
    marker, names = hostile
    # The module that closed the viewer: torch/utils/model_dump/__main__.py exits on import.
    dump = source_of("torch.utils.model_dump.__main__.main")
    assert dump.file is None and "__main__" in (dump.error or "")
    assert "__main__" in (source_of("sidefx_pkg.__main__.main").error or "")
    # Importable through samples.__path__, but no file of the project or of sys.path.
    outside = source_of("samples.sidefx_mod.run")
    assert outside.file is None and outside.text == ""
    assert "not found in" in (outside.error or "")
    assert (outside.error or "").endswith("samples/__init__.py")  # the package, not the name
    assert not marker.exists() and not any(n in sys.modules for n in names)


async def test_viewing_a_trace_that_names_them_imports_nothing(hostile, tmp_path, monkeypatch):
    marker, _ = hostile  # the fixture checks sys.modules once the app is gone
    path = str(tmp_path / "hostile.tsdb")
    probe = "reimpl.nn.modules.module.Module._call_impl"
    monkeypatch.setitem(_trace.MIRRORS, probe, "samples.sidefx_mod.run")
    funcs = {
        "evil-path": "sidefx_pkg.payload.run",
        "evil-main": "torch.utils.model_dump.__main__.main",
        "evil-samples": "samples.sidefx_mod.run",
        "evil-mirror": probe,
    }
    with tracer.record(path):
        with _trace.step(0):
            for name, func in funcs.items():
                with _trace.span("optim.step", name, func=func):
                    pass
    app = TorchscopeApp(path)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        pane = app.screen.query_one(SourcePane)
        for name, func in funcs.items():
            await pilot.press("slash")
            await type_text(pilot, name)
            await pilot.press("enter")
            await pilot.pause()
            assert pane.reimpl is not None and pane.reimpl.qualname == func
            assert not marker.exists(), f"selecting {name} imported {func}"
            if name == "evil-path":  # on sys.path: its text is shown, read not run
                assert pane.reimpl.error is None and "def run" in pane.reimpl.text
        # The last one mirrors a name outside the packages: shown as nothing, said why.
        assert pane.upstream is not None and pane.upstream.qualname == "samples.sidefx_mod.run"
        assert pane.upstream.file is None and pane.upstream.error
        assert app.is_running  # no SystemExit closed the viewer
    assert app.return_code in (None, 0)


def test_path_tricks_in_a_name_are_refused(tmp_path, monkeypatch):
    root = tmp_path / "root"
    root.mkdir()
    secret = tmp_path / "secret.py"
    secret.write_text("def f():\n    return 'outside the roots'\n")
    (root / "ok.py").write_text("def f():\n    return 1\n")
    (root / "sub").mkdir()
    monkeypatch.syspath_prepend(str(root))
    assert source_of("ok.f").error is None  # the root itself works
    tricks = [
        "..secret.f",  # empty parts, as ".." would make
        f"{tmp_path}/secret.f",  # an absolute path as a component: tmp_path/secret.py
        "sub/../../secret.f",  # root/sub/../../secret.py is tmp_path/secret.py too
        "ok..f",
        ".ok.f",
        "ok/../ok.f",
        "ok.\x00.f",
        "class.f",  # a keyword is no module name
        ".".join(["a"] * 100_000),  # a huge name costs no stat per part
    ]
    started = time.perf_counter()
    for name in tricks:
        src = source_of(name)
        assert src.file is None and src.error, name
    assert time.perf_counter() - started < 5


def test_only_regular_files_are_read(tmp_path, monkeypatch):
    os.mkfifo(tmp_path / "fifo_mod.py")  # opening it for reading would block forever
    (tmp_path / "dir_mod.py").mkdir()
    monkeypatch.syspath_prepend(str(tmp_path))
    assert source_of("fifo_mod.f").error is not None
    assert source_of("dir_mod.f").error is not None


def test_a_file_is_parsed_once_for_all_its_functions(tmp_path, monkeypatch):
    (tmp_path / "cached_mod.py").write_text("def a():\n    pass\n\n\ndef b():\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    source_mod._parse.cache_clear()
    assert source_of("cached_mod.a").start == 1
    assert source_of("cached_mod.b").start == 5
    info = source_mod._parse.cache_info()
    assert (info.misses, info.hits) == (1, 1)


def test_unknown_frozen_or_builtin_names_fail_softly():
    missing = source_of("reimpl.nope.Missing.method").error or ""
    assert "not found in" in missing and missing.endswith("reimpl/__init__.py")
    assert source_of("").error == "the span names no function"
    assert "not in the installed packages" in (source_of("some_untrusted_module.run").error or "")
    builtin = source_of("builtins.len")
    assert builtin.file is None and "built in" in (builtin.error or "")
    # The import machinery runs frozen: what the import spans of the sample trace show.
    frozen = source_of("importlib._bootstrap._find_and_load")
    assert (frozen.error or "").startswith("no Python source for importlib._bootstrap._find_")


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
