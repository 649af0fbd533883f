"""Collation, mirroring ``torch/utils/data/_utils/collate.py``.

``default_collate`` turns a list of samples into a batch by walking the first
sample's structure (mappings, namedtuples, sequences) and stacking the leaves;
``default_convert`` only turns NumPy arrays into tensors (the collate function
when automatic batching is off). Inside a worker, tensors are stacked straight
into shared memory so the batch crosses to the main process without a copy.

Left out: nothing of behaviour; the docstring examples.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import re
from collections.abc import Callable
from typing import Any

import torch

from reimpl._trace import mirrors

np_str_obj_array_pattern = re.compile(r"[SaUO]")

CollateFnMap = dict[type | tuple[type, ...], Callable]


@mirrors("torch.utils.data._utils.collate.default_convert")
def default_convert(data: Any) -> Any:
    """Converts NumPy arrays (also inside containers) to tensors; the rest is kept."""
    elem_type = type(data)
    if isinstance(data, torch.Tensor):
        return data
    elif (
        elem_type.__module__ == "numpy"
        and elem_type.__name__ != "str_"
        and elem_type.__name__ != "string_"
    ):
        # arrays of strings and objects cannot become tensors
        if (
            elem_type.__name__ == "ndarray"
            and np_str_obj_array_pattern.search(data.dtype.str) is not None
        ):
            return data
        return torch.as_tensor(data)
    elif isinstance(data, collections.abc.Mapping):
        try:
            if isinstance(data, collections.abc.MutableMapping):
                # a clone keeps whatever extra state the mapping type carries
                clone = copy.copy(data)
                clone.update({key: default_convert(data[key]) for key in data})
                return clone
            return elem_type({key: default_convert(data[key]) for key in data})
        except TypeError:  # no copy()/update() or no __init__(iterable)
            return {key: default_convert(data[key]) for key in data}
    elif isinstance(data, tuple) and hasattr(data, "_fields"):  # namedtuple
        return elem_type(*(default_convert(d) for d in data))
    elif isinstance(data, tuple):
        return [default_convert(d) for d in data]  # torch keeps this for backward compatibility
    elif isinstance(data, collections.abc.Sequence) and not isinstance(data, (str, bytes)):
        try:
            if isinstance(data, collections.abc.MutableSequence):
                clone = copy.copy(data)
                for i, d in enumerate(data):
                    clone[i] = default_convert(d)
                return clone
            return elem_type([default_convert(d) for d in data])
        except TypeError:  # range and friends
            return [default_convert(d) for d in data]
    return data


default_collate_err_msg_format = (
    "default_collate: batch must contain tensors, numpy arrays, numbers, dicts or lists; found {}"
)


@mirrors("torch.utils.data._utils.collate.collate")
def collate(batch: Any, *, collate_fn_map: CollateFnMap | None = None) -> Any:
    """Collates by the type of the first element: the registry first, then containers."""
    elem = batch[0]
    elem_type = type(elem)

    if collate_fn_map is not None:
        if elem_type in collate_fn_map:
            return collate_fn_map[elem_type](batch, collate_fn_map=collate_fn_map)
        for collate_type in collate_fn_map:  # insertion order: subclasses of the keys
            if isinstance(elem, collate_type):
                return collate_fn_map[collate_type](batch, collate_fn_map=collate_fn_map)

    if isinstance(elem, collections.abc.Mapping):
        try:
            if isinstance(elem, collections.abc.MutableMapping):
                clone = copy.copy(elem)
                clone.update(
                    {
                        key: collate([d[key] for d in batch], collate_fn_map=collate_fn_map)
                        for key in elem
                    }
                )
                return clone
            return elem_type(
                {
                    key: collate([d[key] for d in batch], collate_fn_map=collate_fn_map)
                    for key in elem
                }
            )
        except TypeError:
            return {
                key: collate([d[key] for d in batch], collate_fn_map=collate_fn_map) for key in elem
            }
    elif isinstance(elem, tuple) and hasattr(elem, "_fields"):  # namedtuple
        return elem_type(
            *(collate(samples, collate_fn_map=collate_fn_map) for samples in zip(*batch))
        )
    elif isinstance(elem, collections.abc.Sequence):
        # a ragged batch would be silently truncated by zip, so refuse it
        it = iter(batch)
        elem_size = len(next(it))
        if not all(len(elem) == elem_size for elem in it):
            raise RuntimeError("each element in list of batch should be of equal size")
        transposed = list(zip(*batch))  # read twice below
        if isinstance(elem, tuple):
            return [collate(samples, collate_fn_map=collate_fn_map) for samples in transposed]
        try:
            if isinstance(elem, collections.abc.MutableSequence):
                clone = copy.copy(elem)
                for i, samples in enumerate(transposed):
                    clone[i] = collate(samples, collate_fn_map=collate_fn_map)
                return clone
            return elem_type(
                [collate(samples, collate_fn_map=collate_fn_map) for samples in transposed]
            )
        except TypeError:
            return [collate(samples, collate_fn_map=collate_fn_map) for samples in transposed]

    raise TypeError(default_collate_err_msg_format.format(elem_type))


@mirrors("torch.utils.data._utils.collate.collate_tensor_fn")
def collate_tensor_fn(batch: Any, *, collate_fn_map: CollateFnMap | None = None) -> torch.Tensor:
    """Stacks tensors; in a worker, into shared memory so the batch travels without a copy."""
    from .worker import get_worker_info

    elem = batch[0]
    out = None
    if elem.is_nested:
        raise RuntimeError(
            "Batches of nested tensors are not currently supported by the default collate_fn; "
            "please provide a custom collate_fn to handle them appropriately."
        )
    if elem.layout in {
        torch.sparse_coo,
        torch.sparse_csr,
        torch.sparse_bsr,
        torch.sparse_csc,
        torch.sparse_bsc,
    }:
        raise RuntimeError(
            "Batches of sparse tensors are not currently supported by the default collate_fn; "
            "please provide a custom collate_fn to handle them appropriately."
        )
    if get_worker_info() is not None:
        numel = sum(x.numel() for x in batch)
        storage = elem._typed_storage()._new_shared(numel, device=elem.device)
        out = elem.new(storage).resize_(len(batch), *list(elem.size()))
    return torch.stack(batch, 0, out=out)


@mirrors("torch.utils.data._utils.collate.collate_numpy_array_fn")
def collate_numpy_array_fn(batch: Any, *, collate_fn_map: CollateFnMap | None = None) -> Any:
    """Arrays become tensors, then stack; string and object arrays are refused."""
    elem = batch[0]
    if np_str_obj_array_pattern.search(elem.dtype.str) is not None:
        raise TypeError(default_collate_err_msg_format.format(elem.dtype))
    return collate([torch.as_tensor(b) for b in batch], collate_fn_map=collate_fn_map)


@mirrors("torch.utils.data._utils.collate.collate_numpy_scalar_fn")
def collate_numpy_scalar_fn(batch: Any, *, collate_fn_map: CollateFnMap | None = None) -> Any:
    """NumPy scalars keep their dtype."""
    return torch.as_tensor(batch)


@mirrors("torch.utils.data._utils.collate.collate_float_fn")
def collate_float_fn(batch: Any, *, collate_fn_map: CollateFnMap | None = None) -> Any:
    """Python floats are doubles."""
    return torch.tensor(batch, dtype=torch.float64)


@mirrors("torch.utils.data._utils.collate.collate_int_fn")
def collate_int_fn(batch: Any, *, collate_fn_map: CollateFnMap | None = None) -> Any:
    """Python ints (and bools) go through torch.tensor's own type inference."""
    return torch.tensor(batch)


@mirrors("torch.utils.data._utils.collate.collate_str_fn")
def collate_str_fn(batch: Any, *, collate_fn_map: CollateFnMap | None = None) -> Any:
    """Strings and bytes stay a list."""
    return batch


default_collate_fn_map: CollateFnMap = {torch.Tensor: collate_tensor_fn}
with contextlib.suppress(ImportError):
    import numpy as np

    default_collate_fn_map[np.ndarray] = collate_numpy_array_fn  # memmap is a subclass
    default_collate_fn_map[(np.bool_, np.number, np.object_)] = collate_numpy_scalar_fn
default_collate_fn_map[float] = collate_float_fn
default_collate_fn_map[int] = collate_int_fn
default_collate_fn_map[str] = collate_str_fn
default_collate_fn_map[bytes] = collate_str_fn


@mirrors("torch.utils.data._utils.collate.default_collate")
def default_collate(batch: Any) -> Any:
    """Adds a batch dimension to every leaf of the samples' common structure."""
    return collate(batch, collate_fn_map=default_collate_fn_map)
