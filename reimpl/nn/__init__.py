"""Mirrors ``torch/nn/__init__.py``: Module, Parameter, Buffer, the layers, DataParallel."""

from . import init
from .modules import *  # noqa: F403
from .modules import __all__ as _modules_all
from .parallel import DataParallel
from .parameter import Buffer, Parameter

__all__ = [
    "Buffer",
    "DataParallel",
    "Parameter",
    "init",
    *_modules_all,
]
