"""Parameter and Buffer: the tensor kinds a Module files away when assigned.

Mirrors ``torch/nn/parameter.py``: ``Parameter`` (a ``torch.Tensor`` subclass
made with ``torch.Tensor._make_subclass``, exactly as torch makes its own),
``Buffer`` (a plain tensor flagged ``_is_buffer``), their metaclasses and
``is_lazy``. Left out: ``UninitializedParameter``/``UninitializedBuffer`` and
``UninitializedTensorMixin`` (lazy modules); ``is_lazy`` recognises torch's.

Why our own class and not ``torch.nn.Parameter``: this file is what a reader
studies to learn that a Parameter is nothing but a Tensor subclass with
``__torch_function__`` disabled (so ``w * 2`` is a plain Tensor) that a Module
recognises by type. It stays a real ``torch.Tensor``, so torch autograd and
``torch.optim`` take it as is. Two small, honest bridges keep both worlds
interchangeable, using torch's own mechanism for custom parameter types:

* our class carries ``_is_param = True``, the flag torch's ``_ParameterMeta``
  checks, so ``isinstance(reimpl_param, torch.nn.Parameter)`` is True and a
  torch module accepts our parameters;
* our ``_ParameterMeta`` also accepts ``torch.nn.Parameter`` instances, so a
  torch parameter assigned to a reimpl module is registered as a parameter.

One difference remains: ``torch.optim`` picks its foreach/fused kernels only
for ``type(p) in (torch.Tensor, torch.nn.Parameter)``; on CPU it never does,
on CUDA our parameters take the per-tensor loop.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
from torch._C import _disabled_torch_function_impl

from .._trace import mirrors

__all__ = ["Buffer", "Parameter", "is_lazy"]


@mirrors("torch.nn.parameter._ParameterMeta")
class _ParameterMeta(torch._C._TensorMeta):
    # Make `isinstance(t, Parameter)` return True for custom tensor instances that have
    # the _is_param flag, and for torch's own Parameters (the bridge described above).
    def __instancecheck__(self, instance: Any) -> bool:
        if self is Parameter:
            if isinstance(instance, torch.Tensor) and getattr(instance, "_is_param", False):
                return True
            if isinstance(instance, torch.nn.Parameter):
                return True
        return super().__instancecheck__(instance)


@mirrors("torch.nn.parameter.Parameter")
class Parameter(torch.Tensor, metaclass=_ParameterMeta):
    r"""A kind of Tensor that is to be considered a module parameter.

    Parameters are :class:`~torch.Tensor` subclasses, that have a
    very special property when used with :class:`Module` s - when they're
    assigned as Module attributes they are automatically added to the list of
    its parameters, and will appear e.g. in :meth:`~Module.parameters` iterator.
    Assigning a Tensor doesn't have such effect.

    Args:
        data (Tensor): parameter tensor.
        requires_grad (bool, optional): if the parameter requires gradient. Default: `True`
    """

    _is_param = True  # torch's isinstance(p, torch.nn.Parameter) reads this flag

    def __new__(cls, data: torch.Tensor | None = None, requires_grad: bool = True) -> Parameter:
        if data is None:
            data = torch.empty(0)
        if type(data) in (torch.Tensor, Parameter, torch.nn.Parameter):
            # For ease of BC maintenance, keep this path for standard Tensor.
            # _make_subclass shares data's storage and makes a fresh autograd leaf.
            return torch.Tensor._make_subclass(cls, data, requires_grad)

        # Path for custom tensors: set a flag on the instance to indicate parameter-ness.
        t = data.detach().requires_grad_(requires_grad)
        if type(t) is not type(data):
            raise RuntimeError(
                f"Creating a Parameter from an instance of type {type(data).__name__} "
                "requires that detach() returns an instance of the same type, but return "
                f"type {type(t).__name__} was found instead. To use the type as a "
                "Parameter, please correct the detach() semantics defined by "
                "its __torch_dispatch__() implementation."
            )
        t._is_param = True  # type: ignore[attr-defined]
        return t  # type: ignore[return-value]

    def __deepcopy__(self, memo: dict) -> Parameter:
        if id(self) in memo:
            return memo[id(self)]
        else:
            result = type(self)(
                self.data.clone(memory_format=torch.preserve_format), self.requires_grad
            )
            memo[id(self)] = result
            return result

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()

    def __reduce_ex__(self, proto: Any) -> tuple:
        state = torch._utils._get_obj_state(self)

        # See Note [Don't serialize hooks]: hooks never travel with a pickle.
        hooks: OrderedDict = OrderedDict()
        if not state:
            return (_rebuild_parameter, (self.data, self.requires_grad, hooks))

        return (_rebuild_parameter_with_state, (self.data, self.requires_grad, hooks, state))

    __torch_function__ = _disabled_torch_function_impl


@mirrors("torch._utils._rebuild_parameter")
def _rebuild_parameter(data: torch.Tensor, requires_grad: bool, backward_hooks: Any) -> Parameter:
    """Unpickles a reimpl Parameter (torch's helper would make a torch one)."""
    param = Parameter(data, requires_grad)
    # NB: This line exists only for backwards compatibility; the
    # general expectation is that backward_hooks is an empty
    # OrderedDict.  See Note [Don't serialize hooks]
    param._backward_hooks = backward_hooks
    return param


@mirrors("torch._utils._rebuild_parameter_with_state")
def _rebuild_parameter_with_state(
    data: torch.Tensor, requires_grad: bool, backward_hooks: Any, state: Any
) -> Parameter:
    """Unpickles a reimpl Parameter that carries Python attributes."""
    param = Parameter(data, requires_grad)
    param._backward_hooks = backward_hooks
    return torch._utils._set_obj_state(param, state)


@mirrors("torch.nn.parameter.is_lazy")
def is_lazy(param: Any) -> bool:
    """Returns whether ``param`` is an ``UninitializedParameter`` or ``UninitializedBuffer``."""
    return isinstance(param, torch.nn.parameter.UninitializedTensorMixin)


@mirrors("torch.nn.parameter._BufferMeta")
class _BufferMeta(torch._C._TensorMeta):
    # Make `isinstance(t, Buffer)` return True for custom tensor instances that have the
    # _is_buffer flag. Buffer() returns such a flagged plain tensor, so torch's Buffers
    # and ours are recognised by both libraries alike.
    def __instancecheck__(self, instance: Any) -> bool:
        if (
            self is Buffer
            and isinstance(instance, torch.Tensor)
            and getattr(instance, "_is_buffer", False)
        ):
            return True
        return super().__instancecheck__(instance)


@mirrors("torch.nn.parameter.Buffer")
class Buffer(torch.Tensor, metaclass=_BufferMeta):
    r"""A kind of Tensor that should not be considered a model parameter.

    For example, BatchNorm's ``running_mean`` is not a parameter, but is part of
    the module's state. Assigning a ``Buffer`` to a Module attribute registers it
    as a buffer (assigning a plain Tensor does not).

    Args:
        data (Tensor): buffer tensor.
        persistent (bool, optional): whether the buffer is part of the module's
            :attr:`state_dict`. Default: ``True``
    """

    def __new__(cls, data: torch.Tensor | None = None, *, persistent: bool = True) -> Buffer:
        if data is None:
            data = torch.empty(0)

        # Not a subclass instance at all: a detached plain tensor with two flags.
        t = data.detach().requires_grad_(data.requires_grad)
        t.persistent = persistent  # type: ignore[attr-defined]
        t._is_buffer = True  # type: ignore[attr-defined]
        return t  # type: ignore[return-value]

    __torch_function__ = _disabled_torch_function_impl
