"""Every declared @mirrors target exists in the installed torch."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import reimpl
from reimpl import _trace


def _import_all_reimpl() -> None:
    for info in pkgutil.walk_packages(reimpl.__path__, "reimpl."):
        importlib.import_module(info.name)


def resolve(qualname: str) -> object:
    """Imports the longest module prefix of ``qualname`` and walks the rest."""
    parts = qualname.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(qualname)


_import_all_reimpl()
DECLARED = sorted(_trace.MIRRORS.items())


def test_mirrors_are_declared():
    assert len(DECLARED) > 0


@pytest.mark.parametrize("ours, upstream", DECLARED, ids=[o for o, _ in DECLARED])
def test_mirrored_torch_name_exists(ours, upstream):
    assert upstream.startswith("torch."), f"{ours} mirrors {upstream}, outside torch"
    target = resolve(upstream)
    assert target is not None
    mine = resolve(ours)
    assert getattr(mine, "__mirrors__", None) == upstream


def test_source_of_both_sides_is_readable():
    """What the TUI's source pane shows: both sources, for a sample of pairs."""
    for ours, upstream in DECLARED[:: max(1, len(DECLARED) // 20)]:
        for name in (ours, upstream):
            obj = inspect.unwrap(resolve(name))
            if inspect.isfunction(obj) or inspect.isclass(obj) or inspect.ismethod(obj):
                assert inspect.getsource(obj)
