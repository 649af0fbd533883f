"""The optimizer base class, mirroring ``torch/optim/optimizer.py``.

Keeps torch's names and behaviour: ``param_groups``/``state``/``defaults``,
``add_param_group`` with torch's checks and messages, ``zero_grad``, step
pre/post hooks (per instance and global, run by the class-level step wrapper
that torch calls ``profile_hook_step``), ``state_dict``/``load_state_dict``
in exactly torch's format (so state dicts travel both ways) and their hooks.

Left out: ``torch.compile``/dynamo support (graph breaks, ``_disable_dynamo``,
``_stack_if_compiling``), TorchScript branches, profiler ``record_function``
labels.

Tracing: the step wrapper records an ``optim.step`` span; each optimizer's
``step`` opens a ``_GroupTrace`` per param group (``optim.group``) whose
kernels record one ``optim.update`` per parameter, named from the group's
``param_names``, from ``name_parameters(optimizer, model.named_parameters())``
(not in torch), or ``param[i]``. Everything trace-related is decided once per
step (``_trace.sink is not None``), never per tensor op. The step span also
carries the evidence of ``torchscope check``'s parameter rules
(``_step_evidence``).
"""

from __future__ import annotations

import functools
import warnings
import weakref
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Hashable, Iterable
from copy import deepcopy
from itertools import chain
from threading import get_ident
from time import perf_counter_ns
from typing import Any, TypeAlias, cast

import torch
import torch.utils.hooks as hooks
from torch.utils._foreach_utils import (
    _get_foreach_kernels_supported_devices,
    _get_fused_kernels_supported_devices,
)
from torch.utils.hooks import RemovableHandle

from reimpl import _trace
from reimpl._trace import mirrors

__all__ = [
    "Optimizer",
    "name_parameters",
    "register_optimizer_step_post_hook",
    "register_optimizer_step_pre_hook",
]

Args: TypeAlias = tuple[Any, ...]
Kwargs: TypeAlias = dict[str, Any]
StateDict: TypeAlias = dict[str, Any]
ParamsT: TypeAlias = (
    Iterable[torch.Tensor] | Iterable[dict[str, Any]] | Iterable[tuple[str, torch.Tensor]]
)

_global_optimizer_pre_hooks: dict[int, Callable] = OrderedDict()
_global_optimizer_post_hooks: dict[int, Callable] = OrderedDict()
_foreach_supported_types = [torch.Tensor, torch.nn.parameter.Parameter]


class _RequiredParameter:
    """Singleton marking a hyper-parameter every group must specify."""

    def __repr__(self) -> str:
        return "<required parameter>"


required = _RequiredParameter()


@mirrors("torch.optim.optimizer._get_value")
def _get_value(x: Any) -> Any:
    """A Python number from a 0-dim tensor: ``item()`` beats tensor math on CPU."""
    return x.item() if isinstance(x, torch.Tensor) else x


@mirrors("torch.optim.optimizer._to_scalar")
def _to_scalar(x: Any) -> Any:
    """Squeezes a 1-element hyper-parameter tensor to 0-dim; numbers pass through."""
    if isinstance(x, torch.Tensor) and x.dim() != 0:
        return x.squeeze()
    return x


@mirrors("torch.optim.optimizer._get_scalar_dtype")
def _get_scalar_dtype(is_fused: bool | None = None) -> torch.dtype:
    """dtype of ``state['step']``: float32 for fused kernels, else follows the default."""
    if is_fused:
        return torch.float32
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


@mirrors("torch.optim.optimizer._view_as_real")
def _view_as_real(params: list, *state_and_grads: list) -> None:
    """Replaces complex tensors by real views so the math runs on pairs of floats."""
    for i, p in enumerate(params):
        if torch.is_complex(p):
            params[i] = torch.view_as_real(params[i])
            for s in state_and_grads:
                s[i] = torch.view_as_real(s[i])


@mirrors("torch.optim.optimizer._get_capturable_supported_devices")
def _get_capturable_supported_devices(supports_xla: bool = True) -> list[str]:
    """Devices whose streams CUDA-graph-style capture works on (never the CPU)."""
    devices = ["cuda", "xpu", "hpu", torch._C._get_privateuse1_backend_name()]
    if supports_xla:
        devices.append("xla")
    return devices


def _check_capturable_devices(
    params: list[torch.Tensor], state_steps: list[torch.Tensor], supports_xla: bool = True
) -> None:
    """Capturable steps need params and steps together on a graph-capturing device."""
    devices = _get_capturable_supported_devices(supports_xla=supports_xla)
    if not all(
        p.device.type == step.device.type and p.device.type in devices
        for p, step in zip(params, state_steps)
    ):
        raise AssertionError(
            f"If capturable=True, params and state_steps must be on supported devices: {devices}."
        )


def _check_no_amp_scaling(grad_scale: Any, found_inf: Any) -> None:
    """Only fused kernels take AMP's ``grad_scale``/``found_inf`` (GradScaler sets
    them on optimizers with ``_step_supports_amp_scaling``); the others refuse."""
    if grad_scale is not None or found_inf is not None:
        raise AssertionError("Expected grad_scale and found_inf to be None")


def _on_device(
    cache: dict[torch.device, torch.Tensor], t: torch.Tensor | None, device: torch.device
) -> torch.Tensor | None:
    """``t`` (AMP's scale or inf flag) on ``device``, copied there once per step."""
    if t is None:
        return None
    if device not in cache:
        cache[device] = t.to(device, non_blocking=True)
    return cache[device]


@mirrors("torch.optim.optimizer._default_to_fused_or_foreach")
def _default_to_fused_or_foreach(
    params: list[torch.Tensor], differentiable: bool, use_fused: bool = False
) -> tuple[bool, bool]:
    """Picks fused/foreach when the user chose neither.

    foreach kernels are only the default on accelerators (CUDA, XPU...), so on
    CPU tensors torch, and we, take the single-tensor for-loop.
    """
    if differentiable:
        return False, False
    fused_devices = _get_fused_kernels_supported_devices()
    foreach_devices = _get_foreach_kernels_supported_devices()
    fused = use_fused and all(
        p is None
        or (
            type(p) in _foreach_supported_types
            and p.device.type in fused_devices
            and torch.is_floating_point(p)
        )
        for p in params
    )
    foreach = not fused and all(
        p is None or (type(p) in _foreach_supported_types and p.device.type in foreach_devices)
        for p in params
    )
    return fused, foreach


@mirrors("torch.optim.optimizer._device_dtype_check_for_fused")
def _device_dtype_check_for_fused(p: torch.Tensor) -> None:
    """Fused kernels need floating-point params on a device that has them."""
    devices = _get_fused_kernels_supported_devices()
    if not (p.device.type in devices and torch.is_floating_point(p)):
        raise RuntimeError(
            "`fused=True` requires all the params to be floating point Tensors of "
            f"supported devices: {devices} but {p.dtype} and {p.device.type}"
        )


@mirrors("torch.utils._foreach_utils._group_tensors_by_device_and_dtype")
def _group_tensors_by_device_and_dtype(
    tensorlistlist: list[list[Any]],
) -> dict[tuple[torch.device, torch.dtype], tuple[list[list[Any]], list[int]]]:
    """Splits parallel tensor lists into buckets a foreach kernel can take.

    A foreach kernel needs one device and one dtype; the bucket key is taken
    from the first list. Lists that are empty (no ``max_exp_avg_sqs`` without
    amsgrad) stay empty; ``None`` entries (a missing momentum buffer) are kept,
    and the indices let callers write new tensors back into the input lists.
    """
    buckets: dict[tuple[torch.device, torch.dtype], tuple[list[list[Any]], list[int]]] = {}
    for i, t in enumerate(tensorlistlist[0]):
        key = (t.device, t.dtype)
        if key not in buckets:
            buckets[key] = ([[] for _ in tensorlistlist], [])
        lists, indices = buckets[key]
        for out, src in zip(lists, tensorlistlist):
            if len(src) > 0:
                out.append(src[i])
        indices.append(i)
    return buckets


@mirrors("torch.optim.optimizer._use_grad_for_differentiable")
def _use_grad_for_differentiable(func: Callable) -> Callable:
    """Runs ``step`` without autograd unless the optimizer is ``differentiable``."""

    @functools.wraps(func)
    def _use_grad(self: Optimizer, *args: Any, **kwargs: Any) -> Any:
        prev_grad = torch.is_grad_enabled()
        try:
            torch.set_grad_enabled(self.defaults["differentiable"])
            return func(self, *args, **kwargs)
        finally:
            torch.set_grad_enabled(prev_grad)

    return _use_grad


@mirrors("torch.optim.optimizer.register_optimizer_step_pre_hook")
def register_optimizer_step_pre_hook(hook: Callable) -> RemovableHandle:
    """Registers ``hook(optimizer, args, kwargs)`` before every optimizer's step."""
    handle = hooks.RemovableHandle(_global_optimizer_pre_hooks)
    _global_optimizer_pre_hooks[handle.id] = hook
    return handle


@mirrors("torch.optim.optimizer.register_optimizer_step_post_hook")
def register_optimizer_step_post_hook(hook: Callable) -> RemovableHandle:
    """Registers ``hook(optimizer, args, kwargs)`` after every optimizer's step."""
    handle = hooks.RemovableHandle(_global_optimizer_post_hooks)
    _global_optimizer_post_hooks[handle.id] = hook
    return handle


def name_parameters(optimizer: Optimizer, named: Iterable[tuple[str, torch.Tensor]]) -> None:
    """Tells the tracer each parameter's name (``module.named_parameters()``).

    Not in torch: ``optim.update`` spans are named ``param[i]`` unless the group
    was built from named parameters or a name is given here.
    """
    optimizer._param_names = {id(p): n for n, p in named}


def _added_group(groups: list[dict]) -> dict:
    """The attributes of an ``optim.add_param_group`` span: the last group's index,
    size and options (the defaults filled in), never the tensors."""
    group = groups[-1]
    attrs = {
        "index": len(groups) - 1,
        "params": len(group["params"]),
        "numel": sum(p.numel() for p in group["params"]),
    }
    for k, v in group.items():
        if k not in ("params", "param_names"):
            attrs[k] = _json_value(v)
    return attrs


def _json_value(v: Any) -> Any:
    """A span attribute from a hyper-parameter: tensors become floats, tuples lists."""
    if isinstance(v, torch.Tensor):
        return v.item() if v.numel() == 1 else list(v.shape)
    if isinstance(v, (tuple, list)):
        return [_json_value(x) for x in v]
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    return repr(v)


_names_recorded: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
"""optimizer -> (weakref to the sink, number of params) when its ``param_names``
were last recorded: once per optimizer and recording, again after ``add_param_group``."""


def _step_evidence(optimizer: Optimizer, sink: Any) -> dict[str, Any]:
    """What ``torchscope check``'s parameter rules read off an ``optim.step`` span.

    ``id`` tells optimizers of one class apart; ``no_grad`` lists the indices
    (over all groups, in order) of the params that require grad but hold none
    as the step starts; ``param_names``, once, places each param in the traced
    models as ``[index, snapshot key, name]`` (a tied param has several), the
    names its module structure snapshot uses. A list over the params per step:
    a few microseconds for hundreds of params, against a step of milliseconds.
    """
    params = [p for g in optimizer.param_groups for p in g["params"]]
    out: dict[str, Any] = {"id": id(optimizer)}
    missing = [i for i, p in enumerate(params) if p.grad is None and p.requires_grad]
    if missing:
        out["no_grad"] = missing
    sent = _names_recorded.get(optimizer)
    if sent is None or sent[0]() is not sink or sent[1] != len(params):
        out["param_names"] = names = _param_names(params)
        if names:  # else no model was traced yet: try again next step
            try:
                _names_recorded[optimizer] = (weakref.ref(sink), len(params))
            except TypeError:  # a sink without weakrefs gets the names every step
                pass
    return out


def _param_names(params: list[torch.Tensor]) -> list[list[Any]]:
    """``[index, root key, name]`` for each param found in a traced model."""
    from reimpl.nn.modules import module  # the roots the recorder has seen; not at import

    where: dict[int, list[list[str]]] = {}
    for ref in list(module._roots):
        root = ref()
        if root is None or root.__dict__.get("_is_replica", False):
            continue
        key = f"{root._get_name()}@{id(root):#x}"  # as module._send_snapshot keys it
        for name, p in root.named_parameters(remove_duplicate=False):
            where.setdefault(id(p), []).append([key, name])
    return [[i, *place] for i, p in enumerate(params) for place in where.get(id(p), [])]


class _GroupTrace:
    """One ``optim.group`` span and the ``optim.update`` spans inside it.

    Built only while a recorder is attached; kernels take it as ``trace`` and
    test ``trace is not None`` (a local) instead of the global sink per tensor.
    """

    __slots__ = ("attrs", "group", "names", "optimizer", "params", "sid", "sink", "t0")

    def __init__(self, sink: Any, optimizer: Optimizer, index: int, group: dict) -> None:
        self.sink = sink
        self.sid = sink.next_id()
        self.t0 = perf_counter_ns()
        self.optimizer = optimizer
        self.group = group
        self.attrs = {"index": index}
        for k, v in group.items():
            if k not in ("params", "param_names"):
                self.attrs[k] = _json_value(v)
        self.params: list[int] = []
        self.names: list[str] = []

    def bind(self, params: list[torch.Tensor]) -> None:
        """Learns which parameters (those with a grad) the kernel will update."""
        groups = self.optimizer.param_groups
        index = self.attrs["index"]
        offset = sum(len(g["params"]) for g in groups[:index])
        position = {id(p): i for i, p in enumerate(self.group["params"])}
        group_names = self.group.get("param_names")
        extra = getattr(self.optimizer, "_param_names", None) or {}
        for p in params:
            pos = position[id(p)]
            idx = offset + pos
            self.params.append(idx)
            if group_names is not None:
                self.names.append(group_names[pos])
            else:
                self.names.append(extra.get(id(p), f"param[{idx}]"))
        self.attrs["updated"] = len(params)

    def begin(self) -> tuple[int, int]:
        """Id and start time of one parameter's update."""
        return self.sink.next_id(), perf_counter_ns()

    def end(self, i: int, mark: tuple[int, int], param: torch.Tensor, path: str, func: str) -> None:
        """Records the update of the ``i``-th parameter given to the kernel.

        ``state`` names the param's state tensors and their shapes as they are
        now (SGD stores a first momentum buffer only after its kernel returns).
        """
        attrs: dict[str, Any] = {
            "param": self.params[i],
            "name": self.names[i],
            "shape": list(param.shape),
            "path": path,
        }
        state = self.optimizer.state.get(param)  # .get: never grow the defaultdict
        if state:
            attrs["state"] = {
                str(k): list(v.shape) for k, v in state.items() if isinstance(v, torch.Tensor)
            }
        self.sink.append(
            (
                mark[0],
                0,
                get_ident(),
                mark[1],
                perf_counter_ns(),
                "optim.update",
                self.names[i],
                func,
                attrs,
            )
        )

    def begin_all(self, n: int) -> list[tuple[int, int]]:
        """Marks for ``n`` parameters updated together by one foreach kernel."""
        t0 = perf_counter_ns()
        return [(self.sink.next_id(), t0) for _ in range(n)]

    def end_all(
        self, indices: list[int], marks: list[tuple[int, int]], params: list, path: str, func: str
    ) -> None:
        """Closes the spans of a foreach bucket: they share the kernel's interval."""
        for i, mark, p in zip(indices, marks, params):
            self.end(i, mark, p, path, func)

    def close(self, func: str) -> None:
        """Records the ``optim.group`` span itself."""
        name = f"group[{self.attrs['index']}]"
        self.sink.append(
            (
                self.sid,
                0,
                get_ident(),
                self.t0,
                perf_counter_ns(),
                "optim.group",
                name,
                func,
                self.attrs,
            )
        )


@mirrors("torch.optim.optimizer.Optimizer")
class Optimizer:
    """Base class for all optimizers: parameter groups, state, hooks, state dicts.

    ``params`` is an iterable of tensors, of ``(name, tensor)`` pairs or of
    dicts (parameter groups); ``defaults`` fills what a group leaves out.
    """

    def __init__(self, params: ParamsT, defaults: dict[str, Any]) -> None:
        self.defaults = defaults
        self._optimizer_step_pre_hooks: dict[int, Callable] = OrderedDict()
        self._optimizer_step_post_hooks: dict[int, Callable] = OrderedDict()
        self._optimizer_state_dict_pre_hooks: OrderedDict[int, Callable] = OrderedDict()
        self._optimizer_state_dict_post_hooks: OrderedDict[int, Callable] = OrderedDict()
        self._optimizer_load_state_dict_pre_hooks: OrderedDict[int, Callable] = OrderedDict()
        self._optimizer_load_state_dict_post_hooks: OrderedDict[int, Callable] = OrderedDict()
        self._patch_step_function()

        if isinstance(params, torch.Tensor):
            raise TypeError(
                "params argument given to the optimizer should be "
                "an iterable of Tensors or dicts, but got " + torch.typename(params)
            )
        # state is keyed by the parameter tensor itself (hashed by identity)
        self.state: defaultdict[torch.Tensor, Any] = defaultdict(dict)
        self.param_groups: list[dict[str, Any]] = []
        param_groups = list(params)
        if len(param_groups) == 0:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(param_groups[0], dict):
            param_groups = [{"params": param_groups}]
        for param_group in param_groups:
            self.add_param_group(cast(dict, param_group))

    @mirrors("torch.optim.optimizer.Optimizer.__getstate__")
    def __getstate__(self) -> dict[str, Any]:
        """Pickles only defaults, state and groups: hooks are not picklable."""
        return {"defaults": self.defaults, "state": self.state, "param_groups": self.param_groups}

    @mirrors("torch.optim.optimizer.Optimizer.__setstate__")
    def __setstate__(self, state: dict[str, Any]) -> None:
        """Restores pickled state and re-creates the hook dicts a pickle lacks."""
        self.__dict__.update(state)
        for name in (
            "_optimizer_step_pre_hooks",
            "_optimizer_step_post_hooks",
            "_optimizer_state_dict_pre_hooks",
            "_optimizer_state_dict_post_hooks",
            "_optimizer_load_state_dict_pre_hooks",
            "_optimizer_load_state_dict_post_hooks",
        ):
            if name not in self.__dict__:
                setattr(self, name, OrderedDict())
        self._patch_step_function()  # a fresh process needs the class wrapped again
        self.defaults.setdefault("differentiable", False)

    @mirrors("torch.optim.optimizer.Optimizer.__repr__")
    def __repr__(self) -> str:
        format_string = self.__class__.__name__ + " ("
        for i, group in enumerate(self.param_groups):
            format_string += "\n"
            format_string += f"Parameter Group {i}\n"
            for key in sorted(group.keys()):
                if key != "params":
                    format_string += f"    {key}: {group[key]}\n"
        format_string += ")"
        return format_string

    @mirrors("torch.optim.optimizer.Optimizer._accelerator_graph_capture_health_check")
    def _accelerator_graph_capture_health_check(self) -> None:
        """Refuses graph capture of a non-capturable step; warns once when a
        capturable optimizer steps outside a capture (it runs slower for nothing).

        Only CUDA and XPU capture graphs, so on a CPU-only machine it does nothing.
        """
        accelerator = torch.accelerator.current_accelerator(check_available=True)
        if not (accelerator and accelerator.type in {"cuda", "xpu"}):
            return
        capturing = torch.accelerator.current_stream().is_capturing()
        all_capturable = all(group["capturable"] for group in self.param_groups)
        if capturing and not all_capturable:
            raise RuntimeError(
                f"Attempting {accelerator.type.upper()} graph capture of step() for an "
                f"instance of {self.__class__.__name__} but param_groups' capturable is False."
            )
        if (
            not getattr(self, "_warned_capturable_if_run_uncaptured", False)
            and all_capturable
            and not capturing
        ):
            warnings.warn(
                "This instance was constructed with capturable=True or some of all the "
                "param_groups came with capturable=True, but step() is running without "
                f"{accelerator.type.upper()} graph capture. If you never intend to graph-capture "
                "this instance, capturable=True can impair performance, and you should set "
                "capturable=False.",
                stacklevel=2,
            )
            self._warned_capturable_if_run_uncaptured = True

    def _optimizer_step_code(self) -> None:
        """Empty function torch's profiler hooks after a step (kept for parity)."""

    @staticmethod
    @mirrors("torch.optim.optimizer.Optimizer.profile_hook_step")
    def profile_hook_step(func: Callable) -> Callable:
        """Wraps a class's ``step``: global and instance pre/post hooks, and the span.

        torch opens a profiler ``record_function`` here; we open ``optim.step``.
        """
        func_name = f"{func.__module__}.{func.__qualname__}"

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            self = cast(Optimizer, args[0])
            sink = _trace.sink
            if sink is not None:
                sid = sink.next_id()
                t0 = perf_counter_ns()
                evidence = _step_evidence(self, sink)
            try:
                for pre_hook in chain(
                    _global_optimizer_pre_hooks.values(), self._optimizer_step_pre_hooks.values()
                ):
                    result = pre_hook(self, args, kwargs)
                    if result is not None:
                        if isinstance(result, tuple) and len(result) == 2:
                            args, kwargs = result
                        else:
                            raise RuntimeError(
                                f"{func} must return None or a tuple of "
                                f"(new_args, new_kwargs), but got {result}."
                            )
                out = func(*args, **kwargs)
                self._optimizer_step_code()
                for post_hook in chain(
                    self._optimizer_step_post_hooks.values(), _global_optimizer_post_hooks.values()
                ):
                    post_hook(self, args, kwargs)
                return out
            finally:
                if sink is not None:
                    attrs = {
                        "optimizer": type(self).__name__,
                        "groups": len(self.param_groups),
                        "params": sum(len(g["params"]) for g in self.param_groups),
                        **evidence,
                    }
                    sink.append(
                        (sid, 0, get_ident(), t0, perf_counter_ns(), "optim.step",
                         f"{type(self).__name__}.step", func_name, attrs)
                    )  # fmt: skip

        return wrapper

    @mirrors("torch.optim.optimizer.Optimizer._patch_step_function")
    def _patch_step_function(self) -> None:
        """Wraps the subclass's ``step`` once, at class level, with the hook runner."""
        hooked = getattr(self.__class__.step, "hooked", None)
        if not hooked:
            self.__class__.step = self.profile_hook_step(self.__class__.step)  # type: ignore[method-assign]
            self.__class__.step.hooked = True  # type: ignore[attr-defined]

    @mirrors("torch.optim.optimizer.Optimizer.register_step_pre_hook")
    def register_step_pre_hook(self, hook: Callable) -> RemovableHandle:
        """``hook(optimizer, args, kwargs) -> None | (args, kwargs)`` before ``step``."""
        handle = hooks.RemovableHandle(self._optimizer_step_pre_hooks)
        self._optimizer_step_pre_hooks[handle.id] = hook
        return handle

    @mirrors("torch.optim.optimizer.Optimizer.register_step_post_hook")
    def register_step_post_hook(self, hook: Callable) -> RemovableHandle:
        """``hook(optimizer, args, kwargs) -> None`` after ``step``."""
        handle = hooks.RemovableHandle(self._optimizer_step_post_hooks)
        self._optimizer_step_post_hooks[handle.id] = hook
        return handle

    @staticmethod
    def _register(table: OrderedDict, hook: Callable, prepend: bool) -> RemovableHandle:
        """Adds ``hook`` to one of the state-dict hook tables, first if ``prepend``."""
        handle = hooks.RemovableHandle(table)
        table[handle.id] = hook
        if prepend:
            table.move_to_end(handle.id, last=False)
        return handle

    @mirrors("torch.optim.optimizer.Optimizer.register_state_dict_pre_hook")
    def register_state_dict_pre_hook(
        self, hook: Callable, prepend: bool = False
    ) -> RemovableHandle:
        """``hook(optimizer) -> None`` before ``state_dict`` packs the state."""
        return self._register(self._optimizer_state_dict_pre_hooks, hook, prepend)

    @mirrors("torch.optim.optimizer.Optimizer.register_state_dict_post_hook")
    def register_state_dict_post_hook(
        self, hook: Callable, prepend: bool = False
    ) -> RemovableHandle:
        """``hook(optimizer, state_dict) -> state_dict | None`` on the packed dict."""
        return self._register(self._optimizer_state_dict_post_hooks, hook, prepend)

    @mirrors("torch.optim.optimizer.Optimizer.register_load_state_dict_pre_hook")
    def register_load_state_dict_pre_hook(
        self, hook: Callable, prepend: bool = False
    ) -> RemovableHandle:
        """``hook(optimizer, state_dict) -> state_dict | None`` before loading."""
        return self._register(self._optimizer_load_state_dict_pre_hooks, hook, prepend)

    @mirrors("torch.optim.optimizer.Optimizer.register_load_state_dict_post_hook")
    def register_load_state_dict_post_hook(
        self, hook: Callable, prepend: bool = False
    ) -> RemovableHandle:
        """``hook(optimizer) -> None`` after loading."""
        return self._register(self._optimizer_load_state_dict_post_hooks, hook, prepend)

    @mirrors("torch.optim.optimizer.Optimizer.state_dict")
    def state_dict(self) -> StateDict:
        """The state as ``{"state": {index: {...}}, "param_groups": [...]}``.

        Tensors are replaced by their order index across all groups, so the
        dict can be loaded into another optimizer over other tensors.
        """
        with _trace.span("optim.state_dict", "state_dict", optimizer=type(self).__name__):
            for pre_hook in self._optimizer_state_dict_pre_hooks.values():
                pre_hook(self)
            param_mappings: dict[int, int] = {}
            start_index = 0

            def pack_group(group: dict[str, Any]) -> dict[str, Any]:
                nonlocal start_index
                packed = {k: v for k, v in group.items() if k != "params"}
                param_mappings.update(
                    {
                        id(p): i
                        for i, p in enumerate(group["params"], start_index)
                        if id(p) not in param_mappings
                    }
                )
                packed["params"] = [param_mappings[id(p)] for p in group["params"]]
                start_index += len(packed["params"])
                return packed

            param_groups = [pack_group(g) for g in self.param_groups]
            packed_state = {
                (param_mappings[id(k)] if isinstance(k, torch.Tensor) else k): v
                for k, v in self.state.items()
            }
            state_dict = {"state": packed_state, "param_groups": param_groups}
            for post_hook in self._optimizer_state_dict_post_hooks.values():
                hook_result = post_hook(self, state_dict)
                if hook_result is not None:
                    state_dict = hook_result
            return state_dict

    @staticmethod
    @mirrors("torch.optim.optimizer.Optimizer._process_value_according_to_param_policy")
    def _process_value_according_to_param_policy(
        param: torch.Tensor,
        value: torch.Tensor,
        param_id: int,
        param_groups: list[dict[Any, Any]],
        key: Hashable = None,
    ) -> torch.Tensor:
        """Casts loaded state to the param's dtype and device, except ``step``.

        ``step`` keeps its own dtype (torch issue 74424) unless a fused or
        capturable group needs it as float32 next to the param.
        """
        fused = False
        capturable = False
        for pg in param_groups:
            if param_id in pg["params"]:
                fused = pg.get("fused", False)
                capturable = pg.get("capturable", False)
                break
        if key == "step":
            if capturable or fused:
                return value.to(dtype=torch.float32, device=param.device)
            return value
        if param.is_floating_point():
            return value.to(dtype=param.dtype, device=param.device)
        return value.to(device=param.device)

    @mirrors("torch.optim.optimizer.Optimizer.load_state_dict")
    def load_state_dict(self, state_dict: StateDict) -> None:
        """Loads a ``state_dict`` by zipping its integer ids with our params in order."""
        with _trace.span("optim.state_dict", "load_state_dict", optimizer=type(self).__name__):
            self._load_state_dict(state_dict)

    def _load_state_dict(self, state_dict: StateDict) -> None:
        state_dict = state_dict.copy()  # shallow, like Module.load_state_dict
        for pre_hook in self._optimizer_load_state_dict_pre_hooks.values():
            hook_result = pre_hook(self, state_dict)
            if hook_result is not None:
                state_dict = hook_result
        groups = self.param_groups
        saved_groups = deepcopy(state_dict["param_groups"])  # we write into them below
        if len(groups) != len(saved_groups):
            raise ValueError("loaded state dict has a different number of parameter groups")
        param_lens = (len(g["params"]) for g in groups)
        saved_lens = (len(g["params"]) for g in saved_groups)
        if any(p_len != s_len for p_len, s_len in zip(param_lens, saved_lens)):
            raise ValueError(
                "loaded state dict contains a parameter group "
                "that doesn't match the size of optimizer's group"
            )
        id_map = dict(
            zip(
                chain.from_iterable(g["params"] for g in saved_groups),
                chain.from_iterable(g["params"] for g in groups),
            )
        )

        def _cast(param: torch.Tensor, value: Any, param_id: Any = None, key: Any = None) -> Any:
            """A deep copy of ``value`` with tensors moved next to ``param``."""
            if isinstance(value, torch.Tensor):
                return Optimizer._process_value_according_to_param_policy(
                    param, value, param_id, state_dict["param_groups"], key
                )
            if isinstance(value, dict):
                return {k: _cast(param, v, param_id=param_id, key=k) for k, v in value.items()}
            if isinstance(value, Iterable):
                return type(value)(_cast(param, v, param_id=param_id) for v in value)  # type: ignore[call-arg]
            return value

        # State of known params is cast; unknown keys are kept as they are (old checkpoints).
        state: defaultdict[Any, dict[Any, Any]] = defaultdict(dict)
        for k, v in state_dict["state"].items():
            if k in id_map:
                param = id_map[k]
                state[param] = _cast(param, v, param_id=k)
            else:
                state[k] = v

        def update_group(group: dict[str, Any], new_group: dict[str, Any]) -> dict[str, Any]:
            new_group["params"] = group["params"]
            if "param_names" in group and "param_names" not in new_group:
                new_group["param_names"] = group["param_names"]
            return new_group

        param_groups = [update_group(g, ng) for g, ng in zip(groups, saved_groups)]
        self.__setstate__({"state": state, "param_groups": param_groups})
        for post_hook in self._optimizer_load_state_dict_post_hooks.values():
            post_hook(self)

    @mirrors("torch.optim.optimizer.Optimizer.zero_grad")
    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drops (``set_to_none``) or zeroes every parameter's ``.grad``.

        With foreach/fused optimizers the zeroing is batched per device and dtype.
        """
        foreach = self.defaults.get("foreach", False) or self.defaults.get("fused", False)
        with _trace.span(
            "optim.zero_grad", f"{type(self).__name__}.zero_grad", set_to_none=set_to_none
        ):
            per_device_and_dtype_grads: defaultdict | None = (
                defaultdict(lambda: defaultdict(list)) if foreach else None
            )
            for group in self.param_groups:
                for p in group["params"]:
                    if p.grad is None:
                        continue
                    if set_to_none:
                        p.grad = None
                        continue
                    if p.grad.grad_fn is not None:
                        p.grad.detach_()
                    else:
                        p.grad.requires_grad_(False)
                    if per_device_and_dtype_grads is None or p.grad.is_sparse:
                        p.grad.zero_()
                    else:
                        per_device_and_dtype_grads[p.grad.device][p.grad.dtype].append(p.grad)
            if per_device_and_dtype_grads is not None:
                for per_dtype_grads in per_device_and_dtype_grads.values():
                    for grads in per_dtype_grads.values():
                        torch._foreach_zero_(grads)

    @mirrors("torch.optim.optimizer.Optimizer.step")
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """Performs one update; each subclass implements its rule."""
        raise NotImplementedError

    @mirrors("torch.optim.optimizer.Optimizer.add_param_group")
    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Adds a group (a dict with ``params`` and optional hyper-parameters).

        Useful when unfreezing layers while training; fills missing options
        from ``defaults`` and refuses sets, non-leaf tensors and parameters
        already in another group.
        """
        with _trace.span("optim.add_param_group", f"{type(self).__name__}.add_param_group") as span:
            if not isinstance(param_group, dict):
                raise TypeError(f"param_group must be a dict, but got {type(param_group)}")
            params = param_group["params"]
            if isinstance(params, torch.Tensor):
                param_group["params"] = [params]
            elif isinstance(params, set):
                raise TypeError(
                    "optimizer parameters need to be organized in ordered collections, but "
                    "the ordering of tensors in sets will change between runs. "
                    "Please use a list instead."
                )
            else:
                param_group["params"] = list(params)

            extracted_param_tensors = []
            extracted_param_names = []
            for param in param_group["params"]:
                if isinstance(param, tuple):
                    extracted_param_names.append(param[0])
                    extracted_param_tensors.append(param[1])
                else:
                    extracted_param_tensors.append(param)
            param_group["params"] = extracted_param_tensors
            if len(extracted_param_names) != 0:
                if len(extracted_param_names) == len(extracted_param_tensors):
                    param_group["param_names"] = extracted_param_names
                else:
                    raise ValueError(
                        "all optimizer params should be with/without names. "
                        "Some param names are missing"
                    )

            for param in param_group["params"]:
                if not isinstance(param, torch.Tensor):
                    raise TypeError(
                        "optimizer can only optimize Tensors, "
                        "but one of the params is " + torch.typename(param)
                    )
                if not self.defaults.get("differentiable", None) and not (
                    param.is_leaf or param.retains_grad
                ):
                    raise ValueError("can't optimize a non-leaf Tensor")

            for name, default in self.defaults.items():
                if default is required and name not in param_group:
                    raise ValueError(
                        "parameter group didn't specify a value of required "
                        f"optimization parameter {name}"
                    )
                param_group.setdefault(name, default)

            params = param_group["params"]
            if len(params) != len(set(params)):
                warnings.warn(
                    "optimizer contains a parameter group with duplicate parameters; "
                    "in future, this will cause an error; "
                    "see github.com/pytorch/pytorch/issues/40967 for more information",
                    stacklevel=3,
                )

            param_set: set[torch.Tensor] = set()
            for group in self.param_groups:
                param_set.update(set(group["params"]))
                if ("param_names" in param_group) != ("param_names" in group):
                    current_group_txt = (
                        "with names" if "param_names" in param_group else "without names"
                    )
                    raise ValueError(
                        "all optimizer param groups should be with/without names. "
                        f"cannot add param group {current_group_txt} to the optimizer"
                    )
            if not param_set.isdisjoint(set(param_group["params"])):
                raise ValueError("some parameters appear in more than one parameter group")

            self.param_groups.append(param_group)
            if _trace.sink is not None:  # recording: which group, how big, its options
                span.set(**_added_group(self.param_groups))

    def _trace_group(self, sink: Any, index: int, group: dict) -> _GroupTrace:
        """Opens the ``optim.group`` span of one group (only called while traced)."""
        return _GroupTrace(sink, self, index, group)
