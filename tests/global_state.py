"""Module-level state that one test can leave behind for the next, saved and restored.

Global module hooks live in module-level dicts, and registering the first
global backward hook sets ``_global_is_full_backward_hook`` for the rest of
the process: a test that registers one and forgets the flag changes what the
next test sees (a "Cannot use both regular backward hooks and full backward
hooks" error on both sides, which a parity check then takes for agreement).
``tests/conftest.py`` takes a ``snapshot()`` when the session starts and
``restore()``s it after every test, for reimpl and for torch alike.

Dicts are restored in place: ``RemovableHandle`` keeps a weak reference to
the dict it was registered in, and functions read the module global by name.
"""

from __future__ import annotations

import importlib
from typing import Any

_MODULE_HOOKS = (
    "_global_buffer_registration_hooks",
    "_global_module_registration_hooks",
    "_global_parameter_registration_hooks",
    "_global_backward_pre_hooks",
    "_global_backward_hooks",
    "_global_is_full_backward_hook",
    "_global_forward_pre_hooks",
    "_global_forward_hooks",
    "_global_forward_hooks_always_called",
    "_global_forward_hooks_with_kwargs",
)
_OPTIMIZER_HOOKS = ("_global_optimizer_pre_hooks", "_global_optimizer_post_hooks")

GLOBALS: dict[str, tuple[str, ...]] = {
    "torch.nn.modules.module": _MODULE_HOOKS,
    "torch.optim.optimizer": _OPTIMIZER_HOOKS,
    "reimpl.nn.modules.module": (*_MODULE_HOOKS, "_callback_queued"),
    "reimpl.optim.optimizer": _OPTIMIZER_HOOKS,
    # the event seam: an attached sink, the backward-span switch, role and thread names
    "reimpl._trace": ("sink", "backward_spans", "_role", "_threads"),
}
"""Module name -> the module-level names restored around every test (missing ones skipped)."""

Saved = list[tuple[Any, str, Any, dict | None]]


def snapshot() -> Saved:
    """(module, name, value, copy of the dict's items when it is a dict) for every global."""
    saved: Saved = []
    for module_name, names in GLOBALS.items():
        module = importlib.import_module(module_name)
        for name in names:
            if hasattr(module, name):
                value = getattr(module, name)
                saved.append(
                    (module, name, value, dict(value) if isinstance(value, dict) else None)
                )
    return saved


def restore(saved: Saved) -> None:
    """Puts every global back: the same object, and for dicts the same items in order."""
    for module, name, value, items in saved:
        setattr(module, name, value)
        if items is not None:
            value.clear()
            value.update(items)
