"""``module.forward``, ``hook.*`` and ``module.backward`` spans of torch.nn modules.

Seams: ``Module._call_impl`` wrapped for the run (``__call__`` calls it): one
inline record per module call, as reimpl's own ``_call_impl`` makes, around
torch's whole call (the module's own hooks and backward-hook wrappers
included), and torch keeps its no-hook fast path. ``attach(forward="hooks")``
takes the spans from torch's global forward hooks instead (global_hooks.py).
The values of each module's own hook dicts are wrapped in place for the run
(the user's hooks record ``hook.*`` spans) and put back at detach: as they are
registered (``Module.register_*_hook`` wrapped) and, for hooks registered
before the recording started, when the module's tree is first seen. torch's
global module/parameter/buffer registration hooks say when cached paths are
stale. ``Module.train``, ``_apply`` (``.to()``, ``.double()``...), ``apply``,
``state_dict`` and ``load_state_dict`` are wrapped too (``module.train``,
``module.apply_fn``, ``module.apply``, ``module.state_dict``: once per root
call, with reimpl's helpers and attributes; ``module.load_state_dict``).

Paths, classes and structure snapshots come from reimpl's own cache
(``reimpl/nn/modules/module.py``: names from the root's ``named_modules``),
which only needs what a torch module has too; so an optimizer's
``param_names`` evidence and the snapshots work unchanged. Backward spans use
reimpl's boundary hook as it is chosen per attach: the native stamp
(``reimpl/_native``) or its Python fallback, never global backward hooks.
"""

from __future__ import annotations

import functools
import operator
import weakref
from collections.abc import Callable
from threading import get_ident
from time import perf_counter_ns
from typing import Any

import torch
import torch.nn.modules.module as torch_module
from torch import Tensor

from reimpl import _trace
from reimpl.nn.modules import module as rm
from reimpl.utils import hooks as reimpl_hooks
from tracer.targets.torch.attach import Options, Patches

FORWARD_FUNC = "torch.nn.modules.module.Module._call_impl"
HOOK_FUNC = FORWARD_FUNC  # torch calls every module hook from _call_impl
TRAIN_FUNC = "torch.nn.modules.module.Module.train"
LOAD_FUNC = "torch.nn.modules.module.Module.load_state_dict"

after_forward_hook: list[Callable] = []
"""With the global-hooks forward seam (global_hooks.py): called after each of a
module's own forward hooks, ``(hook, module, result, error)``."""
_options = [Options()]  # the attached adapter's
_wrapped: weakref.WeakSet = weakref.WeakSet()
"""Modules whose hook dicts hold our wrappers (put back at detach)."""
_HOOK_DICTS = (
    ("_forward_pre_hooks", "hook.forward_pre"),
    ("_forward_hooks", "hook.forward"),
    ("_backward_pre_hooks", "hook.backward_pre"),
    ("_backward_hooks", "hook.backward"),
)


def entry_of(module: Any) -> tuple[str, tuple, str]:
    """(path, span attrs, class) of a module, from reimpl's path cache."""
    entry = rm._path_cache.get(id(module))
    if entry is None or rm._cache_generation != reimpl_hooks.generation:
        entry = rm._lookup_path(module)
        _wrap_trees()  # a new tree, or a changed one: wrap the hooks found in it
    return entry


def _traced_call_impl(call_impl: Callable) -> Callable:
    """``Module._call_impl`` inside a ``module.forward`` span: the inline record of
    reimpl's own ``_call_impl`` (one tuple appended when the call returns), around
    torch's whole call, the module's own hooks included.

    With the native stamp loaded, the replacement is its ``Forward`` (the same
    record in one C call: a Python wrapper's frame and a dozen operations cost
    1.5-3 us a module call), which runs the Python wrapper below while the
    attached sink draws no ids from the stamp.
    """
    python = _python_call_impl(call_impl)
    stamps = _trace.stamps
    if stamps is None:
        return python
    backward = _options[0].backward_spans
    native = rm.native_forward(
        stamps,
        entry_of,
        forward_failed,
        FORWARD_FUNC,
        wrapped=call_impl,
        fallback=python,
        link=backward,
    )
    return native


def _python_call_impl(call_impl: Callable) -> Callable:
    """The Python ``_call_impl`` wrapper: the fallback of the native ``Forward``."""
    backward = _options[0].backward_spans

    @functools.wraps(call_impl)
    def _call_impl(self: Any, *args: Any, **kwargs: Any) -> Any:
        sink = _trace.sink
        if sink is None:
            return call_impl(self, *args, **kwargs)
        entry = rm._path_cache.get(id(self))
        if entry is None or rm._cache_generation != reimpl_hooks.generation:
            entry = entry_of(self)
        sid = sink.next_id()
        t0 = perf_counter_ns()
        try:
            result = call_impl(self, *args, **kwargs)
        except BaseException as e:
            forward_failed(sink, sid, t0, entry, e)
            raise
        # fmt: off
        sink.append((sid, 0, get_ident(), t0, perf_counter_ns(), "module.forward", entry[0],
                     FORWARD_FUNC, entry[1]))
        # fmt: on
        if backward and _trace.backward_spans and isinstance(result, (Tensor, tuple)):
            rm._link_backward(result, args, entry)
        return result

    return _call_impl


forward_failed = functools.partial(rm._forward_failed, func=FORWARD_FUNC)
"""Closes a ``module.forward`` span whose forward raised, naming torch's ``_call_impl``."""


class _Hook(rm._TracedHook):
    """A user's module hook, wrapped in its dict for the run: each call records a
    ``hook.*`` span with reimpl's attributes (identity, source, state evidence)."""

    __slots__ = ()

    def __reduce__(self) -> tuple:
        """Copied or pickled (``deepcopy(model)``, ``torch.save(model)`` during the
        run), a wrapper becomes the user's hook again: no torchscope object leaves
        the run inside a model."""
        return operator.itemgetter(0), ((self.hook,),)

    def __call__(self, *args: Any) -> Any:
        if _trace.sink is None:
            return self.hook(*args)
        module = args[0]
        path = entry_of(module)[0]
        if self.kind != "hook.forward" or not after_forward_hook:
            return rm._run_hook(
                path, self.kind, self.hook, *args, legacy=self.legacy, func=HOOK_FUNC
            )
        try:
            result = rm._run_hook(path, self.kind, self.hook, *args, func=HOOK_FUNC)
        except BaseException as exc:
            after_forward_hook[0](self, module, None, exc)
            raise
        after_forward_hook[0](self, module, result, None)
        return result


def _wrap_module(module: Any) -> None:
    """Wraps the user's hooks of one module in place (values only: keys, order,
    the dicts' identity, shared by DataParallel replicas, stay)."""
    legacy = getattr(module, "_is_full_backward_hook", None) is False
    for attr, kind in _HOOK_DICTS:
        hooks = module.__dict__.get(attr)
        if not hooks:
            continue
        for key, hook in list(hooks.items()):
            if type(hook) is not _Hook:
                hooks[key] = _Hook(hook, kind, "", legacy and kind == "hook.backward")
                _wrapped.add(module)


def _wrap_trees() -> None:
    """Wraps the hooks of every module of every traced tree."""
    for ref in list(rm._roots):
        root = ref()
        if root is not None and isinstance(root, torch.nn.Module):
            for m in root.modules():
                if (
                    m._forward_pre_hooks
                    or m._forward_hooks
                    or m._backward_hooks
                    or (m._backward_pre_hooks)
                ):
                    _wrap_module(m)


def _unwrap_all() -> None:
    """Puts every user's hook back in its dict, as it was."""
    for module in list(_wrapped):
        for attr, _ in _HOOK_DICTS:
            hooks = module.__dict__.get(attr)
            for key, hook in list((hooks or {}).items()):
                if type(hook) is _Hook:
                    hooks[key] = hook.hook
    _wrapped.clear()


def _traced_train(train: Any) -> Any:
    """``Module.train`` (and ``eval``, which calls it): one ``module.train`` span on
    the root's call, with reimpl's attributes (mode, subtree size)."""

    def wrapper(self: Any, mode: bool = True) -> Any:
        if _trace.sink is None or not rm._outermost("module.train"):
            return train(self, mode)
        subtree = sum(1 for _ in self.modules())
        with rm._outermost_span("module.train", self, TRAIN_FUNC, mode=mode, modules=subtree):
            return train(self, mode)

    return functools.wraps(train)(wrapper)


def _traced_cold(kind: str, traced: Callable) -> Callable:
    """``Module._apply`` / ``Module.apply``: one span on the root's call, through
    reimpl's own helper (``_traced_apply``, ``_traced_module_apply``: it calls the
    method again, and the calls inside find the kind open and run torch's code)."""

    def make(method: Callable) -> Callable:
        def wrapper(self: Any, fn: Callable, *args: Any) -> Any:
            if _trace.sink is None or not rm._outermost(kind):
                return method(self, fn, *args)
            return traced(self, fn, *args)

        return functools.wraps(method)(wrapper)

    return make


def _traced_apply(module: Any, fn: Callable, recurse: bool = True) -> Any:
    return rm._traced_apply(module, fn, recurse)


def _traced_state_dict(state_dict: Callable) -> Callable:
    """``Module.state_dict``: one ``module.state_dict`` span on the root's call
    (reimpl's helper, ``keys`` counted); the deprecated positional form runs as is."""

    def wrapper(
        self: Any, *args: Any, destination: Any = None, prefix: str = "", keep_vars: bool = False
    ) -> Any:
        if _trace.sink is None or args or not rm._outermost("module.state_dict"):
            return state_dict(
                self, *args, destination=destination, prefix=prefix, keep_vars=keep_vars
            )
        return rm._traced_state_dict(self, destination, prefix, keep_vars)

    return functools.wraps(state_dict)(wrapper)


def _traced_load_state_dict(load_state_dict: Callable) -> Callable:
    """``Module.load_state_dict`` inside a ``module.load_state_dict`` span with
    reimpl's attributes (``strict``, ``keys``, ``missing``, ``unexpected``)."""

    def wrapper(self: Any, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        if _trace.sink is None:
            return load_state_dict(self, state_dict, strict, assign)
        with _trace.span("module.load_state_dict", type(self).__name__, func=LOAD_FUNC,
                         strict=strict, keys=len(state_dict)) as span:  # fmt: skip
            result = load_state_dict(self, state_dict, strict, assign)
            span.set(missing=len(result.missing_keys), unexpected=len(result.unexpected_keys))
        return result

    return functools.wraps(load_state_dict)(wrapper)


def _wrapping_register(register: Any) -> Any:
    """A ``register_*_hook`` method that wraps the hook it registers, in place."""

    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        handle = register(self, *args, **kwargs)
        _wrap_module(self)
        return handle

    return functools.wraps(register)(wrapper)


REGISTER_METHODS = (
    "register_forward_pre_hook",
    "register_forward_hook",
    "register_full_backward_pre_hook",
    "register_full_backward_hook",
    "register_backward_hook",
)


def _structure_changed(*_: Any) -> None:
    rm._structure_changed()


def install(patches: Patches, options: Options) -> None:
    """Wraps ``_call_impl`` (or registers the global forward hooks, ``forward="hooks"``),
    the registration methods and ``train``; detach unwraps the user's hooks too."""
    rm._choose_boundary_hook()  # the stamp this recorder drains, if reimpl's module.py came late
    _options[0] = options
    patches.on_detach(_unwrap_all)
    patches.on_detach(rm._structure_changed)  # paths cached during the run are for it only
    for register in (
        torch_module.register_module_module_registration_hook,
        torch_module.register_module_parameter_registration_hook,
        torch_module.register_module_buffer_registration_hook,
    ):
        patches.on_detach(register(_structure_changed).remove)
    if options.forward == "hooks":
        from tracer.targets.torch import global_hooks

        global_hooks.install(patches, options)
    else:
        patches.wrap(torch.nn.Module, "_call_impl", _traced_call_impl)
    patches.wrap(torch.nn.Module, "train", _traced_train)
    patches.wrap(torch.nn.Module, "_apply", _traced_cold("module.apply_fn", _traced_apply))
    patches.wrap(torch.nn.Module, "apply", _traced_cold("module.apply", rm._traced_module_apply))
    patches.wrap(torch.nn.Module, "state_dict", _traced_state_dict)
    patches.wrap(torch.nn.Module, "load_state_dict", _traced_load_state_dict)
    for name in REGISTER_METHODS:
        patches.wrap(torch.nn.Module, name, _wrapping_register)
