"""Shared helpers: build the same dataset and loader from torch and from reimpl, compare.

Each dataset class is made once per library (``torch.utils.data`` or
``reimpl.utils.data``) from one definition, so both DataLoaders see the same
code with their own base classes. Samples carry the index, the worker that
read it and ``torch.initial_seed()`` there, so comparing batches compares
order, worker assignment and worker seeding at once.
"""

from __future__ import annotations

import collections
import functools
import math
import random
import warnings
from typing import Any

import numpy as np
import torch
import torch.utils.data as T

import reimpl.utils.data as R

LIBS = {"torch": T, "reimpl": R}


def _worker_id(lib: Any) -> int:
    info = lib.get_worker_info()
    return -1 if info is None else info.id


@functools.cache
def map_dataset_class(lib: Any) -> type:
    class Squares(lib.Dataset):
        """Sample i: a tensor (i, i*i), who read it and the seed it saw."""

        def __init__(self, n: int) -> None:
            self.n = n

        def __len__(self) -> int:
            return self.n

        def __getitem__(self, i: int) -> dict:
            return {
                "x": torch.tensor([float(i), float(i * i)]),
                "i": i,
                "worker": _worker_id(lib),
                "seed": str(torch.initial_seed()),
                # every RNG a worker seeds, each by torch's rule
                "rand": torch.rand(()).item(),
                "np": float(np.random.rand()),
                "py": random.random(),
            }

    return Squares


@functools.cache
def iterable_dataset_class(lib: Any) -> type:
    class Stream(lib.IterableDataset):
        """range(start, end), split between workers when ``shard``, else replicated."""

        def __init__(self, start: int, end: int, shard: bool = True) -> None:
            self.start, self.end, self.shard = start, end, shard

        def __len__(self) -> int:
            return self.end - self.start

        def __iter__(self):
            info = lib.get_worker_info()
            start, end = self.start, self.end
            if info is not None and self.shard:
                per_worker = math.ceil((end - start) / info.num_workers)
                start = start + info.id * per_worker
                end = min(start + per_worker, end)
            for i in range(start, end):
                yield {"i": i, "worker": _worker_id(lib), "seed": str(torch.initial_seed())}

    return Stream


def normalize(obj: Any) -> Any:
    """A comparable picture of a batch: tensors become (dtype, shape, values)."""
    if isinstance(obj, torch.Tensor) and (obj.is_nested or obj.layout != torch.strided):
        return ("tensor", str(obj.dtype), str(obj.layout), obj.is_nested)
    if isinstance(obj, torch.Tensor):
        return ("tensor", str(obj.dtype), tuple(obj.shape), obj.tolist())
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):
        return (type(obj).__name__, *[normalize(x) for x in obj])
    if isinstance(obj, collections.abc.Mapping):
        return (type(obj).__name__, {k: normalize(v) for k, v in obj.items()})
    if isinstance(obj, (list, tuple)):
        return (type(obj).__name__, [normalize(x) for x in obj])
    return obj


def run_loader(lib: Any, dataset: Any, epochs: int = 1, seed: int | None = 7, **kwargs: Any):
    """All batches of ``epochs`` epochs, normalized; a seeded generator when ``seed``."""
    torch.manual_seed(1234)  # the global RNG too: samplers without a generator use it
    np.random.seed(1234)
    random.seed(1234)
    if seed is not None:
        kwargs["generator"] = torch.Generator().manual_seed(seed)
    for key in ("sampler", "batch_sampler"):
        if callable(kwargs.get(key)):
            kwargs[key] = kwargs[key](lib)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "3 workers on 2 cores" and friends
        loader = lib.DataLoader(dataset, **kwargs)
        return [[normalize(b) for b in loader] for _ in range(epochs)]


def run_twins(make_dataset: Any, epochs: int = 1, **kwargs: Any) -> tuple[list, list]:
    """The same loading through torch and through reimpl."""
    theirs = run_loader(T, make_dataset(T), epochs, **kwargs)
    ours = run_loader(R, make_dataset(R), epochs, **kwargs)
    return theirs, ours


def raised(fn: Any) -> tuple[type, str] | None:
    """The exception type and message ``fn()`` raises (None if it returns)."""
    try:
        fn()
    except Exception as exc:
        return type(exc), str(exc)
    return None


def same_error(make: Any) -> tuple[Any, Any]:
    """``make(lib)`` under torch and reimpl: (torch's outcome, ours), exception name + text."""
    outcome = {}
    for name, lib in LIBS.items():
        got = raised(lambda lib=lib: make(lib))
        outcome[name] = None if got is None else (got[0].__name__, got[1])
    return outcome["torch"], outcome["reimpl"]
