"""Mirrors ``torch/nn/parallel/__init__.py``: DataParallel and its building blocks.

Also exports :func:`lockstep` (torchscope's deterministic replica scheduling,
no torch counterpart). Left out: DistributedDataParallel.
"""

from ._lockstep import lockstep
from .data_parallel import DataParallel, data_parallel
from .parallel_apply import parallel_apply
from .replicate import replicate
from .scatter_gather import gather, scatter

__all__ = [
    "DataParallel",
    "data_parallel",
    "gather",
    "lockstep",
    "parallel_apply",
    "replicate",
    "scatter",
]
