"""state_dict and load_state_dict against torch: keys, order, _metadata, hooks,
strict/assign, error text, version migration, extra state, both directions."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from parity import assert_same_state_dict, check_pair, same_error
from twins import R, T, pair_of

import reimpl.nn

X = torch.randn(5, 3)


def test_state_dict_keys_order_metadata() -> None:
    t, r = pair_of("Net")
    st, sr = t.state_dict(), r.state_dict()
    assert_same_state_dict(sr, st)
    assert "stat.scratch" not in sr and "stat.empty" not in sr  # non-persistent / None
    assert list(sr._metadata.items()) == list(st._metadata.items())
    assert all(not v.requires_grad for v in sr.values())
    assert type(sr) is OrderedDict


def _mixed(lib):
    """Buffers and parameters registered interleaved in one module, with a child
    BatchNorm (``_version`` 2) and a version of its own."""

    class Mixed(lib.nn.Module):
        _version = 3

        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("b1", torch.arange(2.0))
            self.w1 = lib.nn.Parameter(torch.ones(2))
            self.register_buffer("scratch", torch.zeros(1), persistent=False)
            self.register_buffer("b2", torch.full((1,), 7.0))
            self.bn = lib.nn.BatchNorm1d(2)
            self.w2 = lib.nn.Parameter(torch.zeros(3))
            self.register_buffer("b3", torch.ones(1))

    return lib.nn.Sequential(Mixed(), lib.nn.Linear(2, 2))


def test_state_dict_mixes_parameters_and_buffers_and_versions() -> None:
    """Each module's parameters come first, then its persistent buffers, each in
    registration order, then its children; ``_metadata`` holds every module's own
    ``_version``. Checked against torch and against the list written out."""
    torch.manual_seed(0)
    theirs = _mixed(torch).state_dict()
    torch.manual_seed(0)
    ours = _mixed(reimpl).state_dict()
    assert_same_state_dict(ours, theirs)
    bn = ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    assert list(ours) == [
        *("0.w1", "0.w2", "0.b1", "0.b2", "0.b3"),
        *(f"0.bn.{k}" for k in bn),
        *("1.weight", "1.bias"),
    ]
    assert list(ours._metadata.items()) == [
        ("", {"version": 1}),
        ("0", {"version": 3}),
        ("0.bn", {"version": 2}),
        ("1", {"version": 1}),
    ]
    assert list(ours._metadata.items()) == list(theirs._metadata.items())


def test_state_dict_prefix_keep_vars_destination() -> None:
    t, r = pair_of("Net")
    kv = r.state_dict(keep_vars=True)
    assert kv["first.weight"] is r.first.weight
    assert list(r.state_dict(prefix="m.")) == list(t.state_dict(prefix="m."))
    assert r.state_dict(prefix="m.")._metadata.keys() == t.state_dict(prefix="m.")._metadata.keys()
    dest_t, dest_r = {}, {}
    assert t.state_dict(destination=dest_t) is dest_t and r.state_dict(destination=dest_r) is dest_r
    assert list(dest_r) == list(dest_t)
    with pytest.warns(FutureWarning):
        pos = r.state_dict(None, "p.", True)
    assert pos["p.first.weight"] is r.first.weight


def test_tied_state_dict() -> None:
    t, r = pair_of("Tied")
    assert_same_state_dict(r.state_dict(), t.state_dict())


@pytest.mark.parametrize("direction", ["torch->reimpl", "reimpl->torch"])
def test_cross_library_load(direction: str) -> None:
    t, r = pair_of("Net", seed=1)
    t2, r2 = pair_of("Net", seed=2)
    src, dst = (t2, r) if direction == "torch->reimpl" else (r2, t)
    assert str(dst.load_state_dict(src.state_dict())) == "<All keys matched successfully>"
    assert_same_state_dict(dst.state_dict(), src.state_dict())


def test_load_then_train_parity() -> None:
    t, r = pair_of("Net")
    check_pair(t, r, X)
    sd = r.state_dict()
    t.load_state_dict(sd)
    check_pair(t, r, X)


def _bad_dicts(lib):
    good = lib.Net().state_dict()
    missing = OrderedDict(good)
    del missing["head.bias"], missing["stat.count"]
    unexpected = OrderedDict(good)
    unexpected["head.extra"] = torch.zeros(1)
    unexpected["ghost.weight"] = torch.zeros(1)
    unexpected["stat.scratch"] = torch.zeros(4)
    size = OrderedDict(good)
    size["first.weight"] = torch.zeros(9, 9)
    both = OrderedDict(missing)
    both.update(unexpected)
    both["block.lin.bias"] = torch.zeros(3)
    not_tensor = OrderedDict(good)
    not_tensor["head.bias"] = [1.0, 2.0]
    return {
        "missing": missing,
        "unexpected": unexpected,
        "size": size,
        "both": both,
        "not_tensor": not_tensor,
    }


@pytest.mark.parametrize("case", ["missing", "unexpected", "size", "both", "not_tensor"])
def test_load_errors_match(case: str) -> None:
    sd_t, sd_r = _bad_dicts(T)[case], _bad_dicts(R)[case]
    msg = same_error(lambda: T.Net().load_state_dict(sd_t), lambda: R.Net().load_state_dict(sd_r))
    assert msg.startswith("Error(s) in loading state_dict for Net:")


@pytest.mark.parametrize("case", ["missing", "unexpected", "both"])
def test_non_strict_returns_the_same_keys(case: str) -> None:
    sd = _bad_dicts(T)[case]
    if case == "both":
        del sd["block.lin.bias"]  # size mismatches raise even when not strict
    kt = T.Net().load_state_dict(sd, strict=False)
    kr = R.Net().load_state_dict(sd, strict=False)
    assert kr.missing_keys == kt.missing_keys and kr.unexpected_keys == kt.unexpected_keys
    assert repr(kr) == repr(kt)


def test_load_type_error_and_zero_dim_compat() -> None:
    same_error(lambda: T.Net().load_state_dict([1]), lambda: R.Net().load_state_dict([1]))
    t, r = T.Stat(2), R.Stat(2)
    sd = t.state_dict()
    sd["count"] = torch.tensor([7])  # 0.3-era 1-element count loads into a 0-dim buffer
    t.load_state_dict(sd), r.load_state_dict(sd)
    assert r.count.item() == t.count.item() == 7 and r.count.dim() == 0


def test_none_slot_with_key_in_state_dict() -> None:
    sd = {"weight": torch.zeros(2, 2), "bias": torch.zeros(2)}
    t, r = T.Lin(2, 2, bias=False), R.Lin(2, 2, bias=False)
    same_error(lambda: t.load_state_dict(sd), lambda: r.load_state_dict(sd))


def test_assign_keeps_requires_grad_and_takes_tensors() -> None:
    src = T.Lin(2, 2).state_dict()
    src["weight"] = src["weight"].double()
    for lib in (T, R):
        m = lib.Lin(2, 2)
        m.bias.requires_grad_(False)
        m.load_state_dict(src, assign=True)
        assert m.weight.dtype == torch.float64 and m.weight.requires_grad
        assert not m.bias.requires_grad
        assert isinstance(m.weight, lib.nn.Parameter)
        assert m.weight.data_ptr() == src["weight"].data_ptr()
    # torch writes the assign flag into the checkpoint's own _metadata, so a later
    # plain load of the same dict assigns too; faithfully so here.
    assert src._metadata[""]["assign_to_params_buffers"] is True
    ct, cr = T.Lin(2, 2), R.Lin(2, 2)
    ct.load_state_dict(src), cr.load_state_dict(src)
    assert cr.weight.dtype == ct.weight.dtype == torch.float64


def test_meta_copy_warns_like_torch() -> None:
    from parity import same_warnings

    with torch.device("meta"):
        t, r = T.Lin(2, 2), R.Lin(2, 2)
    sd = T.Lin(2, 2).state_dict()
    same_warnings(lambda: t.load_state_dict(sd), lambda: r.load_state_dict(sd))


def _hook_classes(lib):
    class Versioned(lib.Lin):
        """Version 2 renamed 'w' to 'weight': migrate old checkpoints."""

        _version = 2

        def _load_from_state_dict(self, state_dict, prefix, local_metadata, *args) -> None:
            version = local_metadata.get("version", None)
            if version is None or version < 2:
                old = prefix + "w"
                if old in state_dict:
                    state_dict[prefix + "weight"] = state_dict.pop(old)
            super()._load_from_state_dict(state_dict, prefix, local_metadata, *args)

    class Extra(lib.Act):
        def __init__(self) -> None:
            super().__init__()
            self.calls = 0

        def get_extra_state(self):
            return {"calls": self.calls}

        def set_extra_state(self, state) -> None:
            self.calls = state["calls"]

    class Outer(lib.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.v = Versioned(2, 2)
            self.e = Extra()

    return Versioned, Extra, Outer


def test_version_migration_and_extra_state() -> None:
    (_, _, OuterT), (_, ExtraR, OuterR) = _hook_classes(T), _hook_classes(R)
    t, r = OuterT(), OuterR()
    r.e.calls = 5
    sd = r.state_dict()
    assert list(sd) == list(t.state_dict()) == ["v.weight", "v.bias", "e._extra_state"]
    assert sd._metadata["v"] == {"version": 2} == t.state_dict()._metadata["v"]
    t.load_state_dict(sd)
    assert t.e.calls == 5
    old = OrderedDict(sd)
    old["v.w"] = old.pop("v.weight")
    old._metadata = OrderedDict({"": {"version": 1}, "v": {"version": 1}, "e": {"version": 1}})
    r2, t2 = OuterR(), OuterT()
    r2.load_state_dict(old), t2.load_state_dict(old)
    assert torch.equal(r2.v.weight, sd["v.weight"]) and torch.equal(t2.v.weight, sd["v.weight"])
    del old["e._extra_state"]
    same_error(lambda: OuterT().load_state_dict(old), lambda: OuterR().load_state_dict(old))
    plain = {"weight": torch.zeros(1), "_extra_state": 1}
    same_error(lambda: T.Act().load_state_dict(plain), lambda: R.Act().load_state_dict(plain))
    with pytest.raises(RuntimeError, match="should never be called"):
        R.Act().get_extra_state()
    assert ExtraR().get_extra_state() == {"calls": 0}


def _run_state_hooks(lib) -> list:
    log = []
    m = lib.Net()
    m.block.register_state_dict_pre_hook(
        lambda mod, prefix, keep: log.append(("pre", prefix, keep))
    )
    m.block.register_state_dict_post_hook(
        lambda mod, sd, prefix, meta: log.append(("post", prefix, dict(meta), len(sd)))
    )

    def private(mod, sd, prefix, meta):
        log.append(("private", prefix))
        new = OrderedDict(sd)
        new["added"] = torch.zeros(1)
        return new

    m._register_state_dict_hook(private)
    sd = m.state_dict(keep_vars=True)
    log.append(("keys", list(sd)[-1]))
    m.block.lin.register_load_state_dict_pre_hook(
        lambda mod, sd, prefix, meta, strict, missing, unexpected, errors: log.append(
            ("lpre", type(mod).__name__, prefix, sorted(sd)[:2], strict)
        )
    )
    m._register_load_state_dict_pre_hook(
        lambda sd, prefix, meta, *rest: log.append(("lpre-nomodule", prefix))
    )

    def post(mod, keys) -> None:
        log.append(
            ("lpost", type(mod).__name__, list(keys.missing_keys), list(keys.unexpected_keys))
        )
        keys.unexpected_keys.clear()

    m.register_load_state_dict_post_hook(post)
    m.block.register_load_state_dict_post_hook(post)
    sd.pop("head.bias")
    err = None
    try:
        m.load_state_dict(sd)  # "added" is unexpected but the post hook clears it
    except RuntimeError as e:
        err = str(e)
    log.append(("err", err))
    return log


def test_state_dict_and_load_hooks_log_matches() -> None:
    assert _run_state_hooks(R) == _run_state_hooks(T)


def test_state_dict_hook_misuse() -> None:
    for lib in (T, R):
        m = lib.Lin(1, 1)
        hook = lambda *a: {}  # noqa: E731
        m.register_state_dict_post_hook(hook)
        with pytest.raises(RuntimeError, match="post-hook must return None"):
            m.state_dict()
    ft = lambda: T.Lin(1, 1)._register_state_dict_hook(hook)  # noqa: E731
    fr = lambda: R.Lin(1, 1)._register_state_dict_hook(hook)  # noqa: E731
    same_error(ft, fr)
    for lib in (T, R):
        m = lib.Lin(1, 1)
        m.register_load_state_dict_post_hook(lambda mod, keys: 1)
        with pytest.raises(AssertionError, match="not expected to return new values"):
            m.load_state_dict(m.state_dict())


def test_reimpl_parameter_in_torch_module_state_dict_assign() -> None:
    t = torch.nn.Linear(2, 2)
    r = R.Lin(2, 2)
    t.load_state_dict(r.state_dict(keep_vars=True), assign=True)
    assert t.weight is r.weight and isinstance(t.weight, torch.nn.Parameter)
    r2 = R.Lin(2, 2)
    r2.load_state_dict(torch.nn.Linear(2, 2).state_dict(keep_vars=True), assign=True)
    assert isinstance(r2.weight, reimpl.nn.Parameter)
