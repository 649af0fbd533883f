"""reimpl.nn.Module against torch.nn.Module: attributes, registration, iteration,
conversion, train/eval, repr, pickling, optimizers, DataParallel replicas."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
from parity import assert_params_close, check_pair, named_tensors, raised, same_error
from twins import R, T, pair_of

import reimpl.nn

X = torch.randn(5, 3)


def test_forward_backward_parity_and_two_steps() -> None:
    t, r = pair_of("Net")
    check_pair(t, r, X, steps=2)  # buffers update in training: compared after each step


def test_eval_parity() -> None:
    t, r = pair_of("Net")
    t.eval(), r.eval()
    assert not r.training and not r.block.lin.training
    check_pair(t, r, X)


def test_is_not_a_torch_module_but_holds_torch_tensors() -> None:
    r = R.Net()
    assert not isinstance(r, torch.nn.Module)
    p = r.first.weight
    assert type(p) is reimpl.nn.Parameter and isinstance(p, torch.Tensor)
    assert isinstance(p, torch.nn.Parameter)  # torch's own metaclass check accepts ours
    assert type(p * 2) is torch.Tensor  # __torch_function__ disabled, as upstream
    assert repr(p).startswith("Parameter containing:\n")


def test_torch_parameter_and_buffer_are_accepted() -> None:
    r = R.Lin(2, 2)
    r.extra = torch.nn.Parameter(torch.zeros(3))
    r.buf = torch.nn.Buffer(torch.ones(1), persistent=False)
    assert [n for n, _ in r.named_parameters()] == ["weight", "bias", "extra"]
    assert [n for n, _ in r.named_buffers()] == ["buf"]
    assert list(r.state_dict()) == ["weight", "bias", "extra"]
    t = torch.nn.Linear(2, 2)
    t.extra = reimpl.nn.Parameter(torch.zeros(3))  # and torch takes ours
    assert "extra" in dict(t.named_parameters())
    b = reimpl.nn.Buffer(torch.zeros(2), persistent=False)
    assert isinstance(b, torch.nn.Buffer) and type(b) is torch.Tensor


def _layout(m) -> tuple:
    return (
        [(n, type(c).__name__) for n, c in m.named_children()],
        [n for n, _ in m.named_modules()],
        named_tensors(m.named_parameters()),
        named_tensors(m.named_buffers()),
        sorted(k for k in vars(m) if not k.startswith("__")),
    )


def test_registration_layout_matches() -> None:
    t, r = pair_of("Net")
    assert _layout(r) == _layout(t)
    assert r._non_persistent_buffers_set == t._non_persistent_buffers_set == set()
    assert r.stat._non_persistent_buffers_set == t.stat._non_persistent_buffers_set == {"scratch"}
    assert r.nothing is None and "nothing" in vars(r)


@pytest.mark.parametrize("remove_duplicate", [True, False])
@pytest.mark.parametrize("recurse", [True, False])
def test_named_members_with_duplicates(remove_duplicate: bool, recurse: bool) -> None:
    t, r = pair_of("Tied")

    def names(m) -> tuple:
        return (
            [n for n, _ in m.named_parameters("pre", recurse, remove_duplicate)],
            [n for n, _ in m.named_buffers("pre", recurse, remove_duplicate)],
            [n for n, _ in m.named_modules(prefix="pre", remove_duplicate=remove_duplicate)],
            [n for n, _ in m.named_children()],
            len(list(m.parameters(recurse))),
            len(list(m.modules(remove_duplicate))),
            len(list(m.children())),
        )

    assert names(r) == names(t)
    assert r.a is r.b and r.c.weight is r.a.weight


def test_attribute_routing_moves_between_dicts() -> None:
    for lib in (T, R):
        m = lib.Lin(2, 2)
        m.weight = None  # None keeps the parameter slot
        assert "weight" in m._parameters and m.weight is None
        m.sub = lib.Act()
        m.sub = None  # None keeps the module slot
        assert "sub" in m._modules and m.sub is None
        m.sub = lib.nn.Parameter(torch.zeros(1))  # a parameter replaces the module
        assert "sub" not in m._modules and "sub" in m._parameters
        m.register_buffer("buf", torch.zeros(1))
        m.buf = torch.ones(1)  # plain tensor onto a buffer name stays a buffer
        assert torch.equal(m._buffers["buf"], torch.ones(1))
        m.plain = 3
        assert m.__dict__["plain"] == 3
        del m.buf, m.sub, m.plain
        assert "buf" not in m._buffers and "sub" not in m._parameters
    t, r = pair_of("Lin", 2, 2)
    assert same_error(
        lambda: setattr(t, "bias", torch.zeros(2)), lambda: setattr(r, "bias", torch.zeros(2))
    )
    t.sub, r.sub = T.Act(), R.Act()
    same_error(lambda: setattr(t, "sub", 3), lambda: setattr(r, "sub", 3))
    t.register_buffer("b", None), r.register_buffer("b", None)
    same_error(lambda: setattr(t, "b", 3), lambda: setattr(r, "b", 3))


def test_assignment_moves_a_name_out_of_every_other_dict() -> None:
    """A parameter assigned over a buffer (persistent or not) or a module, and a
    module over a buffer: the name lives in one dict only, as in torch."""

    def layout(lib):
        m = lib.Lin(2, 2)
        m.register_buffer("b", torch.zeros(1))
        m.register_buffer("scratch", torch.zeros(1), persistent=False)
        m.sub = lib.Act()
        m.register_buffer("b2", torch.zeros(1))
        m.b = lib.nn.Parameter(torch.ones(1))
        m.scratch = lib.nn.Parameter(torch.ones(1))
        m.sub = lib.nn.Parameter(torch.ones(1))
        m.b2 = lib.Act()
        return (
            list(m._parameters),
            list(m._buffers),
            list(m._modules),
            sorted(m._non_persistent_buffers_set),
            list(m.state_dict()),
            [n for n, _ in m.named_buffers()],
        )

    ours = layout(R)
    assert ours == layout(T)
    assert ours[1] == [] and ours[3] == []


class _Early:
    """Assignments made before Module.__init__ has run."""

    @staticmethod
    def classes(lib):
        class EarlyParam(lib.nn.Module):
            def __init__(self) -> None:
                self.w = lib.nn.Parameter(torch.zeros(1))

        class EarlyModule(lib.nn.Module):
            def __init__(self) -> None:
                self.m = lib.Act()

        class EarlyBuffer(lib.nn.Module):
            def __init__(self) -> None:
                self.register_buffer("b", torch.zeros(1))

        class EarlyRegister(lib.nn.Module):
            def __init__(self) -> None:
                self.register_parameter("w", None)

        return [EarlyParam, EarlyModule, EarlyBuffer, EarlyRegister]


@pytest.mark.parametrize("i", range(4))
def test_assigning_before_init_errors(i: int) -> None:
    ct, cr = _Early.classes(T)[i], _Early.classes(R)[i]
    msg = same_error(ct, cr)
    assert "before Module.__init__() call" in msg


def _misuses(lib):
    m = lib.Lin(2, 2)
    leaf_param = lib.nn.Parameter(torch.zeros(1))
    return {
        "param dot": lambda: m.register_parameter("a.b", leaf_param),
        "param empty": lambda: m.register_parameter("", leaf_param),
        "param name type": lambda: m.register_parameter(3, leaf_param),
        "param exists": lambda: m.register_parameter("forward", leaf_param),
        "param type": lambda: m.register_parameter("p", torch.zeros(1)),
        "param nonleaf": lambda: m.register_parameter("p", nonleaf_param(lib)),
        "buffer dot": lambda: m.register_buffer("a.b", torch.zeros(1)),
        "buffer empty": lambda: m.register_buffer("", torch.zeros(1)),
        "buffer name type": lambda: m.register_buffer(1.5, torch.zeros(1)),
        "buffer exists": lambda: m.register_buffer("weight", torch.zeros(1)),
        "buffer type": lambda: m.register_buffer("b", [1, 2]),
        "module dot": lambda: m.add_module("a.b", lib.Act()),
        "module empty": lambda: m.add_module("", lib.Act()),
        "module name type": lambda: m.add_module(None, lib.Act()),
        "module exists": lambda: m.add_module("weight", lib.Act()),
        "module type": lambda: m.add_module("x", 3),
        "getattr": lambda: m.nope,
        "get_submodule": lambda: m.get_submodule("nope.deeper"),
        "get_submodule not module": lambda: lib.Net().get_submodule("first.weight"),
        "set_submodule empty": lambda: m.set_submodule("", lib.Act()),
        "set_submodule type": lambda: m.set_submodule("x", 3),
        "set_submodule strict": lambda: lib.Net().set_submodule(
            "block.nope", lib.Act(), strict=True
        ),
        "set_submodule not module": lambda: lib.Net().set_submodule("first.weight", lib.Act()),
        "get_parameter missing": lambda: lib.Net().get_parameter("block.lin.nope"),
        "get_parameter not param": lambda: lib.Net().get_parameter("stat.running"),
        "get_buffer missing": lambda: lib.Net().get_buffer("stat.nope"),
        "get_buffer not buffer": lambda: lib.Net().get_buffer("first.weight"),
        "train type": lambda: m.train("yes"),
        "to int dtype": lambda: m.to(torch.int32),
        "to bad args": lambda: m.to("cpu", "float"),
        "init args": lambda: lib.nn.Module(1),
        "init kwargs": lambda: lib.nn.Module(a=1),
        "no forward": lambda: lib.nn.Module()(1),
        "failing forward": lambda: lib.Failing()(torch.zeros(1)),
        "delattr": lambda: delattr(m, "nope"),
    }


def nonleaf_param(lib):
    """A Parameter-typed tensor that is not a leaf (torch's ValueError case)."""
    p = lib.nn.Parameter(torch.zeros(1))
    out = p.view_as(p)  # plain Tensor view with a grad_fn
    out._is_param = True  # recognised as a Parameter by both metaclasses
    return out


@pytest.mark.parametrize("case", sorted(_misuses(T)))
def test_misuse_raises_like_torch(case: str) -> None:
    ft, fr = _misuses(T)[case], _misuses(R)[case]
    if raised(ft) is None:
        assert raised(fr) is None
        return
    same_error(ft, fr)


def test_get_and_set_submodule() -> None:
    t, r = pair_of("Net")
    assert r.get_submodule("") is r and r.get_submodule("block.lin") is r.block.lin
    assert r.get_parameter("block.lin.weight") is r.block.lin.weight
    assert r.get_buffer("stat.running") is r.stat._buffers["running"]
    r.set_submodule("block.extra", R.Act())
    t.set_submodule("block.extra", T.Act())
    r.set_submodule("block.act", R.Lin(4, 4), strict=True)
    t.set_submodule("block.act", T.Lin(4, 4), strict=True)
    assert _layout(r) == _layout(t)


def test_train_eval_requires_grad_zero_grad() -> None:
    t, r = pair_of("Net")
    for m in (t, r):
        assert m.eval() is m and not any(x.training for x in m.modules())
        assert m.train() is m and all(x.training for x in m.modules())
        assert m.requires_grad_(False) is m
    assert [p.requires_grad for p in r.parameters()] == [p.requires_grad for p in t.parameters()]
    t.requires_grad_(), r.requires_grad_()
    check_pair(t, r, X)
    t.zero_grad(set_to_none=False), r.zero_grad(set_to_none=False)
    assert all(p.grad is not None and not p.grad.any() for p in r.parameters())
    t.zero_grad(), r.zero_grad()
    assert all(p.grad is None for p in r.parameters())


def test_repr_extra_repr_dir() -> None:
    t, r = pair_of("Net")
    assert repr(r) == repr(t)
    r.block.add_module("multi", R.Lin(1, 1))
    t.block.add_module("multi", T.Lin(1, 1))
    assert repr(r) == repr(t)
    extra = [a for a in dir(r) if a in ("first", "running", "weight", "block", "training")]
    assert extra == [a for a in dir(t) if a in ("first", "running", "weight", "block", "training")]
    assert set(dir(r.stat)) >= {"running", "scratch", "count"}


def test_apply_visits_children_first() -> None:
    t, r = pair_of("Net")
    order_t, order_r = [], []
    t.apply(lambda m: order_t.append(type(m).__name__))
    assert r.apply(lambda m: order_r.append(type(m).__name__)) is r
    assert order_r == order_t


@pytest.mark.parametrize(
    "convert",
    [
        lambda m: m.double(),
        lambda m: m.half(),
        lambda m: m.bfloat16(),
        lambda m: m.double().float(),
        lambda m: m.to(torch.float64),
        lambda m: m.to("cpu", torch.float64),
        lambda m: m.to(device="cpu", dtype=torch.float16, non_blocking=True),
        lambda m: m.to(torch.zeros(1, dtype=torch.float64)),
        lambda m: m.to(memory_format=torch.channels_last),
        lambda m: m.type(torch.float64),
        lambda m: m.cpu(),
        lambda m: m.share_memory(),
    ],
)
def test_apply_conversions_match(convert) -> None:
    t, r = pair_of("Net")
    check_pair(t, r, X)  # grads exist, so _apply converts them too
    params_before = list(r.parameters())
    assert convert(r) is r
    convert(t)
    assert [p is q for p, q in zip(r.parameters(), params_before)] == [True] * len(params_before)
    for (nt, pt), (nr, pr) in zip(t.named_parameters(), r.named_parameters()):
        assert nt == nr and pt.dtype == pr.dtype and torch.equal(pt, pr)
        assert pt.grad.dtype == pr.grad.dtype and type(pr) is reimpl.nn.Parameter
    for (nt, bt), (nr, br) in zip(t.named_buffers(), r.named_buffers()):
        assert nt == nr and bt.dtype == br.dtype and torch.equal(bt, br)
    assert r.stat.count.dtype == t.stat.count.dtype  # integral: kept, except by type()


def test_to_complex_warns_like_torch() -> None:
    from parity import same_warnings

    t, r = pair_of("Lin", 2, 2)
    same_warnings(lambda: t.to(torch.complex64), lambda: r.to(torch.complex64))


def test_overwrite_params_on_conversion_makes_new_parameters() -> None:
    t, r = pair_of("Lin", 2, 2)
    before = r.weight
    torch.__future__.set_overwrite_module_params_on_conversion(True)
    try:
        r.double(), t.double()
    finally:
        torch.__future__.set_overwrite_module_params_on_conversion(False)
    assert r.weight is not before and type(r.weight) is reimpl.nn.Parameter
    assert r.weight.dtype == t.weight.dtype == torch.float64


def test_to_empty_and_meta() -> None:
    with torch.device("meta"):
        r = R.Lin(3, 2)
    assert r.weight.is_meta
    r.to_empty(device="cpu")
    assert r.weight.device.type == "cpu" and r.weight.shape == (2, 3)
    with torch.device("meta"):
        t, r2 = T.Lin(3, 2), R.Lin(3, 2)
    same_error(lambda: t.to("cpu"), lambda: r2.to("cpu"))


def test_optimizer_trains_both_alike() -> None:
    from parity import train_pair

    t, r = pair_of("Net")
    train_pair(
        t,
        r,
        lambda m: torch.optim.Adam(m.parameters(), lr=0.01),
        lambda m: torch.optim.Adam(m.parameters(), lr=0.01),
        [X],
    )
    t, r = pair_of("Net")
    ot = torch.optim.SGD(t.parameters(), lr=0.1, momentum=0.9)
    orr = torch.optim.SGD(r.parameters(), lr=0.1, momentum=0.9)
    for _ in range(3):
        for m, o in ((t, ot), (r, orr)):
            o.zero_grad()
            m(X).pow(2).sum().backward()
            o.step()
    assert_params_close(r, t)
    adam = torch.optim.Adam(r.parameters())
    adam.zero_grad()
    r(X).sum().backward()
    adam.step()


class PickleNet(reimpl.nn.Module):
    """Module-level, so pickle can find it by name."""

    def __init__(self) -> None:
        super().__init__()
        self.first = PickleLeaf()
        self.shared = PickleLeaf()
        self.register_buffer("scratch", torch.ones(2), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shared(self.first(x))


class PickleLeaf(reimpl.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = reimpl.nn.Parameter(torch.randn(3, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight


def test_pickle_and_deepcopy_roundtrip() -> None:
    r = PickleNet()
    r(X).sum().backward()
    r.first.register_forward_hook(_module_level_hook)
    clone = pickle.loads(pickle.dumps(r))
    assert type(clone) is type(r) and type(clone.first.weight) is reimpl.nn.Parameter
    assert list(clone.state_dict()) == list(r.state_dict())
    assert torch.equal(clone(X), r(X))
    assert clone.first._forward_hooks and clone._non_persistent_buffers_set == {"scratch"}
    tp = pickle.loads(pickle.dumps(torch.nn.Parameter(torch.zeros(1))))
    tp_grad_kept = tp.grad is not None
    assert (clone.first.weight.grad is not None) == tp_grad_kept  # grads never travel
    dc = copy.deepcopy(r)
    assert dc.first.weight is not r.first.weight and torch.equal(dc.first.weight, r.first.weight)
    assert dc.shared is not r.shared
    state = r.__getstate__()
    assert state is not r.__dict__ and state.keys() == r.__dict__.keys()
    old = R.Act()
    state = old.__getstate__()
    for key in ("_forward_pre_hooks", "_state_dict_pre_hooks", "_backward_pre_hooks"):
        state.pop(key)
    fresh = R.Act.__new__(R.Act)
    fresh.__setstate__(state)  # old checkpoints lacking newer attributes still load
    assert fresh._forward_pre_hooks == {} and fresh._backward_pre_hooks == {}


def _module_level_hook(module, args, output) -> None:
    return None


def test_replicate_for_data_parallel_is_shallow_like_torch() -> None:
    t, r = pair_of("Net")
    for m in (t, r):
        m.first.register_forward_hook(_module_level_hook)
        rep = m._replicate_for_data_parallel()
        assert rep._is_replica and type(rep) is type(m)
        assert rep._parameters == {} and rep._buffers == m._buffers
        assert rep._buffers is not m._buffers and rep._modules is not m._modules
        # the DeOldify root cause: the hook dicts are the *same objects*
        for name in (
            "_forward_hooks",
            "_forward_pre_hooks",
            "_backward_hooks",
            "_forward_hooks_with_kwargs",
            "_state_dict_hooks",
        ):
            assert getattr(rep, name) is getattr(m, name), name
        child = m.first._replicate_for_data_parallel()
        assert child._forward_hooks is m.first._forward_hooks
        assert set(vars(rep)) == set(vars(m)) | {"_is_replica"}
    rep_t, rep_r = t._replicate_for_data_parallel(), r._replicate_for_data_parallel()
    from parity import same_warnings

    same_warnings(lambda: rep_t.zero_grad(), lambda: rep_r.zero_grad())


def test_call_super_init_and_compile() -> None:
    class Mixin:
        def __init__(self, *args, **kwargs) -> None:
            self.seen = (args, kwargs)

    class WithSuper(reimpl.nn.Module, Mixin):
        call_super_init = True

    m = WithSuper(1, k=2)
    assert m.seen == ((1,), {"k": 2})
    with pytest.raises(NotImplementedError):
        m.compile()


def test_registration_hooks_global() -> None:
    from reimpl.nn.modules import module as rm

    for lib, mod in ((T, torch.nn.modules.module), (R, rm)):
        log: list = []

        def note(kind: str, log: list = log):
            return lambda m, n, value: log.append((kind, type(m).__name__, n))

        h1 = mod.register_module_parameter_registration_hook(note("p"))
        h2 = mod.register_module_buffer_registration_hook(note("b"))
        h3 = mod.register_module_module_registration_hook(note("m"))
        try:
            lib.Net()
        finally:
            h1.remove(), h2.remove(), h3.remove()
        if lib is T:
            expected = log
        else:
            assert log == expected
    swap = torch.zeros(2)
    for lib, mod in ((T, torch.nn.modules.module), (R, rm)):
        h = mod.register_module_buffer_registration_hook(lambda m, n, b: swap)
        try:
            assert lib.Stat(2).running is swap
        finally:
            h.remove()


def test_with_reimpl_layers_when_available() -> None:
    layers = pytest.importorskip("reimpl.nn.modules.linear")
    from reimpl.nn.modules.activation import ReLU
    from reimpl.nn.modules.container import Sequential

    def build_torch():
        return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))

    def build_ours():
        return Sequential(layers.Linear(3, 4), ReLU(), layers.Linear(4, 2))

    from parity import pair

    t, r = pair(build_torch, build_ours)
    assert repr(r) == repr(t)
    check_pair(t, r, X, steps=2)
