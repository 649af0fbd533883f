"""``module.forward`` spans from torch's global forward hooks (``attach(forward="hooks")``).

The alternative to modules.py's ``_call_impl`` wrapper, through the seam the
torch docs name for it: ``register_module_forward_pre_hook`` opens a span and
``register_module_forward_hook(always_call=True)`` closes it (with the error
when forward raised). Any global hook sends every module call through the
slow path of torch's ``_call_impl`` (benchmarks/bench_torch_target.py
measures what that costs). Order inside it: global pre-hooks run before the
module's own, so the span opens first; but global forward hooks run *before*
the module's own, so when the module has forward hooks the span stays open
and the last of them closes it. The backward boundary is the args the call
got (before a backward hook's ``BackwardHookFunction``) and the result before
``setup_output_hook``: a backward *pre*-hook's span comes just before its
module's backward span instead of inside it.
"""

from __future__ import annotations

import sys
from threading import get_ident
from time import perf_counter_ns
from typing import Any

import torch.nn.modules.module as torch_module
from torch import Tensor

from reimpl import _trace
from reimpl.nn.modules import module as rm
from tracer.targets.torch import modules
from tracer.targets.torch.attach import Options, Patches

_stacks: dict[int, list[list]] = {}
"""thread id -> open forward calls: [module, span id, start, path entry, pending, result, args]."""
_backward = [True]


def _forward_pre(module: Any, args: tuple) -> None:
    """Opens the module's span (a global forward pre-hook)."""
    sink = _trace.sink
    if sink is None:
        return
    entry = modules.entry_of(module)
    tid = get_ident()
    stack = _stacks.get(tid)
    if stack is None:
        stack = _stacks[tid] = []
    # the args as the call got them: the boundary of the module's backward is
    # there, not on what a backward hook's BackwardHookFunction made of them
    stack.append([module, sink.next_id(), perf_counter_ns(), entry, False, None, args])


def _pop(module: Any) -> list | None:
    """The innermost open call of ``module`` on this thread, removed with what
    opened above it (calls that raised past their hooks)."""
    stack = _stacks.get(get_ident())
    if not stack:
        return None
    for k in range(len(stack) - 1, -1, -1):
        if stack[k][0] is module:
            rec = stack[k]
            del stack[k:]
            return rec
    return None


def _forward_post(module: Any, args: tuple, result: Any) -> None:
    """Closes the module's span (a global forward hook, called even when forward
    raised), or leaves it to the module's own last forward hook."""
    stack = _stacks.get(get_ident())
    if not stack:
        return
    top = stack[-1]
    error = sys.exc_info()[1] if result is None else None  # always_call: forward raised
    if top[0] is module and error is None and module._forward_hooks:
        hooks = module._forward_hooks
        if type(next(reversed(hooks.values()))) is modules._Hook:
            top[4], top[5] = True, result  # the last of the module's own hooks closes it
            return
    rec = _pop(module)
    if rec is not None:
        _close(rec, result, error)


def _after_forward_hook(hook: Any, module: Any, result: Any, error: Any) -> None:
    """After one of the module's own forward hooks: the last one closes the span."""
    stack = _stacks.get(get_ident())
    if not stack or stack[-1][0] is not module or not stack[-1][4]:
        return
    top = stack[-1]
    if result is not None:
        top[5] = result
    if error is not None or next(reversed(module._forward_hooks.values())) is hook:
        _close(stack.pop(), top[5], error)


def _close(rec: list, result: Any, error: BaseException | None) -> None:
    sink = _trace.sink
    if sink is None:
        return
    entry = rec[3]
    if error is not None:
        modules.forward_failed(sink, rec[1], rec[2], entry, error)
        return
    sink.append((rec[1], 0, get_ident(), rec[2], perf_counter_ns(), "module.forward", entry[0],
                 modules.FORWARD_FUNC, entry[1]))  # fmt: skip
    if _backward[0] and _trace.backward_spans and isinstance(result, (Tensor, tuple)):
        rm._link_backward(result, rec[6], entry)


def _forget() -> None:
    _stacks.clear()
    modules.after_forward_hook.clear()


def install(patches: Patches, options: Options) -> None:
    """Registers the two global forward hooks (modules.py's install calls this)."""
    _backward[0] = options.backward_spans
    modules.after_forward_hook[:] = [_after_forward_hook]
    patches.on_detach(_forget)
    patches.on_detach(torch_module.register_module_forward_pre_hook(_forward_pre).remove)
    handle = torch_module.register_module_forward_hook(_forward_post, always_call=True)
    patches.on_detach(handle.remove)
