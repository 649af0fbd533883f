"""nn.Module: parameters, buffers, submodules, hooks, state_dict, train/eval, __call__.

Mirrors ``torch/nn/modules/module.py`` side by side, in the same order: the
global hook registries and ``register_module_*`` functions, then ``Module``
(``__init__``, ``register_*``, ``get_*``/``set_submodule``, ``_apply`` and its
conversions, hook registration, ``_call_impl``, attribute routing,
``state_dict``/``load_state_dict``, the ``named_*`` iterators, ``train``/``eval``,
``__repr__``, ``_replicate_for_data_parallel``). ``reimpl.nn.Module`` is its own
class: it does not subclass ``torch.nn.Module``. Tensors, autograd and
``BackwardHookFunction`` stay torch's.

Left out: ``ipu``/``xpu``/``mtia`` and ``compile`` (need hardware or
torch.compile; ``compile`` raises), the ``torch.__future__`` swap-tensors
branch of ``_apply``/``_load_from_state_dict`` (the default ``.data =`` and
``copy_`` paths are kept, and the overwrite-on-conversion flag is honoured),
the ScriptModule check in ``register_buffer``, FakeTensor and
traceable-subclass special cases, and ``_call_impl``'s
``torch.compiler.is_compiling()`` shortcut.

Added for torchscope (the only non-upstream code; the instrumentation lives at
the end of the file): when a recorder is attached (``_trace.sink is not
None``), ``_call_impl`` records a ``module.forward`` span named by the
module's path from its root (``_record_forward_py``, or the same in one C call
from ``reimpl/_native`` when the recorder drains it), a ``hook.*`` span per
hook call, and
``module.backward`` spans from one tensor pre-hook per module boundary (a C++
one from ``reimpl/_native`` when the recorder drains it; switched off by
``reimpl._trace.backward_spans = False``), and sends a structure
snapshot per root; the cold paths (``_apply`` and the conversions on it,
``train``/``eval``, ``state_dict``, ``load_state_dict``, ``apply``,
``zero_grad``) leave one span per call on the root. ``_structure_changed()``
calls on registration paths tell it when paths and snapshots must be
recomputed. Detached and without hooks,
``_call_impl`` is torch's fast path plus one comparison.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import itertools
import threading
import types
import warnings
import weakref
from collections import OrderedDict, namedtuple
from collections.abc import Callable, Iterator, Mapping
from threading import get_ident
from time import perf_counter_ns
from typing import Any, TypeVar, Union

import torch
from torch import Tensor, device, dtype

from ... import _trace
from ..._trace import mirrors
from ...utils import hooks as _hooks
from ...utils.hooks import BackwardHook, RemovableHandle
from ..parameter import Buffer, Parameter, is_lazy

__all__ = [
    "Module",
    "register_module_backward_hook",
    "register_module_buffer_registration_hook",
    "register_module_forward_hook",
    "register_module_forward_pre_hook",
    "register_module_full_backward_hook",
    "register_module_full_backward_pre_hook",
    "register_module_module_registration_hook",
    "register_module_parameter_registration_hook",
]

_grad_t = Union[tuple[Tensor, ...], Tensor]  # noqa: UP007
T = TypeVar("T", bound="Module")


@mirrors("torch.nn.modules.module._IncompatibleKeys")
class _IncompatibleKeys(namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])):
    __slots__ = ()

    def __repr__(self) -> str:
        if not self.missing_keys and not self.unexpected_keys:
            return "<All keys matched successfully>"
        return super().__repr__()

    __str__ = __repr__


@mirrors("torch.nn.modules.module._addindent")
def _addindent(s_: str, numSpaces: int) -> str:
    s = s_.split("\n")
    # don't do anything for single-line stuff
    if len(s) == 1:
        return s_
    first = s.pop(0)
    # Only add indentation to non-blank lines; blank lines stay empty
    s = [(numSpaces * " ") + line if line.strip() else "" for line in s]
    return first + "\n" + "\n".join(s)


# This tracks hooks common to all modules that are executed immediately before
# registering the buffer/module/parameter
_global_buffer_registration_hooks: dict[int, Callable] = OrderedDict()
_global_module_registration_hooks: dict[int, Callable] = OrderedDict()
_global_parameter_registration_hooks: dict[int, Callable] = OrderedDict()


@mirrors("torch.nn.modules.module._WrappedHook")
class _WrappedHook:
    """A hook that receives its module first, held weakly so hooks don't keep it alive."""

    def __init__(self, hook: Callable, module: Module | None = None) -> None:
        self.hook: Callable = hook
        functools.update_wrapper(self, hook)

        self.with_module: bool = False

        if module is not None:
            self.module: weakref.ReferenceType[Module] = weakref.ref(module)
            self.with_module = True

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.with_module:
            module = self.module()
            if module is None:
                raise RuntimeError("You are trying to call the hook of a dead Module!")
            return self.hook(module, *args, **kwargs)
        return self.hook(*args, **kwargs)

    def __getstate__(self) -> dict:
        result = {"hook": self.hook, "with_module": self.with_module}
        if self.with_module:
            result["module"] = self.module()

        return result

    def __setstate__(self, state: dict) -> None:
        self.hook = state["hook"]
        self.with_module = state["with_module"]

        if self.with_module:
            if state["module"] is None:
                raise RuntimeError("You are trying to revive the hook of a dead Module!")
            self.module = weakref.ref(state["module"])


# This tracks hooks common to all modules that are executed before/after
# calling forward and backward. This is global state used for debugging/profiling
# purposes
_global_backward_pre_hooks: dict[int, Callable] = OrderedDict()
_global_backward_hooks: dict[int, Callable] = OrderedDict()
_global_is_full_backward_hook: bool | None = None
_global_forward_pre_hooks: dict[int, Callable] = OrderedDict()
_global_forward_hooks: dict[int, Callable] = OrderedDict()
_global_forward_hooks_always_called: dict[int, bool] = OrderedDict()
_global_forward_hooks_with_kwargs: dict[int, bool] = OrderedDict()


@mirrors("torch.nn.modules.module._has_any_global_hook")
def _has_any_global_hook() -> bool:
    return bool(
        _global_backward_pre_hooks
        or _global_backward_hooks
        or _global_forward_pre_hooks
        or _global_forward_hooks
        or _global_forward_hooks_always_called
        or _global_forward_hooks_with_kwargs
    )


_EXTRA_STATE_KEY_SUFFIX = "_extra_state"


def _structure_changed() -> None:
    """torchscope: tells tracing that cached module paths or snapshots may be stale.

    Called on cold paths only (registration, deletion, ``_apply``); the counter
    lives in ``reimpl.utils.hooks`` because removing a hook bumps it too.
    """
    _hooks.generation += 1


@mirrors("torch.nn.modules.module.register_module_buffer_registration_hook")
def register_module_buffer_registration_hook(hook: Callable[..., None]) -> RemovableHandle:
    """Registers ``hook(module, name, buffer) -> None or new buffer`` for every module."""
    handle = RemovableHandle(_global_buffer_registration_hooks)
    _global_buffer_registration_hooks[handle.id] = hook
    return handle


@mirrors("torch.nn.modules.module.register_module_module_registration_hook")
def register_module_module_registration_hook(hook: Callable[..., None]) -> RemovableHandle:
    """Registers ``hook(module, name, submodule) -> None or new submodule`` for every module."""
    handle = RemovableHandle(_global_module_registration_hooks)
    _global_module_registration_hooks[handle.id] = hook
    return handle


@mirrors("torch.nn.modules.module.register_module_parameter_registration_hook")
def register_module_parameter_registration_hook(hook: Callable[..., None]) -> RemovableHandle:
    """Registers ``hook(module, name, param) -> None or new parameter`` for every module."""
    handle = RemovableHandle(_global_parameter_registration_hooks)
    _global_parameter_registration_hooks[handle.id] = hook
    return handle


@mirrors("torch.nn.modules.module.register_module_forward_pre_hook")
def register_module_forward_pre_hook(hook: Callable[..., None]) -> RemovableHandle:
    """Registers ``hook(module, input) -> None or modified input`` before every forward.

    It runs before the hooks registered on a module itself.
    """
    handle = RemovableHandle(_global_forward_pre_hooks)
    _global_forward_pre_hooks[handle.id] = hook
    _structure_changed()
    return handle


@mirrors("torch.nn.modules.module.register_module_forward_hook")
def register_module_forward_hook(
    hook: Callable[..., None],
    *,
    with_kwargs: bool = False,
    always_call: bool = False,
) -> RemovableHandle:
    """Registers ``hook(module, input, output) -> None or modified output`` after every forward.

    It runs before the hooks registered on a module itself. Note: like torch,
    the handle only clears ``_global_forward_hooks_always_called`` on removal.
    """
    handle = RemovableHandle(_global_forward_hooks, extra_dict=_global_forward_hooks_always_called)
    _global_forward_hooks[handle.id] = hook
    if with_kwargs:
        _global_forward_hooks_with_kwargs[handle.id] = True
    if always_call:
        _global_forward_hooks_always_called[handle.id] = True
    _structure_changed()
    return handle


@mirrors("torch.nn.modules.module.register_module_backward_hook")
def register_module_backward_hook(
    hook: Callable[[Module, _grad_t, _grad_t], _grad_t | None],
) -> RemovableHandle:
    """Deprecated global backward hook; prefer :func:`register_module_full_backward_hook`."""
    global _global_is_full_backward_hook
    if _global_is_full_backward_hook is True:
        raise RuntimeError(
            "Cannot use both regular backward hooks and full backward hooks as a "
            "global Module hook. Please use only one of them."
        )

    _global_is_full_backward_hook = False

    handle = RemovableHandle(_global_backward_hooks)
    _global_backward_hooks[handle.id] = hook
    _structure_changed()
    return handle


@mirrors("torch.nn.modules.module.register_module_full_backward_pre_hook")
def register_module_full_backward_pre_hook(
    hook: Callable[[Module, _grad_t], _grad_t | None],
) -> RemovableHandle:
    """Registers ``hook(module, grad_output)`` for every module, before its own pre-hooks."""
    handle = RemovableHandle(_global_backward_pre_hooks)
    _global_backward_pre_hooks[handle.id] = hook
    _structure_changed()
    return handle


@mirrors("torch.nn.modules.module.register_module_full_backward_hook")
def register_module_full_backward_hook(
    hook: Callable[[Module, _grad_t, _grad_t], _grad_t | None],
) -> RemovableHandle:
    """Registers ``hook(module, grad_input, grad_output)`` for every module, first in line."""
    global _global_is_full_backward_hook
    if _global_is_full_backward_hook is False:
        raise RuntimeError(
            "Cannot use both regular backward hooks and full backward hooks as a "
            "global Module hook. Please use only one of them."
        )

    _global_is_full_backward_hook = True

    handle = RemovableHandle(_global_backward_hooks)
    _global_backward_hooks[handle.id] = hook
    _structure_changed()
    return handle


@mirrors("torch.nn.modules.module._forward_unimplemented")
def _forward_unimplemented(self: Module, *input: Any) -> None:
    """Define the computation performed at every call. Should be overridden by all subclasses."""
    raise NotImplementedError(
        f'Module [{type(self).__name__}] is missing the required "forward" function'
    )


@mirrors("torch.nn.modules.module.Module")
class Module:
    r"""Base class for all neural network modules.

    Your models should also subclass this class. Modules can contain other
    Modules, allowing to nest them in a tree structure: assigning a Module,
    a Parameter or a Buffer as an attribute registers it (see ``__setattr__``),
    and then ``to``, ``state_dict``, ``parameters`` and friends reach it.

    An ``__init__()`` call to the parent class must be made before assignment
    on the child.

    :ivar training: Boolean represents whether this module is in training or
                    evaluation mode.
    """

    dump_patches: bool = False

    _version: int = 1
    r"""Saved in ``state_dict()._metadata`` so ``_load_from_state_dict`` can migrate old
    checkpoints: bump it when parameters/buffers are added or removed."""

    training: bool
    _parameters: dict[str, Parameter | None]
    _buffers: dict[str, Tensor | None]
    _non_persistent_buffers_set: set[str]
    _backward_pre_hooks: dict[int, Callable]
    _backward_hooks: dict[int, Callable]
    _is_full_backward_hook: bool | None
    _forward_hooks: dict[int, Callable]
    # Marks whether the corresponding _forward_hooks accept kwargs or not.
    # As JIT does not support set[int], this dict is used as a set, where all
    # hooks represented in this dict accept kwargs.
    _forward_hooks_with_kwargs: dict[int, bool]
    # forward hooks that should always be called even if an exception is raised
    _forward_hooks_always_called: dict[int, bool]
    _forward_pre_hooks: dict[int, Callable]
    _forward_pre_hooks_with_kwargs: dict[int, bool]
    _state_dict_hooks: dict[int, Callable]
    _load_state_dict_pre_hooks: dict[int, Callable]
    _state_dict_pre_hooks: dict[int, Callable]
    _load_state_dict_post_hooks: dict[int, Callable]
    _modules: dict[str, Module | None]
    call_super_init: bool = False
    _compiled_call_impl: Callable | None = None

    @mirrors("torch.nn.modules.module.Module.__init__")
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """Initialize internal Module state."""
        # Backward compatibility: no args used to be allowed when call_super_init=False
        if self.call_super_init is False and bool(kwargs):
            raise TypeError(
                f"{type(self).__name__}.__init__() got an unexpected keyword argument "
                f"'{next(iter(kwargs))}'"
            )

        if self.call_super_init is False and bool(args):
            raise TypeError(
                f"{type(self).__name__}.__init__() takes 1 positional argument but "
                f"{len(args) + 1} were given"
            )

        # Calls super().__setattr__('a', a) instead of the typical self.a = a
        # to avoid Module.__setattr__ overhead. Module's __setattr__ has special
        # handling for parameters, submodules, and buffers but simply calls into
        # super().__setattr__ for all other attributes.
        super().__setattr__("training", True)
        super().__setattr__("_parameters", {})
        super().__setattr__("_buffers", {})
        super().__setattr__("_non_persistent_buffers_set", set())
        super().__setattr__("_backward_pre_hooks", OrderedDict())
        super().__setattr__("_backward_hooks", OrderedDict())
        super().__setattr__("_is_full_backward_hook", None)
        super().__setattr__("_forward_hooks", OrderedDict())
        super().__setattr__("_forward_hooks_with_kwargs", OrderedDict())
        super().__setattr__("_forward_hooks_always_called", OrderedDict())
        super().__setattr__("_forward_pre_hooks", OrderedDict())
        super().__setattr__("_forward_pre_hooks_with_kwargs", OrderedDict())
        super().__setattr__("_state_dict_hooks", OrderedDict())
        super().__setattr__("_state_dict_pre_hooks", OrderedDict())
        super().__setattr__("_load_state_dict_pre_hooks", OrderedDict())
        super().__setattr__("_load_state_dict_post_hooks", OrderedDict())
        super().__setattr__("_modules", {})

        if self.call_super_init:
            super().__init__(*args, **kwargs)

    forward: Callable[..., Any] = _forward_unimplemented

    @mirrors("torch.nn.modules.module.Module.register_buffer")
    def register_buffer(self, name: str, tensor: Tensor | None, persistent: bool = True) -> None:
        """Add a buffer: module state that is not a parameter (BatchNorm's ``running_mean``).

        Persistent buffers are saved in ``state_dict``; non-persistent ones are not.
        """
        if "_buffers" not in self.__dict__:
            raise AttributeError("cannot assign buffer before Module.__init__() call")
        elif not isinstance(name, str):
            raise TypeError(f"buffer name should be a string. Got {torch.typename(name)}")
        elif "." in name:
            raise KeyError('buffer name can\'t contain "."')
        elif name == "":
            raise KeyError('buffer name can\'t be empty string ""')
        elif hasattr(self, name) and name not in self._buffers:
            raise KeyError(f"attribute '{name}' already exists")
        elif tensor is not None and not (
            isinstance(tensor, torch.Tensor) or hasattr(tensor, "__torch_function__")
        ):
            raise TypeError(
                f"cannot assign '{torch.typename(tensor)}' object to buffer '{name}' "
                "(torch Tensor or None required)"
            )
        else:
            for hook in _global_buffer_registration_hooks.values():
                output = hook(self, name, tensor)
                if output is not None:
                    tensor = output
            if name not in self._buffers:
                _structure_changed()
            self._buffers[name] = tensor
            if persistent:
                self._non_persistent_buffers_set.discard(name)
            else:
                self._non_persistent_buffers_set.add(name)

    @mirrors("torch.nn.modules.module.Module.register_parameter")
    def register_parameter(self, name: str, param: Parameter | None) -> None:
        """Add a parameter to the module, reachable as an attribute named ``name``."""
        if "_parameters" not in self.__dict__:
            raise AttributeError("cannot assign parameter before Module.__init__() call")

        elif not isinstance(name, str):
            raise TypeError(f"parameter name should be a string. Got {torch.typename(name)}")
        elif "." in name:
            raise KeyError('parameter name can\'t contain "."')
        elif name == "":
            raise KeyError('parameter name can\'t be empty string ""')
        elif hasattr(self, name) and name not in self._parameters:
            raise KeyError(f"attribute '{name}' already exists")

        _structure_changed()
        if param is None:
            self._parameters[name] = None
        elif not isinstance(param, Parameter):
            raise TypeError(
                f"cannot assign '{torch.typename(param)}' object to parameter '{name}' "
                "(torch.nn.Parameter or None required)"
            )
        elif param.grad_fn:
            raise ValueError(
                f"Cannot assign non-leaf Tensor to parameter '{name}'. Model "
                f"parameters must be created explicitly. To express '{name}' "
                "as a function of another Tensor, compute the value in "
                "the forward() method."
            )
        else:
            for hook in _global_parameter_registration_hooks.values():
                output = hook(self, name, param)
                if output is not None:
                    param = output
            self._parameters[name] = param

    @mirrors("torch.nn.modules.module.Module.add_module")
    def add_module(self, name: str, module: Module | None) -> None:
        """Add a child module, reachable as an attribute named ``name``."""
        if not isinstance(module, Module) and module is not None:
            raise TypeError(f"{torch.typename(module)} is not a Module subclass")
        elif not isinstance(name, str):
            raise TypeError(f"module name should be a string. Got {torch.typename(name)}")
        elif hasattr(self, name) and name not in self._modules:
            raise KeyError(f"attribute '{name}' already exists")
        elif "." in name:
            raise KeyError(f'module name can\'t contain ".", got: {name}')
        elif name == "":
            raise KeyError('module name can\'t be empty string ""')
        for hook in _global_module_registration_hooks.values():
            output = hook(self, name, module)
            if output is not None:
                module = output
        self._modules[name] = module
        _structure_changed()

    @mirrors("torch.nn.modules.module.Module.register_module")
    def register_module(self, name: str, module: Module | None) -> None:
        r"""Alias for :func:`add_module`."""
        self.add_module(name, module)

    @mirrors("torch.nn.modules.module.Module.get_submodule")
    def get_submodule(self, target: str) -> Module:
        """Return the submodule at dotted path ``target`` ("" is self); AttributeError if none."""
        if target == "":
            return self
        atoms: list[str] = target.split(".")
        mod: Module = self
        for item in atoms:
            if not hasattr(mod, item):
                raise AttributeError(mod._get_name() + " has no attribute `" + item + "`")
            mod = getattr(mod, item)
            if not isinstance(mod, Module):
                raise AttributeError("`" + item + "` is not an nn.Module")
        return mod

    @mirrors("torch.nn.modules.module.Module.set_submodule")
    def set_submodule(self, target: str, module: Module, strict: bool = False) -> None:
        """Set the submodule at dotted path ``target``; with ``strict`` it must already exist."""
        if target == "":
            raise ValueError("Cannot set the submodule without a target name!")
        atoms: list[str] = target.split(".")
        if not isinstance(module, Module):
            raise ValueError("`" + "module" + f"` is not an nn.Module, found {type(module)}")
        if len(atoms) == 1:
            parent: Module = self
        else:
            parent_key = ".".join(atoms[:-1])
            parent = self.get_submodule(parent_key)
        if strict and not hasattr(parent, atoms[-1]):
            raise AttributeError(parent._get_name() + " has no attribute `" + atoms[-1] + "`")
        if hasattr(parent, atoms[-1]):
            mod = getattr(parent, atoms[-1])
            if not isinstance(mod, Module):
                raise AttributeError("`" + atoms[-1] + "` is not an nn.Module")
        setattr(parent, atoms[-1], module)

    @mirrors("torch.nn.modules.module.Module.get_parameter")
    def get_parameter(self, target: str) -> Parameter:
        """Return the parameter at dotted path ``target``; AttributeError if none."""
        module_path, _, param_name = target.rpartition(".")
        mod: Module = self.get_submodule(module_path)
        if not hasattr(mod, param_name):
            raise AttributeError(mod._get_name() + " has no attribute `" + param_name + "`")
        param: Parameter = getattr(mod, param_name)
        if not isinstance(param, Parameter):
            raise AttributeError("`" + param_name + "` is not an nn.Parameter")
        return param

    @mirrors("torch.nn.modules.module.Module.get_buffer")
    def get_buffer(self, target: str) -> Tensor:
        """Return the buffer at dotted path ``target``; AttributeError if none."""
        module_path, _, buffer_name = target.rpartition(".")
        mod: Module = self.get_submodule(module_path)
        if not hasattr(mod, buffer_name):
            raise AttributeError(mod._get_name() + " has no attribute `" + buffer_name + "`")
        buffer: Tensor = getattr(mod, buffer_name)
        if buffer_name not in mod._buffers:
            raise AttributeError("`" + buffer_name + "` is not a buffer")
        return buffer

    @mirrors("torch.nn.modules.module.Module.get_extra_state")
    def get_extra_state(self) -> Any:
        """Return extra (picklable) state for ``state_dict``; override with ``set_extra_state``."""
        raise RuntimeError(
            "Reached a code path in Module.get_extra_state() that should never be called. "
            "Please file an issue at https://github.com/pytorch/pytorch/issues/new?template=bug-report.yml "  # noqa: E501
            "to report this bug."
        )

    @mirrors("torch.nn.modules.module.Module.set_extra_state")
    def set_extra_state(self, state: Any) -> None:
        """Restore the extra state saved by ``get_extra_state``."""
        raise RuntimeError(
            "Reached a code path in Module.set_extra_state() that should never be called. "
            "Please file an issue at https://github.com/pytorch/pytorch/issues/new?template=bug-report.yml "  # noqa: E501
            "to report this bug."
        )

    @mirrors("torch.nn.modules.module.Module._apply")
    def _apply(self, fn: Callable[[Tensor], Tensor], recurse: bool = True) -> Module:
        if _trace.sink is not None and _outermost("module.apply_fn"):  # torchscope: one span
            return _traced_apply(self, fn, recurse)
        if recurse:
            for module in self.children():
                module._apply(fn)

        def compute_should_use_set_data(tensor: Tensor, tensor_applied: Tensor) -> bool:
            if torch._has_compatible_shallow_copy_type(tensor, tensor_applied):
                # If the new tensor has compatible tensor type as the existing tensor,
                # the current behavior is to change the tensor in-place using `.data =`
                # (the Parameter object, and so an optimizer holding it, stays the same),
                # unless the user asked to overwrite parameters on conversion.
                return not torch.__future__.get_overwrite_module_params_on_conversion()
            else:
                return False

        for key, param in self._parameters.items():
            if param is None:
                continue
            # Tensors stored in modules are graph leaves, and we don't want to
            # track autograd history of `param_applied`, so we have to use
            # `with torch.no_grad():`
            with torch.no_grad():
                param_applied = fn(param)
            p_should_use_set_data = compute_should_use_set_data(param, param_applied)
            param_grad = param.grad
            if p_should_use_set_data:
                param.data = param_applied
                out_param = param
            else:
                if not isinstance(param, Parameter):
                    raise AssertionError("param must be a Parameter")
                if not param.is_leaf:
                    raise AssertionError("param must be a leaf tensor")
                out_param = Parameter(param_applied, param.requires_grad)
                self._parameters[key] = out_param

            if param_grad is not None:
                with torch.no_grad():
                    grad_applied = fn(param_grad)
                g_should_use_set_data = compute_should_use_set_data(param_grad, grad_applied)
                if g_should_use_set_data:
                    if out_param.grad is None:
                        raise AssertionError("out_param.grad must not be None")
                    out_param.grad.data = grad_applied
                else:
                    if not param_grad.is_leaf:
                        raise AssertionError("param_grad must be a leaf tensor")
                    out_param.grad = grad_applied.requires_grad_(param_grad.requires_grad)

        for key, buf in self._buffers.items():
            if buf is not None:
                self._buffers[key] = fn(buf)

        _structure_changed()  # torchscope: dtypes/devices in the snapshot changed
        return self

    @mirrors("torch.nn.modules.module.Module.apply")
    def apply(self: T, fn: Callable[[Module], None]) -> T:
        """Apply ``fn`` to every submodule (children first) and then to self."""
        if _trace.sink is not None and _outermost("module.apply"):  # torchscope: one span
            return _traced_module_apply(self, fn)  # type: ignore[return-value]
        for module in self.children():
            module.apply(fn)
        fn(self)
        return self

    @mirrors("torch.nn.modules.module.Module.cuda")
    def cuda(self: T, device: int | device | None = None) -> T:
        """Move all parameters and buffers to the GPU (in place; build optimizers after)."""
        return self._apply(lambda t: t.cuda(device))  # type: ignore[return-value]

    @mirrors("torch.nn.modules.module.Module.cpu")
    def cpu(self: T) -> T:
        """Move all model parameters and buffers to the CPU."""
        return self._apply(lambda t: t.cpu())  # type: ignore[return-value]

    @mirrors("torch.nn.modules.module.Module.type")
    def type(self: T, dst_type: dtype | str) -> T:
        """Casts all parameters and buffers to :attr:`dst_type`."""
        return self._apply(lambda t: t.type(dst_type))  # type: ignore[return-value]

    @mirrors("torch.nn.modules.module.Module.float")
    def float(self: T) -> T:
        """Casts all floating point parameters and buffers to ``float`` datatype."""
        return self._apply(lambda t: t.float() if t.is_floating_point() else t)  # type: ignore[return-value]

    @mirrors("torch.nn.modules.module.Module.double")
    def double(self: T) -> T:
        """Casts all floating point parameters and buffers to ``double`` datatype."""
        return self._apply(lambda t: t.double() if t.is_floating_point() else t)  # type: ignore[return-value]

    @mirrors("torch.nn.modules.module.Module.half")
    def half(self: T) -> T:
        """Casts all floating point parameters and buffers to ``half`` datatype."""
        return self._apply(lambda t: t.half() if t.is_floating_point() else t)  # type: ignore[return-value]

    @mirrors("torch.nn.modules.module.Module.bfloat16")
    def bfloat16(self: T) -> T:
        """Casts all floating point parameters and buffers to ``bfloat16`` datatype."""
        return self._apply(lambda t: t.bfloat16() if t.is_floating_point() else t)  # type: ignore[return-value]

    @mirrors("torch.nn.modules.module.Module.to_empty")
    def to_empty(self: T, *, device: Any, recurse: bool = True) -> T:
        """Move parameters and buffers to ``device`` without copying storage (uninitialized)."""
        return self._apply(lambda t: torch.empty_like(t, device=device), recurse=recurse)  # type: ignore[return-value]

    @mirrors("torch.nn.modules.module.Module.to")
    def to(self: T, *args: Any, **kwargs: Any) -> T:
        r"""Move and/or cast the parameters and buffers.

        Called as ``to(device=None, dtype=None, non_blocking=False)``, ``to(dtype,
        non_blocking=False)``, ``to(tensor, non_blocking=False)`` or
        ``to(memory_format=torch.channels_last)``. Only floating point or complex
        dtypes are accepted, and only floating point/complex tensors are cast;
        integral ones are moved only.
        """
        # torch's own C++ argument parser, so every signature and error matches.
        device, dtype, non_blocking, convert_to_format = torch._C._nn._parse_to(*args, **kwargs)

        if dtype is not None:
            if not (dtype.is_floating_point or dtype.is_complex):
                raise TypeError(
                    "nn.Module.to only accepts floating point or complex "
                    f"dtypes, but got desired dtype={dtype}"
                )
            if dtype.is_complex:
                warnings.warn(
                    "Complex modules are a new feature under active development whose design may change, "  # noqa: E501
                    "and some modules might not work as expected when using complex tensors as parameters or buffers. "  # noqa: E501
                    "Please file an issue at https://github.com/pytorch/pytorch/issues/new?template=bug-report.yml "  # noqa: E501
                    "if a complex module does not work as expected.",
                    stacklevel=2,
                )

        def convert(t: Tensor) -> Tensor:
            try:
                if convert_to_format is not None and t.dim() in (4, 5):
                    return t.to(
                        device,
                        dtype if t.is_floating_point() or t.is_complex() else None,
                        non_blocking,
                        memory_format=convert_to_format,
                    )
                return t.to(
                    device,
                    dtype if t.is_floating_point() or t.is_complex() else None,
                    non_blocking,
                )
            except NotImplementedError as e:
                if str(e) == "Cannot copy out of meta tensor; no data!":
                    raise NotImplementedError(
                        f"{e} Please use torch.nn.Module.to_empty() instead of torch.nn.Module.to() "  # noqa: E501
                        f"when moving module from meta to a different device."
                    ) from None
                else:
                    raise

        return self._apply(convert)  # type: ignore[return-value]

    @mirrors("torch.nn.modules.module.Module.register_full_backward_pre_hook")
    def register_full_backward_pre_hook(
        self,
        hook: Callable[[Module, _grad_t], _grad_t | None],
        prepend: bool = False,
    ) -> RemovableHandle:
        """Register ``hook(module, grad_output) -> new grad_output or None``.

        It fires when the gradients w.r.t. the module's outputs are ready.
        """
        handle = RemovableHandle(self._backward_pre_hooks)
        self._backward_pre_hooks[handle.id] = hook
        if prepend:
            self._backward_pre_hooks.move_to_end(handle.id, last=False)  # type: ignore[attr-defined]
        _structure_changed()
        return handle

    @mirrors("torch.nn.modules.module.Module.register_backward_hook")
    def register_backward_hook(
        self, hook: Callable[[Module, _grad_t, _grad_t], _grad_t | None]
    ) -> RemovableHandle:
        """Deprecated: hooks the output's grad_fn only; use ``register_full_backward_hook``."""
        if self._is_full_backward_hook is True:
            raise RuntimeError(
                "Cannot use both regular backward hooks and full backward hooks on a "
                "single Module. Please use only one of them."
            )

        self._is_full_backward_hook = False

        handle = RemovableHandle(self._backward_hooks)
        self._backward_hooks[handle.id] = hook
        _structure_changed()
        return handle

    @mirrors("torch.nn.modules.module.Module.register_full_backward_hook")
    def register_full_backward_hook(
        self,
        hook: Callable[[Module, _grad_t, _grad_t], _grad_t | None],
        prepend: bool = False,
    ) -> RemovableHandle:
        """Register ``hook(module, grad_input, grad_output) -> new grad_input or None``.

        It fires when the gradients w.r.t. the module's inputs are computed (or its
        outputs, if no input requires grad).
        """
        if self._is_full_backward_hook is False:
            raise RuntimeError(
                "Cannot use both regular backward hooks and full backward hooks on a "
                "single Module. Please use only one of them."
            )

        self._is_full_backward_hook = True

        handle = RemovableHandle(self._backward_hooks)
        self._backward_hooks[handle.id] = hook
        if prepend:
            self._backward_hooks.move_to_end(handle.id, last=False)  # type: ignore[attr-defined]
        _structure_changed()
        return handle

    @mirrors("torch.nn.modules.module.Module._get_backward_hooks")
    def _get_backward_hooks(self) -> tuple[list[Callable], list[Callable]]:
        r"""Return the full and the non-full backward hooks, global ones first."""
        full_backward_hooks: list[Callable] = []
        if _global_is_full_backward_hook is True:
            full_backward_hooks += _global_backward_hooks.values()
        if self._is_full_backward_hook is True:
            full_backward_hooks += self._backward_hooks.values()

        non_full_backward_hooks: list[Callable] = []
        if _global_is_full_backward_hook is False:
            non_full_backward_hooks += _global_backward_hooks.values()
        if self._is_full_backward_hook is False:
            non_full_backward_hooks += self._backward_hooks.values()

        return full_backward_hooks, non_full_backward_hooks

    @mirrors("torch.nn.modules.module.Module._get_backward_pre_hooks")
    def _get_backward_pre_hooks(self) -> list[Callable]:
        backward_pre_hooks: list[Callable] = []
        backward_pre_hooks += _global_backward_pre_hooks.values()
        backward_pre_hooks += self._backward_pre_hooks.values()

        return backward_pre_hooks

    @mirrors("torch.nn.modules.module.Module._maybe_warn_non_full_backward_hook")
    def _maybe_warn_non_full_backward_hook(self, inputs: Any, result: Any, grad_fn: Any) -> None:
        if not isinstance(result, torch.Tensor):
            if not (isinstance(result, tuple) and all(isinstance(r, torch.Tensor) for r in result)):
                warnings.warn(
                    "Using non-full backward hooks on a Module that does not return a "
                    "single Tensor or a tuple of Tensors is deprecated and will be removed "
                    "in future versions. This hook will be missing some of the grad_output. "
                    "Please use register_full_backward_hook to get the documented behavior.",
                    FutureWarning,
                    stacklevel=2,
                )
                return
        else:
            result = (result,)

        if not isinstance(inputs, torch.Tensor):
            if not (isinstance(inputs, tuple) and all(isinstance(i, torch.Tensor) for i in inputs)):
                warnings.warn(
                    "Using non-full backward hooks on a Module that does not take as input a "
                    "single Tensor or a tuple of Tensors is deprecated and will be removed "
                    "in future versions. This hook will be missing some of the grad_input. "
                    "Please use register_full_backward_hook to get the documented behavior.",
                    FutureWarning,
                    stacklevel=2,
                )
                return
        else:
            inputs = (inputs,)

        # At this point we are sure that inputs and result are tuple of Tensors
        out_grad_fn = {r.grad_fn for r in result if r.grad_fn is not None}
        if len(out_grad_fn) == 0 or (len(out_grad_fn) == 1 and grad_fn not in out_grad_fn):
            warnings.warn(
                "Using a non-full backward hook when outputs are nested in python data structure "
                "is deprecated and will be removed in future versions. This hook will be missing "
                "some grad_output.",
                FutureWarning,
                stacklevel=2,
            )
        elif len(out_grad_fn) > 1:
            warnings.warn(
                "Using a non-full backward hook when outputs are generated by different autograd Nodes "  # noqa: E501
                "is deprecated and will be removed in future versions. This hook will be missing "
                "some grad_output. Please use register_full_backward_hook to get the documented behavior.",  # noqa: E501
                FutureWarning,
                stacklevel=2,
            )
        else:
            # At this point the grad_output part of the hook will most likely be correct
            inputs_grad_fn = {i.grad_fn for i in inputs if i.grad_fn is not None}

            next_functions = {n[0] for n in grad_fn.next_functions}

            if inputs_grad_fn != next_functions:
                warnings.warn(
                    "Using a non-full backward hook when the forward contains multiple autograd Nodes "  # noqa: E501
                    "is deprecated and will be removed in future versions. This hook will be missing "  # noqa: E501
                    "some grad_input. Please use register_full_backward_hook to get the documented "
                    "behavior.",
                    FutureWarning,
                    stacklevel=2,
                )

    @mirrors("torch.nn.modules.module.Module.register_forward_pre_hook")
    def register_forward_pre_hook(
        self,
        hook: Callable[..., Any],
        *,
        prepend: bool = False,
        with_kwargs: bool = False,
    ) -> RemovableHandle:
        """Register ``hook(module, args) -> None or new args`` run before ``forward``.

        With ``with_kwargs`` the hook is ``hook(module, args, kwargs) -> None or
        (new_args, new_kwargs)``. A single returned value is wrapped in a tuple.
        """
        handle = RemovableHandle(
            self._forward_pre_hooks, extra_dict=self._forward_pre_hooks_with_kwargs
        )
        self._forward_pre_hooks[handle.id] = hook
        if with_kwargs:
            self._forward_pre_hooks_with_kwargs[handle.id] = True

        if prepend:
            self._forward_pre_hooks.move_to_end(handle.id, last=False)  # type: ignore[attr-defined]
        _structure_changed()
        return handle

    @mirrors("torch.nn.modules.module.Module.register_forward_hook")
    def register_forward_hook(
        self,
        hook: Callable[..., Any],
        *,
        prepend: bool = False,
        with_kwargs: bool = False,
        always_call: bool = False,
    ) -> RemovableHandle:
        """Register ``hook(module, args, output) -> None or new output`` run after ``forward``.

        With ``with_kwargs`` the hook is ``hook(module, args, kwargs, output)``;
        with ``always_call`` it also runs when ``forward`` raises.
        """
        handle = RemovableHandle(
            self._forward_hooks,
            extra_dict=[
                self._forward_hooks_with_kwargs,
                self._forward_hooks_always_called,
            ],
        )
        self._forward_hooks[handle.id] = hook
        if with_kwargs:
            self._forward_hooks_with_kwargs[handle.id] = True
        if always_call:
            self._forward_hooks_always_called[handle.id] = True
        if prepend:
            self._forward_hooks.move_to_end(handle.id, last=False)  # type: ignore[attr-defined]
        _structure_changed()
        return handle

    @mirrors("torch.nn.modules.module.Module._slow_forward")
    def _slow_forward(self, *input: Any, **kwargs: Any) -> Any:
        # Only taken under torch.jit.trace: scopes name the traced graph's nodes.
        tracing_state = torch._C._get_tracing_state()
        if not tracing_state or isinstance(self.forward, torch._C.ScriptMethod):
            return self.forward(*input, **kwargs)
        recording_scopes = torch.jit._trace._trace_module_map is not None
        if recording_scopes:
            name = torch.jit._trace._trace_module_map.get(self, None)  # type: ignore[union-attr]
            if name:
                tracing_state.push_scope(name)
            else:
                recording_scopes = False
        try:
            result = self.forward(*input, **kwargs)
        finally:
            if recording_scopes:
                tracing_state.pop_scope()
        return result

    @mirrors("torch.nn.modules.module.Module._wrapped_call_impl")
    def _wrapped_call_impl(self, *args: Any, **kwargs: Any) -> Any:
        if self._compiled_call_impl is not None:
            return self._compiled_call_impl(*args, **kwargs)  # type: ignore[misc]
        else:
            return self._call_impl(*args, **kwargs)

    @mirrors("torch.nn.modules.module.Module._call_impl")
    def _call_impl(self, *args: Any, **kwargs: Any) -> Any:
        forward_call = self._slow_forward if torch._C._get_tracing_state() else self.forward
        # If we don't have any hooks, we want to skip the rest of the logic in
        # this function, and just call forward. (torchscope: unless a recorder
        # is attached; detached, that costs one more comparison.)
        if not (
            self._backward_hooks
            or self._backward_pre_hooks
            or self._forward_hooks
            or self._forward_pre_hooks
            or _global_backward_pre_hooks
            or _global_backward_hooks
            or _global_forward_hooks
            or _global_forward_pre_hooks
        ):
            sink = _trace.sink
            if sink is None:
                return forward_call(*args, **kwargs)
            # torchscope, recorder attached: one module.forward record (and the
            # call's backward boundaries), in Python or in C (see _record_forward_py)
            return _record_forward(sink, self, forward_call, args, kwargs)
        if _trace.sink is None:
            return self._call_with_hooks(forward_call, args, kwargs, None)
        return _traced_call_with_hooks(self, forward_call, args, kwargs)

    @mirrors("torch.nn.modules.module.Module._call_impl")
    def _call_with_hooks(
        self, forward_call: Callable, args: tuple, kwargs: dict, path: str | None
    ) -> Any:
        """The part of torch's ``_call_impl`` after its fast path, verbatim.

        ``path`` is the module's path when a recorder is attached (each hook call
        then records a span), else None.
        """
        result = None
        called_always_called_hooks = set()

        def inner() -> Any:
            nonlocal result, args, kwargs

            full_backward_hooks, non_full_backward_hooks = [], []
            backward_pre_hooks = []
            if self._backward_pre_hooks or _global_backward_pre_hooks:
                backward_pre_hooks = self._get_backward_pre_hooks()

            if self._backward_hooks or _global_backward_hooks:
                full_backward_hooks, non_full_backward_hooks = self._get_backward_hooks()

            if path is not None:  # torchscope: backward hook calls record spans too
                backward_pre_hooks = [
                    _TracedHook(h, "hook.backward_pre", path) for h in backward_pre_hooks
                ]
                full_backward_hooks = [
                    _TracedHook(h, "hook.backward", path) for h in full_backward_hooks
                ]
                non_full_backward_hooks = [
                    _TracedHook(h, "hook.backward", path, legacy=True)
                    for h in non_full_backward_hooks
                ]

            if _global_forward_pre_hooks or self._forward_pre_hooks:
                for hook_id, hook in (
                    *_global_forward_pre_hooks.items(),
                    *self._forward_pre_hooks.items(),
                ):
                    if hook_id in self._forward_pre_hooks_with_kwargs:
                        args_kwargs_result = (
                            hook(self, args, kwargs)
                            if path is None
                            # type: ignore[misc]
                            else _run_hook(path, "hook.forward_pre", hook, self, args, kwargs)
                        )
                        if args_kwargs_result is not None:
                            if (
                                isinstance(args_kwargs_result, tuple)
                                and len(args_kwargs_result) == 2
                            ):
                                args, kwargs = args_kwargs_result
                            else:
                                raise RuntimeError(
                                    "forward pre-hook must return None or a tuple "
                                    f"of (new_args, new_kwargs), but got {args_kwargs_result}."
                                )
                    else:
                        args_result = (
                            hook(self, args)
                            if path is None
                            else _run_hook(path, "hook.forward_pre", hook, self, args)
                        )
                        if args_result is not None:
                            if not isinstance(args_result, tuple):
                                args_result = (args_result,)
                            args = args_result

            bw_hook = None
            if full_backward_hooks or backward_pre_hooks:
                bw_hook = BackwardHook(self, full_backward_hooks, backward_pre_hooks)
                args = bw_hook.setup_input_hook(args)

            result = forward_call(*args, **kwargs)
            if _global_forward_hooks or self._forward_hooks:
                for hook_id, hook in (
                    *_global_forward_hooks.items(),
                    *self._forward_hooks.items(),
                ):
                    # mark that always called hook is run
                    if (
                        hook_id in self._forward_hooks_always_called
                        or hook_id in _global_forward_hooks_always_called
                    ):
                        called_always_called_hooks.add(hook_id)

                    if (
                        hook_id in self._forward_hooks_with_kwargs
                        or hook_id in _global_forward_hooks_with_kwargs
                    ):
                        hook_result = (
                            hook(self, args, kwargs, result)
                            if path is None
                            else _run_hook(path, "hook.forward", hook, self, args, kwargs, result)
                        )
                    else:
                        hook_result = (
                            hook(self, args, result)
                            if path is None
                            else _run_hook(path, "hook.forward", hook, self, args, result)
                        )

                    if hook_result is not None:
                        result = hook_result

            if bw_hook:
                if not isinstance(result, (torch.Tensor, tuple)):
                    warnings.warn(
                        "For backward hooks to be called,"
                        " module output should be a Tensor or a tuple of Tensors"
                        f" but received {type(result)}",
                        stacklevel=2,
                    )
                result = bw_hook.setup_output_hook(result)

            # Handle the non-full backward hooks
            if non_full_backward_hooks:
                var = result
                while not isinstance(var, torch.Tensor):
                    if isinstance(var, dict):
                        var = next(v for v in var.values() if isinstance(v, torch.Tensor))
                    else:
                        var = var[0]
                grad_fn = var.grad_fn
                if grad_fn is not None:
                    for hook in non_full_backward_hooks:
                        grad_fn.register_hook(_WrappedHook(hook, self))
                    self._maybe_warn_non_full_backward_hook(args, result, grad_fn)

            return result

        try:
            return inner()
        except Exception:
            # run always called hooks if they have not already been run
            # For now only forward hooks have the always_call option but perhaps
            # this functionality should be added to full backward hooks as well.
            for hook_id, hook in _global_forward_hooks.items():
                if (
                    hook_id in _global_forward_hooks_always_called
                    and hook_id not in called_always_called_hooks
                ):
                    try:
                        hook_result = (
                            hook(self, args, result)
                            if path is None
                            else _run_hook(path, "hook.forward", hook, self, args, result)
                        )
                        if hook_result is not None:
                            result = hook_result
                    except Exception as e:
                        warnings.warn(
                            "global module forward hook with ``always_call=True`` raised an exception "  # noqa: E501
                            f"that was silenced as another error was raised in forward: {e!s}",
                            stacklevel=2,
                        )
                        continue

            for hook_id, hook in self._forward_hooks.items():
                if (
                    hook_id in self._forward_hooks_always_called
                    and hook_id not in called_always_called_hooks
                ):
                    try:
                        if hook_id in self._forward_hooks_with_kwargs:
                            hook_result = (
                                hook(self, args, kwargs, result)
                                if path is None
                                else _run_hook(
                                    path, "hook.forward", hook, self, args, kwargs, result
                                )
                            )
                        else:
                            hook_result = (
                                hook(self, args, result)
                                if path is None
                                else _run_hook(path, "hook.forward", hook, self, args, result)
                            )
                        if hook_result is not None:
                            result = hook_result
                    except Exception as e:
                        warnings.warn(
                            "module forward hook with ``always_call=True`` raised an exception "
                            f"that was silenced as another error was raised in forward: {e!s}",
                            stacklevel=2,
                        )
                        continue
            # raise exception raised in try block
            raise

    __call__: Callable[..., Any] = _wrapped_call_impl

    @mirrors("torch.nn.modules.module.Module.__getstate__")
    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.pop("_compiled_call_impl", None)
        return state

    @mirrors("torch.nn.modules.module.Module.__setstate__")
    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)

        # Support loading old checkpoints that don't have the following attrs:
        if "_forward_pre_hooks" not in self.__dict__:
            self._forward_pre_hooks = OrderedDict()
        if "_forward_pre_hooks_with_kwargs" not in self.__dict__:
            self._forward_pre_hooks_with_kwargs = OrderedDict()
        if "_forward_hooks_with_kwargs" not in self.__dict__:
            self._forward_hooks_with_kwargs = OrderedDict()
        if "_forward_hooks_always_called" not in self.__dict__:
            self._forward_hooks_always_called = OrderedDict()
        if "_state_dict_hooks" not in self.__dict__:
            self._state_dict_hooks = OrderedDict()
        if "_state_dict_pre_hooks" not in self.__dict__:
            self._state_dict_pre_hooks = OrderedDict()
        if "_load_state_dict_pre_hooks" not in self.__dict__:
            self._load_state_dict_pre_hooks = OrderedDict()
        if "_load_state_dict_post_hooks" not in self.__dict__:
            self._load_state_dict_post_hooks = OrderedDict()
        if "_non_persistent_buffers_set" not in self.__dict__:
            self._non_persistent_buffers_set = set()
        if "_is_full_backward_hook" not in self.__dict__:
            self._is_full_backward_hook = None
        if "_backward_pre_hooks" not in self.__dict__:
            self._backward_pre_hooks = OrderedDict()

    @mirrors("torch.nn.modules.module.Module.__getattr__")
    def __getattr__(self, name: str) -> Tensor | Module:
        # Only reached when normal lookup fails: registered members live in the
        # three dicts, not in __dict__, so that is where they are found.
        if "_parameters" in self.__dict__:
            _parameters = self.__dict__["_parameters"]
            if name in _parameters:
                return _parameters[name]
        if "_buffers" in self.__dict__:
            _buffers = self.__dict__["_buffers"]
            if name in _buffers:
                return _buffers[name]
        if "_modules" in self.__dict__:
            modules = self.__dict__["_modules"]
            if name in modules:
                return modules[name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    @mirrors("torch.nn.modules.module.Module.__setattr__")
    def __setattr__(self, name: str, value: Tensor | Module) -> None:
        def remove_from(*dicts_or_sets: Any) -> None:
            for d in dicts_or_sets:
                if name in d:
                    if isinstance(d, dict):
                        del d[name]
                    else:
                        d.discard(name)

        params = self.__dict__.get("_parameters")
        if isinstance(value, Parameter):
            if params is None:
                raise AttributeError("cannot assign parameters before Module.__init__() call")
            remove_from(
                self.__dict__,
                self._buffers,
                self._modules,
                self._non_persistent_buffers_set,
            )
            self.register_parameter(name, value)
        elif params is not None and name in params:
            if value is not None:
                raise TypeError(
                    f"cannot assign '{torch.typename(value)}' as parameter '{name}' "
                    "(torch.nn.Parameter or None expected)"
                )
            self.register_parameter(name, value)
        else:
            modules = self.__dict__.get("_modules")
            if isinstance(value, Module):
                if modules is None:
                    raise AttributeError("cannot assign module before Module.__init__() call")
                remove_from(
                    self.__dict__,
                    self._parameters,
                    self._buffers,
                    self._non_persistent_buffers_set,
                )
                for hook in _global_module_registration_hooks.values():
                    output = hook(self, name, value)
                    if output is not None:
                        value = output
                modules[name] = value
                _structure_changed()
            elif modules is not None and name in modules:
                if value is not None:
                    raise TypeError(
                        f"cannot assign '{torch.typename(value)}' as child module '{name}' "
                        "(torch.nn.Module or None expected)"
                    )
                for hook in _global_module_registration_hooks.values():
                    output = hook(self, name, value)
                    if output is not None:
                        value = output
                modules[name] = value
                _structure_changed()
            else:
                buffers = self.__dict__.get("_buffers")
                if isinstance(value, Buffer) or (buffers is not None and name in buffers):
                    if value is not None and not (
                        isinstance(value, torch.Tensor) or hasattr(value, "__torch_function__")
                    ):
                        raise TypeError(
                            f"cannot assign '{torch.typename(value)}' as buffer '{name}' "
                            "(torch.nn.Buffer, torch.Tensor or None expected)"
                        )
                    if isinstance(value, Buffer):
                        persistent = value.persistent  # type: ignore[attr-defined]
                    else:
                        persistent = name not in self._non_persistent_buffers_set
                    # === HACK ===
                    # This whole block below should just be:
                    # self.register_buffer(name, value, persistent)
                    # But to support subclasses of nn.Module that (wrongfully) implement a
                    # register_buffer() method that doesn't have the "persistent"
                    # argument. Only pass it in if it is accepted otherwise assume
                    # it is always true
                    if getattr(self.register_buffer, "__func__", None) is Module.register_buffer:
                        self.register_buffer(name, value, persistent)
                    else:
                        sign = inspect.signature(self.register_buffer)
                        if "persistent" in sign.parameters:
                            self.register_buffer(name, value, persistent)
                        else:
                            if not persistent:
                                raise RuntimeError(
                                    "Registering a non-persistent buffer "
                                    "on a Module subclass that implements "
                                    "register_buffer() without the persistent "
                                    "argument is not allowed."
                                )
                            # Assume that the implementation without the argument has the
                            # behavior from before the argument was added: persistent=True
                            self.register_buffer(name, value)
                    # === HACK END ===
                else:
                    if name == "_modules":  # torchscope: containers renumber by reassigning
                        _structure_changed()
                    super().__setattr__(name, value)

    @mirrors("torch.nn.modules.module.Module.__delattr__")
    def __delattr__(self, name: str) -> None:
        if name in self._parameters:
            del self._parameters[name]
        elif name in self._buffers:
            del self._buffers[name]
            self._non_persistent_buffers_set.discard(name)
        elif name in self._modules:
            del self._modules[name]
        else:
            super().__delattr__(name)
        _structure_changed()

    @mirrors("torch.nn.modules.module.Module._register_state_dict_hook")
    def _register_state_dict_hook(self, hook: Callable) -> RemovableHandle:
        r"""Register ``hook(module, state_dict, prefix, local_metadata) -> None or state_dict``.

        A returned state_dict is only respected for the root module.
        """
        if getattr(hook, "_from_public_api", False):
            raise RuntimeError(
                "Cannot register the same function as the state dict post hook that was "
                "previously registered via register_state_dict_post_hook"
            )
        handle = RemovableHandle(self._state_dict_hooks)
        self._state_dict_hooks[handle.id] = hook
        return handle

    @mirrors("torch.nn.modules.module.Module.register_state_dict_post_hook")
    def register_state_dict_post_hook(self, hook: Callable) -> RemovableHandle:
        r"""Register ``hook(module, state_dict, prefix, local_metadata) -> None`` (in place only)."""  # noqa: E501
        # The private API respected a returned dict only at the root (pytorch#117437);
        # the public one marks its hooks so state_dict insists they return None.
        hook._from_public_api = True  # type: ignore[attr-defined]
        handle = RemovableHandle(self._state_dict_hooks)
        self._state_dict_hooks[handle.id] = hook
        return handle

    @mirrors("torch.nn.modules.module.Module.register_state_dict_pre_hook")
    def register_state_dict_pre_hook(self, hook: Callable) -> RemovableHandle:
        r"""Register ``hook(module, prefix, keep_vars) -> None`` run before ``state_dict``."""
        handle = RemovableHandle(self._state_dict_pre_hooks)
        self._state_dict_pre_hooks[handle.id] = hook
        return handle

    @mirrors("torch.nn.modules.module.Module._save_to_state_dict")
    def _save_to_state_dict(self, destination: dict, prefix: str, keep_vars: bool) -> None:
        r"""Save this module's own state (not its descendants') into ``destination``."""
        for name, param in self._parameters.items():
            if param is not None:
                destination[prefix + name] = param if keep_vars else param.detach()
        for name, buf in self._buffers.items():
            if buf is not None and name not in self._non_persistent_buffers_set:
                destination[prefix + name] = buf if keep_vars else buf.detach()
        extra_state_key = prefix + _EXTRA_STATE_KEY_SUFFIX
        if (
            getattr(self.__class__, "get_extra_state", Module.get_extra_state)
            is not Module.get_extra_state
        ):
            destination[extra_state_key] = self.get_extra_state()

    @mirrors("torch.nn.modules.module.Module.state_dict")
    def state_dict(
        self, *args: Any, destination: Any = None, prefix: str = "", keep_vars: bool = False
    ) -> Any:
        r"""Return a dictionary with references to the whole state of the module.

        Parameters and persistent buffers, keyed by dotted name, in registration
        order; ``_metadata`` records each module's ``_version`` for migrations.
        """
        # TODO: Remove `args` and the parsing logic when BC allows.
        if len(args) > 0:
            # DeprecationWarning is ignored by default
            warnings.warn(
                "Positional args are being deprecated, use kwargs instead. Refer to "
                "https://pytorch.org/docs/main/generated/torch.nn.Module.html#torch.nn.Module.state_dict"
                " for details.",
                FutureWarning,
                stacklevel=2,
            )
            if destination is None:
                destination = args[0]
            if len(args) > 1 and prefix == "":
                prefix = args[1]
            if len(args) > 2 and keep_vars is False:
                keep_vars = args[2]
        if _trace.sink is not None and _outermost("module.state_dict"):  # torchscope: one span
            return _traced_state_dict(self, destination, prefix, keep_vars)

        if destination is None:
            destination = OrderedDict()
            destination._metadata = OrderedDict()

        local_metadata = dict(version=self._version)
        if hasattr(destination, "_metadata"):
            destination._metadata[prefix[:-1]] = local_metadata

        for hook in self._state_dict_pre_hooks.values():
            hook(self, prefix, keep_vars)
        self._save_to_state_dict(destination, prefix, keep_vars)
        for name, module in self._modules.items():
            if module is not None:
                module.state_dict(
                    destination=destination,
                    prefix=prefix + name + ".",
                    keep_vars=keep_vars,
                )
        for hook in self._state_dict_hooks.values():
            hook_result = hook(self, destination, prefix, local_metadata)
            if not getattr(hook, "_from_public_api", False):
                if hook_result is not None:
                    destination = hook_result
            else:
                if hook_result is not None:
                    raise RuntimeError("state_dict post-hook must return None")
        return destination

    @mirrors("torch.nn.modules.module.Module._register_load_state_dict_pre_hook")
    def _register_load_state_dict_pre_hook(
        self, hook: Callable, with_module: bool = False
    ) -> RemovableHandle:
        r"""Like the public one, but the hook gets the module only if ``with_module``."""
        handle = RemovableHandle(self._load_state_dict_pre_hooks)
        self._load_state_dict_pre_hooks[handle.id] = _WrappedHook(
            hook, self if with_module else None
        )
        return handle

    @mirrors("torch.nn.modules.module.Module.register_load_state_dict_pre_hook")
    def register_load_state_dict_pre_hook(self, hook: Callable) -> RemovableHandle:
        r"""Register ``hook(module, state_dict, prefix, local_metadata, strict, missing_keys,
        unexpected_keys, error_msgs) -> None`` run before this module loads its state."""
        return self._register_load_state_dict_pre_hook(hook, with_module=True)

    @mirrors("torch.nn.modules.module.Module.register_load_state_dict_post_hook")
    def register_load_state_dict_post_hook(self, hook: Callable) -> RemovableHandle:
        r"""Register ``hook(module, incompatible_keys) -> None``; it may edit the keys in place."""
        handle = RemovableHandle(self._load_state_dict_post_hooks)
        self._load_state_dict_post_hooks[handle.id] = hook
        return handle

    @mirrors("torch.nn.modules.module.Module._load_from_state_dict")
    def _load_from_state_dict(
        self,
        state_dict: dict,
        prefix: str,
        local_metadata: dict,
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        r"""Copy this module's own parameters and buffers from ``state_dict``.

        Subclasses migrate old checkpoints here, reading
        ``local_metadata.get("version")``; ``state_dict`` is a private copy they may edit.
        """
        for hook in self._load_state_dict_pre_hooks.values():
            hook(
                state_dict,
                prefix,
                local_metadata,
                strict,
                missing_keys,
                unexpected_keys,
                error_msgs,
            )

        persistent_buffers = {
            k: v for k, v in self._buffers.items() if k not in self._non_persistent_buffers_set
        }
        local_name_params = itertools.chain(self._parameters.items(), persistent_buffers.items())
        local_state = {k: v for k, v in local_name_params if v is not None}
        assign_to_params_buffers = local_metadata.get("assign_to_params_buffers", False)

        for name, param in local_state.items():
            key = prefix + name
            if key in state_dict:
                input_param = state_dict[key]
                if not torch.overrides.is_tensor_like(input_param):
                    error_msgs.append(
                        f'While copying the parameter named "{key}", '
                        "expected torch.Tensor or Tensor-like object from checkpoint but "
                        f"received {type(input_param)}"
                    )
                    continue

                # This is used to avoid copying uninitialized parameters into
                # non-lazy modules, since they dont have the hook to do the checks
                # in such case, it will error when accessing the .shape attribute.
                is_param_lazy = is_lazy(param)
                # Backward compatibility: loading 1-dim tensor from 0.3.* to version 0.4+
                if (
                    not is_param_lazy
                    and len(param.shape) == 0
                    and len(input_param.shape) == 1
                    and input_param.shape[0] == 1
                ):
                    input_param = input_param[0]

                if not is_param_lazy and input_param.shape != param.shape:
                    # local shape should match the one in checkpoint
                    error_msgs.append(
                        f"size mismatch for {key}: copying a param with shape {input_param.shape} from checkpoint, "  # noqa: E501
                        f"the shape in current model is {param.shape}."
                    )
                    continue

                if param.is_meta and not input_param.is_meta and not assign_to_params_buffers:
                    warnings.warn(
                        f"for {key}: copying from a non-meta parameter in the checkpoint to a meta "
                        "parameter in the current model, which is a no-op. (Did you mean to "
                        "pass `assign=True` to assign items in the state dictionary to their "
                        "corresponding key in the module instead of copying them in place?)",
                        stacklevel=2,
                    )

                try:
                    with torch.no_grad():
                        if assign_to_params_buffers:
                            # Shape checks are already done above
                            if isinstance(param, Parameter):
                                if not isinstance(input_param, Parameter):
                                    input_param = Parameter(
                                        input_param, requires_grad=param.requires_grad
                                    )
                                else:
                                    input_param.requires_grad_(param.requires_grad)
                            setattr(self, name, input_param)
                        else:
                            param.copy_(input_param)
                except Exception as ex:
                    action = "copying"
                    error_msgs.append(
                        f'While {action} the parameter named "{key}", '
                        f"whose dimensions in the model are {param.size()} and "
                        f"whose dimensions in the checkpoint are {input_param.size()}, "
                        f"an exception occurred : {ex.args}."
                    )
            elif strict:
                missing_keys.append(key)

        extra_state_key = prefix + _EXTRA_STATE_KEY_SUFFIX
        if (
            getattr(self.__class__, "set_extra_state", Module.set_extra_state)
            is not Module.set_extra_state
        ):
            if extra_state_key in state_dict:
                self.set_extra_state(state_dict[extra_state_key])
            elif strict:
                missing_keys.append(extra_state_key)
        elif strict and (extra_state_key in state_dict):
            unexpected_keys.append(extra_state_key)

        if strict:
            for key in state_dict:
                if key.startswith(prefix) and key != extra_state_key:
                    input_name = key[len(prefix) :].split(".", 1)
                    # Must be Module if it has attributes
                    if len(input_name) > 1:
                        if input_name[0] not in self._modules:
                            unexpected_keys.append(key)
                    elif input_name[0] not in local_state:
                        unexpected_keys.append(key)

    @mirrors("torch.nn.modules.module.Module.load_state_dict")
    def load_state_dict(
        self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False
    ) -> _IncompatibleKeys:
        r"""Copy parameters and buffers from ``state_dict`` into this module and its descendants.

        With ``strict`` the keys must match ``state_dict()``'s exactly; with
        ``assign`` the module takes the checkpoint's tensors instead of copying
        into its own (keeping each Parameter's ``requires_grad``). Returns the
        missing and unexpected keys.
        """
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"Expected state_dict to be dict-like, got {type(state_dict)}.")

        missing_keys: list[str] = []
        unexpected_keys: list[str] = []
        error_msgs: list[str] = []

        # copy state_dict so _load_from_state_dict can modify it
        metadata = getattr(state_dict, "_metadata", None)
        state_dict = OrderedDict(state_dict)
        if metadata is not None:
            # mypy isn't aware that "_metadata" exists in state_dict
            state_dict._metadata = metadata  # type: ignore[attr-defined]

        def load(module: Module, local_state_dict: dict, prefix: str = "") -> None:
            local_metadata = {} if metadata is None else metadata.get(prefix[:-1], {})
            if assign:
                local_metadata["assign_to_params_buffers"] = assign
            module._load_from_state_dict(
                local_state_dict,
                prefix,
                local_metadata,
                True,
                missing_keys,
                unexpected_keys,
                error_msgs,
            )
            for name, child in module._modules.items():
                if child is not None:
                    child_prefix = prefix + name + "."
                    child_state_dict = {
                        k: v for k, v in local_state_dict.items() if k.startswith(child_prefix)
                    }
                    load(child, child_state_dict, child_prefix)  # noqa: F821

            # Note that the hook can modify missing_keys and unexpected_keys.
            incompatible_keys = _IncompatibleKeys(missing_keys, unexpected_keys)
            for hook in module._load_state_dict_post_hooks.values():
                out = hook(module, incompatible_keys)
                if out is not None:
                    raise AssertionError(
                        "Hooks registered with ``register_load_state_dict_post_hook`` are not "
                        "expected to return new values, if incompatible_keys need to be modified, "
                        "it should be done inplace."
                    )

        # torchscope: a span with what the load found (post hooks may edit the lists)
        with _trace.span(
            "module.load_state_dict", type(self).__name__, strict=strict, keys=len(state_dict)
        ) as span:
            load(self, state_dict)
            span.set(missing=len(missing_keys), unexpected=len(unexpected_keys))
        del load

        if strict:
            if len(unexpected_keys) > 0:
                error_msgs.insert(
                    0,
                    "Unexpected key(s) in state_dict: {}. ".format(
                        ", ".join(f'"{k}"' for k in unexpected_keys)
                    ),
                )
            if len(missing_keys) > 0:
                error_msgs.insert(
                    0,
                    "Missing key(s) in state_dict: {}. ".format(
                        ", ".join(f'"{k}"' for k in missing_keys)
                    ),
                )

        if len(error_msgs) > 0:
            raise RuntimeError(
                "Error(s) in loading state_dict for {}:\n\t{}".format(
                    self.__class__.__name__, "\n\t".join(error_msgs)
                )
            )
        return _IncompatibleKeys(missing_keys, unexpected_keys)

    @mirrors("torch.nn.modules.module.Module._named_members")
    def _named_members(
        self,
        get_members_fn: Callable,
        prefix: str = "",
        recurse: bool = True,
        remove_duplicate: bool = True,
    ) -> Iterator[tuple[str, Any]]:
        r"""Help yield various names + members of modules."""
        memo = set()
        modules = (
            self.named_modules(prefix=prefix, remove_duplicate=remove_duplicate)
            if recurse
            else [(prefix, self)]
        )
        for module_prefix, module in modules:
            members = get_members_fn(module)
            for k, v in members:
                if v is None or v in memo:
                    continue
                if remove_duplicate:
                    memo.add(v)
                name = module_prefix + ("." if module_prefix else "") + k
                yield name, v

    @mirrors("torch.nn.modules.module.Module.parameters")
    def parameters(self, recurse: bool = True) -> Iterator[Parameter]:
        r"""Return an iterator over module parameters (what an optimizer takes)."""
        for _name, param in self.named_parameters(recurse=recurse):
            yield param

    @mirrors("torch.nn.modules.module.Module.named_parameters")
    def named_parameters(
        self, prefix: str = "", recurse: bool = True, remove_duplicate: bool = True
    ) -> Iterator[tuple[str, Parameter]]:
        r"""Return an iterator over (dotted name, parameter); shared ones once unless asked."""
        gen = self._named_members(
            lambda module: module._parameters.items(),
            prefix=prefix,
            recurse=recurse,
            remove_duplicate=remove_duplicate,
        )
        yield from gen

    @mirrors("torch.nn.modules.module.Module.buffers")
    def buffers(self, recurse: bool = True) -> Iterator[Tensor]:
        r"""Return an iterator over module buffers."""
        for _, buf in self.named_buffers(recurse=recurse):
            yield buf

    @mirrors("torch.nn.modules.module.Module.named_buffers")
    def named_buffers(
        self, prefix: str = "", recurse: bool = True, remove_duplicate: bool = True
    ) -> Iterator[tuple[str, Tensor]]:
        r"""Return an iterator over (dotted name, buffer)."""
        gen = self._named_members(
            lambda module: module._buffers.items(),
            prefix=prefix,
            recurse=recurse,
            remove_duplicate=remove_duplicate,
        )
        yield from gen

    @mirrors("torch.nn.modules.module.Module.children")
    def children(self) -> Iterator[Module]:
        r"""Return an iterator over immediate children modules."""
        for _name, module in self.named_children():
            yield module

    @mirrors("torch.nn.modules.module.Module.named_children")
    def named_children(self) -> Iterator[tuple[str, Module]]:
        r"""Return an iterator over (name, child) for immediate children, each once."""
        memo = set()
        for name, module in self._modules.items():
            if module is not None and module not in memo:
                memo.add(module)
                yield name, module

    @mirrors("torch.nn.modules.module.Module.modules")
    def modules(self, remove_duplicate: bool = True) -> Iterator[Module]:
        r"""Return an iterator over all modules in the network, self first."""
        for _, module in self.named_modules(remove_duplicate=remove_duplicate):
            yield module

    @mirrors("torch.nn.modules.module.Module.named_modules")
    def named_modules(
        self, memo: set[Module] | None = None, prefix: str = "", remove_duplicate: bool = True
    ) -> Iterator[tuple[str, Module]]:
        r"""Return an iterator over (dotted path, module), depth first, self first as ``prefix``."""
        if memo is None:
            memo = set()
        if self not in memo:
            if remove_duplicate:
                memo.add(self)
            yield prefix, self
            for name, module in self._modules.items():
                if module is None:
                    continue
                submodule_prefix = prefix + ("." if prefix else "") + name
                yield from module.named_modules(memo, submodule_prefix, remove_duplicate)

    @mirrors("torch.nn.modules.module.Module.train")
    def train(self: T, mode: bool = True) -> T:
        r"""Set the module and its descendants in training mode (``mode=False``: evaluation)."""
        if not isinstance(mode, bool):
            raise ValueError("training mode is expected to be boolean")
        if _trace.sink is not None and _outermost("module.train"):  # torchscope: one span
            return _traced_train(self, mode)
        self.training = mode
        for module in self.children():
            module.train(mode)
        return self

    @mirrors("torch.nn.modules.module.Module.eval")
    def eval(self: T) -> T:
        r"""Set the module in evaluation mode: ``self.train(False)``."""
        return self.train(False)

    @mirrors("torch.nn.modules.module.Module.requires_grad_")
    def requires_grad_(self: T, requires_grad: bool = True) -> T:
        r"""Set ``requires_grad`` of every parameter in place (to freeze part of a model)."""
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    @mirrors("torch.nn.modules.module.Module.zero_grad")
    def zero_grad(self, set_to_none: bool = True) -> None:
        r"""Reset gradients of all model parameters (to None by default)."""
        if getattr(self, "_is_replica", False):
            warnings.warn(
                "Calling .zero_grad() from a module created with nn.DataParallel() has no effect. "
                "The parameters are copied (in a differentiable manner) from the original module. "
                "This means they are not leaf nodes in autograd and so don't accumulate gradients. "
                "If you need gradients in your forward method, consider using autograd.grad instead.",  # noqa: E501
                stacklevel=2,
            )

        # torchscope: a span, so `check` sees gradients cleared through the model
        with _trace.span("module.zero_grad", type(self).__name__, set_to_none=set_to_none):
            for p in self.parameters():
                if p.grad is not None:
                    if set_to_none:
                        p.grad = None
                    else:
                        if p.grad.grad_fn is not None:
                            p.grad.detach_()
                        else:
                            p.grad.requires_grad_(False)
                        p.grad.zero_()

    @mirrors("torch.nn.modules.module.Module.share_memory")
    def share_memory(self: T) -> T:
        r"""See :meth:`torch.Tensor.share_memory_`."""
        return self._apply(lambda t: t.share_memory_())  # type: ignore[return-value]

    @mirrors("torch.nn.modules.module.Module._get_name")
    def _get_name(self) -> str:
        return self.__class__.__name__

    @mirrors("torch.nn.modules.module.Module.extra_repr")
    def extra_repr(self) -> str:
        r"""Return the extra representation of the module; override it in your modules."""
        return ""

    @mirrors("torch.nn.modules.module.Module.__repr__")
    def __repr__(self) -> str:
        # We treat the extra repr like the sub-module, one item per line
        extra_lines = []
        extra_repr = self.extra_repr()
        # empty string will be split into list ['']
        if extra_repr:
            extra_lines = extra_repr.split("\n")
        child_lines = []
        for key, module in self._modules.items():
            mod_str = repr(module)
            mod_str = _addindent(mod_str, 2)
            child_lines.append("(" + key + "): " + mod_str)
        lines = extra_lines + child_lines

        main_str = self._get_name() + "("
        if lines:
            # simple one-liner info, which most builtin Modules will use
            if len(extra_lines) == 1 and not child_lines:
                main_str += extra_lines[0]
            else:
                main_str += "\n  " + "\n  ".join(lines) + "\n"

        main_str += ")"
        return main_str

    @mirrors("torch.nn.modules.module.Module.__dir__")
    def __dir__(self) -> list[str]:
        module_attrs = dir(self.__class__)
        attrs = list(self.__dict__.keys())
        parameters = list(self._parameters.keys())
        modules = list(self._modules.keys())
        buffers = list(self._buffers.keys())
        keys = module_attrs + attrs + parameters + modules + buffers

        # Eliminate attrs that are not legal Python variable names
        keys = [key for key in keys if not key[0].isdigit()]

        return sorted(keys)

    @mirrors("torch.nn.modules.module.Module._replicate_for_data_parallel")
    def _replicate_for_data_parallel(self: T) -> T:
        # A *shallow* copy: the replica's __dict__ is a new dict holding the same
        # values, so _forward_hooks & co. are the very same dict objects as the
        # original's (and so the same hook objects) -- the DeOldify bug.
        replica = self.__new__(type(self))
        replica.__dict__ = self.__dict__.copy()

        # replicas do not have parameters themselves, the replicas reference the original
        # module.
        replica._parameters = {}
        replica._buffers = replica._buffers.copy()
        replica._modules = replica._modules.copy()
        replica._is_replica = True  # type: ignore[assignment]

        return replica

    @mirrors("torch.nn.modules.module.Module.compile")
    def compile(self, *args: Any, **kwargs: Any) -> None:
        """Not supported here: torch.compile would compile reimpl's Python away."""
        raise NotImplementedError("reimpl.nn.Module.compile is left out; use torch.nn.Module")


# ---------------------------------------------------------------------------
# torchscope instrumentation (no upstream counterpart). Reached from _call_impl
# only when a recorder is attached.
# ---------------------------------------------------------------------------

_FORWARD_FUNC = "reimpl.nn.modules.module.Module._call_impl"
_HOOK_FUNC = "reimpl.nn.modules.module.Module._call_with_hooks"
_BACKWARD_FUNC = "reimpl.nn.modules.module._stamp"

_path_cache: dict[int, tuple[str, tuple, str]] = {}
"""id(module) -> (path from its root, span attrs, class name). An entry leaves
when its module dies (weakref callback), so a reused id never finds a stale
path. The attrs, (key, value) pairs, are shared by all of the module's records."""
_path_refs: dict[int, weakref.ReferenceType] = {}  # the weakrefs behind those callbacks
_cache_generation = -1  # hooks.generation when _path_cache was built
_roots: list[weakref.ReferenceType] = []  # outermost modules seen, in first-call order
_sent_snapshots: dict[str, dict] = {}  # key -> last payload sent, so repeats are skipped
_refresh_lock = threading.RLock()


def _forward_failed(
    sink: Any, sid: int, t0: int, entry: tuple, e: BaseException, func: str = _FORWARD_FUNC
) -> None:
    """Closes a ``module.forward`` span whose forward raised (``func``: the function
    the span names; the torch target names torch's ``_call_impl``)."""
    attrs = dict(entry[1], error=f"{type(e).__name__}: {e}")
    sink.append((sid, 0, get_ident(), t0, perf_counter_ns(), "module.forward", entry[0], func,
                 attrs))  # fmt: skip


def _record_forward_py(
    sink: Any, module: Module, forward_call: Callable, args: tuple, kwargs: dict
) -> Any:
    """``_call_impl`` without hooks, recorder attached: the inline span of
    reimpl/_trace.py, one record appended at the end (entry = path, shared
    attrs, class name), then the call tied to its backward boundaries.

    ``reimpl/_native``'s ``Forward`` does exactly this in one C call when the
    recorder drains the native stamp: a dozen Python operations here cost
    1.5-3 us a module inside a real step (benchmarks/bench_module.py).
    """
    entry = _path_cache.get(id(module))
    if entry is None or _cache_generation != _hooks.generation:
        entry = _lookup_path(module)
    sid = sink.next_id()
    t0 = perf_counter_ns()
    try:
        result = forward_call(*args, **kwargs)
    except BaseException as e:
        _forward_failed(sink, sid, t0, entry, e)
        raise
    # fmt: off
    sink.append((sid, 0, get_ident(), t0, perf_counter_ns(), "module.forward", entry[0],
                 _FORWARD_FUNC, entry[1]))
    # fmt: on
    if _trace.backward_spans and isinstance(result, (Tensor, tuple)):
        _link_backward(result, args, entry)
    return result


def _traced_call_with_hooks(
    module: Module, forward_call: Callable, args: tuple, kwargs: dict
) -> Any:
    """``_call_impl`` with hooks and a recorder: the forward span wraps the hooks' spans."""
    sink = _trace.sink
    entry = _path_cache.get(id(module))
    if entry is None or _cache_generation != _hooks.generation:
        entry = _lookup_path(module)
    sid = sink.next_id()  # type: ignore[union-attr]
    t0 = perf_counter_ns()
    try:
        result = module._call_with_hooks(forward_call, args, kwargs, entry[0])
    except BaseException as e:
        _forward_failed(sink, sid, t0, entry, e)
        raise
    # fmt: off
    sink.append((sid, 0, get_ident(), t0, perf_counter_ns(), "module.forward",  # type: ignore[union-attr]
                 entry[0], _FORWARD_FUNC, entry[1]))
    # fmt: on
    if _trace.backward_spans and isinstance(result, (Tensor, tuple)):
        _link_backward(result, args, entry)
    return result


def _run_hook(
    path: str, kind: str, hook: Callable, *args: Any, legacy: bool = False, func: str = _HOOK_FUNC
) -> Any:
    """Calls ``hook(*args)`` and records a ``hook.*`` span for it.

    ``func``: the function the span names (the torch target names torch's).
    """
    sink = _trace.sink
    if sink is None:
        return hook(*args)
    sid = sink.next_id()
    t0 = perf_counter_ns()
    name = _hook_name(hook)
    attrs: dict[str, Any] = {"hook": name, "hook_id": _hook_id(hook), "module": path}
    attrs["source"] = _hook_source(hook)
    if getattr(_hook_target(hook), "_torchscope_internal", False):
        attrs["internal"] = True  # torchscope's own hook (lockstep): views hide it
    if legacy:
        attrs["legacy"] = True
    if kind == "hook.forward" and isinstance(args[-1], Tensor):
        attrs["output_id"] = id(args[-1])  # to name the producer of a tensor used elsewhere
    state = _hook_state(hook)
    before = _state_marks(state) if state is not None else None
    try:
        return hook(*args)
    except BaseException as e:
        attrs["error"] = f"{type(e).__name__}: {e}"
        raise
    finally:
        if before is not None:
            # which of the hook object's own attributes this call rebound, and
            # which of its containers it grew or shrank: the evidence of state
            # shared by DataParallel replicas (identities and sizes, never data)
            after = _state_marks(state)  # type: ignore[arg-type]
            if after != before:  # the common case costs two C-level passes and a compare
                _state_changes(attrs, before, after)
        sink.append((sid, 0, get_ident(), t0, perf_counter_ns(), kind, name, func, attrs))


_CONTAINERS = (dict, list, set)


def _state_marks(state: dict) -> tuple:
    """(names, identities, container sizes) of an object's attributes."""
    values = state.values()
    return (
        tuple(state),
        tuple(map(id, values)),
        tuple([len(v) if type(v) in _CONTAINERS else -1 for v in values]),
    )


def _state_changes(attrs: dict, before: tuple, after: tuple) -> None:
    """Names the attributes a hook call rebound and the containers it resized."""
    old = {k: (i, n) for k, i, n in zip(*before)}
    rebound = [k for k, i, _ in zip(*after) if old.get(k, (0, 0))[0] != i]
    # the same object, another size: grown or shrunk in place
    resized = [k for k, i, n in zip(*after) if k in old and old[k][0] == i and old[k][1] != n]
    if rebound:
        attrs["rebound"] = rebound
    if resized:
        attrs["resized"] = resized


def _hook_state(hook: Callable) -> dict | None:
    """The ``__dict__`` of the object a hook keeps its state in (the instance of
    a bound method, or a callable object); None for plain functions."""
    fn = _hook_target(hook)
    owner = getattr(fn, "__self__", None)
    if owner is None and not isinstance(fn, (types.FunctionType, types.BuiltinFunctionType)):
        owner = fn
    state = getattr(owner, "__dict__", None) if owner is not None else None
    return state if isinstance(state, dict) else None


def _hook_source(hook: Callable) -> str | None:
    """``file:line`` of the hook's code, for a finding to point at."""
    fn = _hook_target(hook)
    fn = getattr(fn, "__func__", fn)
    code = getattr(fn, "__code__", None)
    if code is None:  # a callable object: its class's __call__
        code = getattr(vars(type(fn)).get("__call__"), "__code__", None)
    if code is None:
        return None
    return f"{code.co_filename}:{code.co_firstlineno}"


class _TracedHook:
    """A backward hook wrapped so that its calls (on autograd's thread) record spans."""

    __slots__ = ("hook", "kind", "legacy", "path")

    def __init__(self, hook: Callable, kind: str, path: str, legacy: bool = False) -> None:
        self.hook = hook
        self.kind = kind
        self.path = path
        self.legacy = legacy  # registered with the deprecated register_backward_hook

    def __call__(self, *args: Any) -> Any:
        return _run_hook(self.path, self.kind, self.hook, *args, legacy=self.legacy)


def _hook_target(hook: Callable) -> Any:
    """The user's own callable behind our wrappers."""
    while isinstance(hook, (_TracedHook, _WrappedHook)):
        hook = hook.hook
    return hook


def _hook_name(hook: Callable) -> str:
    """``module.qualname`` of a hook: a function, a bound method or a callable object."""
    fn = _hook_target(hook)
    fn = getattr(fn, "__func__", fn)
    qualname = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    modname = getattr(fn, "__module__", None) or type(fn).__module__
    return f"{modname}.{qualname}"


def _hook_id(hook: Callable) -> int:
    """Identity of the object holding the hook's state (``__self__`` for bound methods)."""
    fn = _hook_target(hook)
    return id(getattr(fn, "__self__", fn))


def _lookup_path(module: Module) -> tuple[str, tuple, str]:
    """Refreshes the path cache; a module found in no known tree becomes a new root.

    Serialised: replica threads under DataParallel meet new roots at the same time.
    """
    with _refresh_lock:
        entry = _path_cache.get(id(module))
        if entry is not None and _cache_generation == _hooks.generation:
            return entry  # another thread refreshed while we waited
        _refresh_paths()
        entry = _path_cache.get(id(module))
        if entry is None:
            _roots.append(weakref.ref(module))
            _refresh_paths()
            entry = _path_cache[id(module)]
        return entry


def _forget(key: int, ref: weakref.ReferenceType) -> None:
    """Weakref callback: a cached module died, so its id may be reused."""
    if _path_refs.get(key) is ref:
        del _path_refs[key]
        _path_cache.pop(key, None)


def _refresh_paths() -> None:
    """Recomputes every module's path from the live outermost roots, and snapshots them.

    The new cache is built aside and swapped in, so readers on other threads see
    either the old mapping or the new one, never a half-built one.
    """
    global _cache_generation, _path_cache, _path_refs
    generation = _hooks.generation
    live: dict[int, Module] = {}
    for ref in _roots:
        m = ref()
        if m is not None:
            live[id(m)] = m
    inside = set()  # a former root that is now somebody's child stops being a root
    for root in live.values():
        for _, m in root.named_modules():
            if m is not root:
                inside.add(id(m))
    roots = [m for key, m in live.items() if key not in inside]
    _roots[:] = [weakref.ref(m) for m in roots]
    cache: dict[int, tuple[str, tuple, str]] = {}
    refs: dict[int, weakref.ReferenceType] = {}
    for root in roots:
        root_name = root._get_name()
        for sub, m in root.named_modules():
            key = id(m)
            if key not in cache:
                path, cls = sub or root_name, m._get_name()
                # attrs as shared pairs, so records stay out of the cyclic GC (_trace.py)
                cache[key] = (path, (("cls", cls), ("path", path)), cls)
                refs[key] = weakref.ref(m, functools.partial(_forget, key))
    _path_cache, _path_refs = cache, refs
    _cache_generation = generation
    for root in roots:
        if not root.__dict__.get("_is_replica", False):  # replicas repeat their original
            _send_snapshot(root, root._get_name())


def _send_snapshot(root: Module, root_name: str) -> None:
    """Sends the root's structure to the recorder unless it is unchanged since last time."""
    key = f"{root_name}@{id(root):#x}"
    payload = _structure_payload(root, root_name)
    if _sent_snapshots.get(key) != payload:
        _sent_snapshots[key] = payload
        _trace.snapshot("module", key, payload)


def _hooks_payload(hooks: Mapping[int, Callable], **flags: Mapping[int, bool]) -> list[dict]:
    """One entry per registered hook: qualified name, identity, handle id and flags."""
    out = []
    for handle_id, hook in hooks.items():
        item: dict[str, Any] = {"name": _hook_name(hook), "id": _hook_id(hook), "handle": handle_id}
        for flag, marks in flags.items():
            if handle_id in marks:
                item[flag] = True
        out.append(item)
    return out


def _module_payload(path: str, m: Module) -> dict:
    """One module of a structure snapshot."""
    hooks = {
        "forward_pre": _hooks_payload(
            m._forward_pre_hooks, with_kwargs=m._forward_pre_hooks_with_kwargs
        ),
        "forward": _hooks_payload(
            m._forward_hooks,
            with_kwargs=m._forward_hooks_with_kwargs,
            always_call=m._forward_hooks_always_called,
        ),
        "backward_pre": _hooks_payload(m._backward_pre_hooks),
        "backward": _hooks_payload(m._backward_hooks),
    }
    return {
        "path": path,
        "cls": m._get_name(),
        "children": [k for k, c in m._modules.items() if c is not None],
        "parameters": [
            {
                "name": k,
                "shape": list(p.shape),
                "dtype": str(p.dtype),
                "requires_grad": p.requires_grad,
            }
            for k, p in m._parameters.items()
            if p is not None
        ],
        "buffers": [
            {
                "name": k,
                "shape": list(b.shape),
                "dtype": str(b.dtype),
                "persistent": k not in m._non_persistent_buffers_set,
            }
            for k, b in m._buffers.items()
            if b is not None
        ],
        "hooks": {kind: items for kind, items in hooks.items() if items},
    }


def _structure_payload(root: Module, root_name: str) -> dict:
    """A JSON-friendly tree: paths, classes, parameters, buffers and hooks per module."""
    global_hooks = {
        "forward_pre": _hooks_payload(_global_forward_pre_hooks),
        "forward": _hooks_payload(
            _global_forward_hooks,
            with_kwargs=_global_forward_hooks_with_kwargs,
            always_call=_global_forward_hooks_always_called,
        ),
        "backward_pre": _hooks_payload(_global_backward_pre_hooks),
        "backward": _hooks_payload(_global_backward_hooks),
    }
    return {
        "root": root_name,
        "cls": root._get_name(),
        "modules": [_module_payload(sub or root_name, m) for sub, m in root.named_modules()],
        "global_hooks": {kind: items for kind, items in global_hooks.items() if items},
    }


# Backward spans. A module's backward runs from the moment autograd reaches the
# node that produced its output to the moment it reaches the node that produced
# its input. One tensor pre-hook per such boundary tensor serves every module
# meeting there (a Sequential and its last child share an output), which costs
# far less than full backward hooks (measured upstream: 1.25x against 2.45x).
# The hook goes into the tensor's own ``_backward_hooks`` dict, exactly where
# ``Tensor.register_hook`` puts hooks, minus the RemovableHandle it would build
# (half the cost); it dies with the graph. Spans still open when the backward
# pass ends (modules whose input had no grad_fn) are closed then.
#
# Cost: on the 50-block MLPs of benchmarks/bench_module.py about 8-11 us per
# boundary in place (installing the hook in forward, calling it in backward,
# recording the span), against about 1.4 us for a forward span. A hook that only
# appends a timestamp already costs 3-5 us there: that floor is measured in the
# same benchmark. So the hook is a C-level ``functools.partial`` over two lists
# and a plain function; each module call adds one small record list to the
# openers of its output's hook and to the closers of its input's.
# ``reimpl._trace.backward_spans = False`` drops all of it.
#
# No Python hook goes lower than that floor, so a recorder that can drains a
# native stamp instead (reimpl/_native/boundary.cpp): the same logic as a C++
# autograd pre-hook that timestamps into a per-thread buffer without the GIL,
# turned into the same records at the recorder's flush. This Python hook stays
# as the fallback (no compiler, TORCHSCOPE_NATIVE=0, a sink of its own).

_BOUNDARY_KEY = -1  # RemovableHandle ids are >= 0, so this key never collides
_H = TypeVar("_H", bound=Callable)
_open_backward: list[list] = []  # records opened in the running backward, in order
_callback_queued = False


class _BackwardBoundary(functools.partial):
    """Tensor pre-hook at a module boundary: ``_BackwardBoundary(_stamp, closers, openers)``.

    Calling it with the gradient closes the spans of modules whose input this
    tensor is, then opens those of modules whose output it is. Both lists hold
    ``[span id (0 not yet open, -1 closed), start_ns, path, attrs]`` records in
    the order module calls returned in forward: inner first.
    """

    __slots__ = ()
    __torch_unserializable__ = True  # no "hook will not be serialized" warning


def _stamp(closers: list[list], openers: list[list], grad: Any) -> None:
    """The body of every boundary hook; runs on autograd's thread."""
    global _callback_queued
    sink = _trace.sink
    if sink is None:
        return None
    now = perf_counter_ns()
    if closers:
        tid = get_ident()
        append = sink.append
        for rec in closers:  # inner modules close first
            if rec[0] > 0:
                append((rec[0], 0, tid, rec[1], now, "module.backward", rec[2], _BACKWARD_FUNC,
                        rec[3]))  # fmt: skip
                rec[0] = -1
    if openers:
        next_id = sink.next_id
        for rec in reversed(openers):  # outer modules open first
            if rec[0] == 0:
                rec[0] = next_id()
                rec[1] = now
                _open_backward.append(rec)
    if not _callback_queued:
        _callback_queued = True
        torch.autograd.Variable._execution_engine.queue_callback(_close_open_backward)
    return None


def _close_open_backward() -> None:
    """Runs when a backward pass ends: closes what is still open, innermost first."""
    global _callback_queued
    _callback_queued = False
    sink = _trace.sink
    tid = get_ident()
    now = perf_counter_ns()
    for rec in reversed(_open_backward):
        if rec[0] > 0:
            if sink is not None:
                sink.append((rec[0], 0, tid, rec[1], now, "module.backward", rec[2],
                             _BACKWARD_FUNC, rec[3]))  # fmt: skip
            rec[0] = -1
    _open_backward.clear()


def _install_boundary_hook(t: Tensor, hooks: Any, hook: _H) -> _H:
    """Puts ``hook`` on a non-leaf tensor (``hooks``: its hook dict or None) and returns it.

    benchmarks/bench_module.py installs its floor hooks through this too.
    """
    if hooks is None:
        # An OrderedDict, as torch makes it: RemovableHandle needs a weakref to it.
        hooks = OrderedDict()
        hooks[_BOUNDARY_KEY] = hook
        t._backward_hooks = hooks
        t.grad_fn._register_hook_dict(t)  # type: ignore[union-attr]
    else:  # the user hooked this tensor first; theirs run first
        hooks[_BOUNDARY_KEY] = hook
    return hook


def _link_backward_py(result: Any, args: tuple, entry: tuple) -> None:
    """Ties one forward call to the tensors that bound its backward.

    Runs once per traced module call. A module that returns its input
    (Identity, an in-place op) gets no span. ``reimpl/_native/boundary.cpp``'s
    ``link`` does the same with C++ hooks.
    """
    out = result if isinstance(result, Tensor) else (result[0] if result else None)
    # requires_grad and not a leaf <=> it has a grad_fn; cheaper than building one
    if not isinstance(out, Tensor) or not out.requires_grad or out.is_leaf:
        return
    inp = args[0] if args else None
    if not isinstance(inp, Tensor):
        inp = next((a for a in args if isinstance(a, Tensor)), None)
    if inp is out:
        return
    rec = [0, 0, entry[0], entry[1]]
    hooks = out._backward_hooks
    b = None if hooks is None else hooks.get(_BOUNDARY_KEY)
    if b is None:
        b = _install_boundary_hook(out, hooks, _BackwardBoundary(_stamp, [], []))
    b.args[1].append(rec)
    if inp is not None:
        hooks = inp._backward_hooks
        b = None if hooks is None else hooks.get(_BOUNDARY_KEY)
        if b is not None:
            b.args[0].append(rec)
        elif inp.requires_grad and not inp.is_leaf:
            b = _install_boundary_hook(inp, hooks, _BackwardBoundary(_stamp, [], []))
            b.args[0].append(rec)


_link_backward: Callable[[Any, tuple, tuple], None] = _link_backward_py
"""What ``_call_impl`` calls: this Python hook, or the native stamp's ``link``."""
_record_forward: Callable[[Any, Module, Callable, tuple, dict], Any] = _record_forward_py
"""What ``_call_impl`` calls with a recorder attached: ``_record_forward_py``, or
the native stamp's ``Forward`` doing the same in C."""
_native_forward: list[tuple[Any, Callable]] = []  # [(stamps, its Forward)], made once


def native_forward(stamps: Any, lookup: Callable, failed: Callable, func: str, **kw: Any) -> Any:
    """A native ``Forward`` recording ``module.forward`` spans as ``_record_forward_py``
    does, looking paths up in this module's cache (``lookup`` when it misses)."""
    return stamps.ext.Forward(vars(_trace), globals(), vars(_hooks), lookup, failed, func, **kw)


def _choose_boundary_hook() -> None:
    """Picks the boundary hook and the forward record once per attach
    (``reimpl._trace.on_stamps``): the native stamp's when the attached recorder
    drains it (its ids come from the stamp's counter), else the Python ones."""
    global _link_backward, _record_forward
    stamps = _trace.stamps
    if stamps is None:
        _link_backward = _link_backward_py
        _record_forward = _record_forward_py
    else:
        stamps.func = _BACKWARD_FUNC  # its spans name the same function as ours
        _link_backward = stamps.link
        if not _native_forward or _native_forward[0][0] is not stamps:
            forward = native_forward(stamps, _lookup_path, _forward_failed, _FORWARD_FUNC)
            _native_forward[:] = [(stamps, forward)]
        _record_forward = _native_forward[0][1]


_trace.on_stamps.append(_choose_boundary_hook)


# torchscope: the cold paths that recurse through the children's own methods
# (``_apply``, ``train``, ``state_dict``, ``apply``; subclasses may override
# them) leave one span per call on the root, not one per submodule: the
# outermost call opens the span and calls the method again, and the calls
# inside it, the children's included, find the kind open and run torch's code.

_open_cold = threading.local()
"""``kinds``: the set of recursive cold-path span kinds open on this thread."""


def _outermost(kind: str) -> bool:
    """Whether no ``kind`` span is open on this thread (so this call is the root's)."""
    kinds = getattr(_open_cold, "kinds", None)
    return kinds is None or kind not in kinds


@contextlib.contextmanager
def _outermost_span(kind: str, module: Module, func: str, **attrs: Any) -> Iterator[Any]:
    """``_trace.span`` for the root's call; marks ``kind`` open until it closes."""
    kinds = getattr(_open_cold, "kinds", None)
    if kinds is None:
        kinds = _open_cold.kinds = set()
    kinds.add(kind)
    try:
        with _trace.span(kind, type(module).__name__, func=func, **attrs) as span:
            yield span
    finally:
        kinds.discard(kind)


def _fn_name(fn: Callable) -> str:
    """``Module.double.<locals>.<lambda>`` says which conversion it is."""
    return getattr(fn, "__qualname__", None) or type(fn).__name__


def _traced_apply(module: Module, fn: Callable[[Tensor], Tensor], recurse: bool) -> Module:
    """``_apply`` with a recorder: counts the tensors (parameters, grads, buffers) converted."""
    converted = 0

    def counted(t: Tensor) -> Tensor:
        nonlocal converted
        converted += 1
        return fn(t)

    func = f"{__name__}.Module._apply"
    with _outermost_span("module.apply_fn", module, func, fn=_fn_name(fn)) as span:
        try:
            return module._apply(counted, recurse)
        finally:
            span.set(tensors=converted)


def _traced_module_apply(module: Module, fn: Callable[[Module], None]) -> Module:
    """``apply`` with a recorder: counts the modules ``fn`` was called on."""
    visited = 0

    def counted(m: Module) -> None:
        nonlocal visited
        visited += 1
        fn(m)

    func = f"{__name__}.Module.apply"
    with _outermost_span("module.apply", module, func, fn=_fn_name(fn)) as span:
        try:
            return module.apply(counted)
        finally:
            span.set(modules=visited)


def _traced_train(module: Module, mode: bool) -> Module:
    """``train``/``eval`` with a recorder: the mode and the size of the subtree it sets."""
    func = f"{__name__}.Module.train"
    subtree = sum(1 for _ in module.modules())
    with _outermost_span("module.train", module, func, mode=mode, modules=subtree):
        return module.train(mode)


def _traced_state_dict(module: Module, destination: Any, prefix: str, keep_vars: bool) -> Any:
    """``state_dict`` with a recorder: how many keys the returned dict holds."""
    func = f"{__name__}.Module.state_dict"
    with _outermost_span("module.state_dict", module, func, keep_vars=keep_vars) as span:
        result = module.state_dict(destination=destination, prefix=prefix, keep_vars=keep_vars)
        span.set(keys=len(result))
    return result
