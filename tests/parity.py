"""The shared parity helper: build a thing in torch and in reimpl, run both, compare.

torch is the oracle. A parity test builds the same model twice (``pair``),
copies torch's weights into reimpl's (``copy_state``), runs one step on equal
inputs (``run_step``) and compares what came out (``assert_same_step``):
outputs, input grads, parameter grads, buffers and state_dict keys, order
and ``_metadata``. ``same_error`` runs a misuse on both sides and checks the
exception type and message. Everything takes plain callables and modules, so
layer, BatchNorm, container and optimizer tests can all use it.

Import it from any test with ``from parity import pair, assert_same_step``
(pytest puts ``tests/`` on the path: ``pythonpath`` in pyproject.toml).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

Factory = Callable[[], Any]


def pair(torch_factory: Factory, reimpl_factory: Factory, *, seed: int = 0) -> tuple[Any, Any]:
    """Builds both sides after the same seed, then copies torch's state into reimpl's.

    Copying (not only seeding) makes the pair equal even when the two
    constructors draw random numbers differently.
    """
    torch.manual_seed(seed)
    theirs = torch_factory()
    torch.manual_seed(seed)
    ours = reimpl_factory()
    copy_state(theirs, ours)
    return theirs, ours


def copy_state(src: Any, dst: Any) -> None:
    """Loads ``src``'s state_dict into ``dst`` (strict), across the two libraries."""
    dst.load_state_dict(src.state_dict())


def clone_inputs(inputs: Sequence[Any], requires_grad: bool = True) -> list[Any]:
    """Independent copies; floating tensors become leaves that require grad."""
    out = []
    for x in inputs:
        if isinstance(x, torch.Tensor):
            x = x.detach().clone()
            if requires_grad and (x.is_floating_point() or x.is_complex()):
                x.requires_grad_(True)
        out.append(x)
    return out


@dataclass
class Step:
    """What one forward (and backward) produced on one side."""

    output: Any
    input_grads: list[torch.Tensor | None]
    param_grads: dict[str, torch.Tensor | None]
    buffers: dict[str, torch.Tensor]
    state_keys: list[str]
    metadata: dict[str, Any] = field(default_factory=dict)


def _first_tensor(out: Any) -> torch.Tensor:
    while not isinstance(out, torch.Tensor):
        out = out[0] if not isinstance(out, dict) else next(iter(out.values()))
    return out


def default_loss(out: Any) -> torch.Tensor:
    """A loss whose gradient differs per element, so misrouted grads are caught."""
    t = _first_tensor(out)
    weights = torch.linspace(0.5, 1.5, t.numel(), dtype=t.dtype).reshape(t.shape)
    return (t * weights).sum()


def run_step(
    model: Any,
    inputs: Sequence[Any],
    *,
    loss_fn: Callable[[Any], torch.Tensor] | None = default_loss,
    kwargs: dict[str, Any] | None = None,
) -> Step:
    """Runs ``model(*inputs)`` on fresh copies, then backward through ``loss_fn``."""
    xs = clone_inputs(inputs, requires_grad=loss_fn is not None)
    out = model(*xs, **(kwargs or {}))
    if loss_fn is not None:
        loss_fn(out).backward()
    sd = model.state_dict()
    return Step(
        output=out,
        input_grads=[x.grad if isinstance(x, torch.Tensor) else None for x in xs],
        param_grads={n: p.grad for n, p in model.named_parameters()},
        buffers={n: b.detach().clone() for n, b in model.named_buffers()},
        state_keys=list(sd),
        metadata=dict(getattr(sd, "_metadata", {})),
    )


def assert_close(ours: Any, theirs: Any, *, atol: float = 1e-6, rtol: float = 1e-5) -> None:
    """Tensors (or nested tuples/lists/dicts of them) equal within tolerance."""
    if isinstance(theirs, torch.Tensor):
        assert isinstance(ours, torch.Tensor), type(ours)
        assert ours.shape == theirs.shape and ours.dtype == theirs.dtype
        torch.testing.assert_close(ours, theirs, atol=atol, rtol=rtol)
    elif isinstance(theirs, (tuple, list)):
        assert type(ours) is type(theirs) and len(ours) == len(theirs)
        for o, t in zip(ours, theirs):
            assert_close(o, t, atol=atol, rtol=rtol)
    elif isinstance(theirs, dict):
        assert list(ours) == list(theirs)
        for k in theirs:
            assert_close(ours[k], theirs[k], atol=atol, rtol=rtol)
    else:
        assert ours == theirs, (ours, theirs)


def assert_same_step(ours: Step, theirs: Step, *, atol: float = 1e-6, rtol: float = 1e-5) -> None:
    """Outputs, grads, buffers and state_dict layout all agree."""
    assert_close(ours.output, theirs.output, atol=atol, rtol=rtol)
    assert ours.state_keys == theirs.state_keys
    assert ours.metadata == theirs.metadata
    assert list(ours.param_grads) == list(theirs.param_grads)
    for name in theirs.param_grads:
        assert (ours.param_grads[name] is None) == (theirs.param_grads[name] is None), name
        if theirs.param_grads[name] is not None:
            assert_close(ours.param_grads[name], theirs.param_grads[name], atol=atol, rtol=rtol)
    for o, t in zip(ours.input_grads, theirs.input_grads):
        assert (o is None) == (t is None)
        if t is not None:
            assert_close(o, t, atol=atol, rtol=rtol)
    assert_close(ours.buffers, theirs.buffers, atol=atol, rtol=rtol)


def check_pair(theirs: Any, ours: Any, *inputs: Any, steps: int = 1, **kw: Any) -> None:
    """``run_step`` on both sides ``steps`` times, asserting parity each time."""
    for _ in range(steps):
        assert_same_step(run_step(ours, inputs, **kw), run_step(theirs, inputs, **kw))


def assert_same_state_dict(ours: Any, theirs: Any) -> None:
    """Same keys in the same order, same ``_metadata``, equal values."""
    assert list(ours) == list(theirs), (list(ours), list(theirs))
    assert dict(getattr(ours, "_metadata", {})) == dict(getattr(theirs, "_metadata", {}))
    for k in theirs:
        if isinstance(theirs[k], torch.Tensor):
            assert torch.equal(ours[k], theirs[k]), k
        else:
            assert ours[k] == theirs[k], k


def raised(fn: Callable[[], Any]) -> BaseException | None:
    """The exception ``fn`` raises, or None."""
    try:
        fn()
    except BaseException as e:
        return e
    return None


_ADDRESS = re.compile(r"0x[0-9a-f]+")


def same_error(theirs: Callable[[], Any], ours: Callable[[], Any], *, names: bool = True) -> str:
    """Both raise the same exception type with the same message; returns the message.

    With ``names``, class names that differ only by library ("torch.nn..." vs
    "reimpl.nn...") and memory addresses are normalised before comparing.
    """
    et, eo = raised(theirs), raised(ours)
    assert et is not None, "torch did not raise"
    assert eo is not None, f"reimpl did not raise (torch raised {et!r})"
    assert type(eo) is type(et), (type(eo), type(et), eo, et)
    mt, mo = str(et), str(eo)
    if names:
        mt, mo = _normalise(mt), _normalise(mo)
    assert mo == mt, (mo, mt)
    return mt


def _normalise(msg: str) -> str:
    return _ADDRESS.sub("0x?", msg.replace("reimpl.nn.", "torch.nn."))


def same_warnings(theirs: Callable[[], Any], ours: Callable[[], Any]) -> list[str]:
    """Both emit the same warnings (category and message), in order; returns them."""
    import warnings

    def record(fn: Callable[[], Any]) -> list[tuple[type, str]]:
        with warnings.catch_warnings(record=True) as got:
            warnings.simplefilter("always")
            fn()
        return [(w.category, str(w.message)) for w in got]

    wt, wo = record(theirs), record(ours)
    assert wo == wt, (wo, wt)
    return [m for _, m in wt]


def named_tensors(items: Iterable[tuple[str, torch.Tensor]]) -> list[tuple[str, tuple]]:
    """(name, shape) pairs: compares named_parameters()/named_buffers() layouts."""
    return [(n, tuple(t.shape)) for n, t in items]


def deep_pair(model: Any) -> Any:
    """A deepcopy (for tests that mutate one side and keep a pristine twin)."""
    return copy.deepcopy(model)


def assert_params_close(ours: Any, theirs: Any, *, atol: float = 1e-6, rtol: float = 1e-5) -> None:
    """Parameters equal by name after, say, some optimizer steps on both sides."""
    po, pt = dict(ours.named_parameters()), dict(theirs.named_parameters())
    assert list(po) == list(pt)
    for k in pt:
        assert_close(po[k].detach(), pt[k].detach(), atol=atol, rtol=rtol)


def assert_same_optimizer_state(ours: Any, theirs: Any, *, atol: float = 1e-6) -> None:
    """Two optimizers' ``state_dict()`` agree: groups (hyperparameters, param
    indices) and per-parameter state (momentum buffers, step counts...)."""
    so, st = ours.state_dict(), theirs.state_dict()
    assert len(so["param_groups"]) == len(st["param_groups"])
    for go, gt in zip(so["param_groups"], st["param_groups"]):
        assert sorted(go) == sorted(gt), (sorted(go), sorted(gt))
        for k in gt:
            assert_close(go[k], gt[k], atol=atol)
    assert sorted(so["state"]) == sorted(st["state"])
    for idx in st["state"]:
        assert_close(dict(sorted(so["state"][idx].items())), dict(sorted(st["state"][idx].items())))


def train_pair(
    theirs: Any,
    ours: Any,
    make_optimizer_theirs: Callable[[Any], Any],
    make_optimizer_ours: Callable[[Any], Any],
    inputs: Sequence[Any],
    *,
    steps: int = 3,
    loss_fn: Callable[[Any], torch.Tensor] = default_loss,
    atol: float = 1e-6,
) -> tuple[Any, Any]:
    """Trains both models ``steps`` times with their optimizers; after every step
    the parameters and the optimizer states must agree. Returns the optimizers."""
    opt_t, opt_o = make_optimizer_theirs(theirs), make_optimizer_ours(ours)
    for _ in range(steps):
        for model, opt in ((theirs, opt_t), (ours, opt_o)):
            opt.zero_grad()
            loss_fn(model(*clone_inputs(inputs, requires_grad=False))).backward()
            opt.step()
        assert_params_close(ours, theirs, atol=atol)
        assert_same_optimizer_state(opt_o, opt_t, atol=atol)
    return opt_t, opt_o
