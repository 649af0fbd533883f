"""The ``torchscope`` subcommands, one module each.

Every module here has ``ORDER`` (its place in ``--help``) and
``add_parser(sub)``, which declares the subcommand and sets ``func`` to the
function that runs it. ``tracer/cli.py`` finds them itself, so a new
subcommand is one new file here and nothing else.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType


def command_modules() -> list[ModuleType]:
    """Every subcommand module, in ``--help`` order."""
    found = []
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "add_parser"):
            found.append(module)
    return sorted(found, key=lambda m: (getattr(m, "ORDER", 100), m.__name__))
