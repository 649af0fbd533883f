"""reimpl BatchNorm1d/2d/3d and SyncBatchNorm against torch's own modules."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from parity import check_pair, pair, same_error

import reimpl.nn
import reimpl.nn.modules.batchnorm as ours
from reimpl.nn.modules.container import Sequential

KINDS = {
    "BatchNorm1d": ((6, 4, 5), None),
    "BatchNorm2d": ((6, 4, 3, 5), torch.channels_last),
    "BatchNorm3d": ((3, 4, 2, 3, 4), torch.channels_last_3d),
}
CONFIGS = {
    "default": {},
    "cumulative": {"momentum": None},
    "no-affine": {"affine": False},
    "no-bias": {"bias": False},
    "untracked": {"track_running_stats": False},
}


def _pair(name: str, *args, **kwargs):
    """The same layer built by torch and by reimpl, with equal (non-trivial) affine."""
    theirs = getattr(torch.nn, name)(*args, **kwargs)
    mine = getattr(ours, name)(*args, **kwargs)
    if theirs.affine:
        with torch.no_grad():
            theirs.weight.uniform_(0.5, 1.5)
            mine.weight.copy_(theirs.weight)
            if theirs.bias is not None:
                theirs.bias.normal_()
                mine.bias.copy_(theirs.bias)
    return theirs, mine


def _step(layer, x, dy):
    """One forward/backward; returns the output, the input grad and param grads."""
    x = x.clone().requires_grad_()
    y = layer(x)
    y.backward(dy)
    grads = {k: p.grad.clone() for k, p in layer.named_parameters()}
    for p in layer.parameters():
        p.grad = None
    return y.detach(), x.grad, grads


def _assert_same(theirs, mine, x, dy, tol):
    t, m = _step(theirs, x, dy), _step(mine, x, dy)
    torch.testing.assert_close(m[0], t[0], **tol, msg="output")
    torch.testing.assert_close(m[1], t[1], **tol, msg="input grad")
    assert m[2].keys() == t[2].keys()
    for k in t[2]:
        torch.testing.assert_close(m[2][k], t[2][k], **tol, msg=k)
    assert m[0].is_contiguous(memory_format=torch.channels_last) == t[0].is_contiguous(
        memory_format=torch.channels_last
    )
    t_buffers, m_buffers = dict(theirs.named_buffers()), dict(mine.named_buffers())
    assert m_buffers.keys() == t_buffers.keys()
    for k in t_buffers:
        torch.testing.assert_close(m_buffers[k], t_buffers[k], **tol, msg=k)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("kind", KINDS)
def test_parity_over_training_and_eval_steps(kind, config, dtype):
    shape, layout = KINDS[kind]
    theirs, mine = _pair(kind, shape[1], dtype=dtype, **CONFIGS[config])
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else {}
    g = torch.Generator().manual_seed(0)
    for step in range(3):
        x = torch.randn(shape, generator=g, dtype=dtype) * (step + 1) + step
        dy = torch.randn(shape, generator=g, dtype=dtype)
        _assert_same(theirs, mine, x, dy, tol)
    theirs.eval()
    mine.eval()
    x = torch.randn(shape, generator=g, dtype=dtype)
    _assert_same(theirs, mine, x, torch.randn(shape, generator=g, dtype=dtype), tol)
    if layout is not None:
        x = x.contiguous(memory_format=layout)
        _assert_same(theirs, mine, x, torch.randn_like(x), tol)
        theirs.train()
        mine.train()
        _assert_same(theirs, mine, x, torch.randn_like(x), tol)


def test_num_batches_tracked_counts_training_steps_only():
    _, mine = _pair("BatchNorm1d", 3, momentum=None)
    for _ in range(4):
        mine(torch.randn(5, 3))
    mine.eval()
    mine(torch.randn(5, 3))
    assert mine.num_batches_tracked.item() == 4
    assert mine.num_batches_tracked.dtype == torch.long


def test_eval_without_running_stats_normalises_with_batch_stats():
    _, mine = _pair("BatchNorm1d", 3, track_running_stats=False)
    mine.eval()
    x = torch.randn(8, 3) * 5 + 2
    y = mine(x)
    expected = torch.nn.functional.batch_norm(x, None, None, mine.weight, mine.bias, True)
    torch.testing.assert_close(y, expected)
    assert mine.running_mean is None and mine.num_batches_tracked is None


@pytest.mark.parametrize("kind", [*KINDS, "SyncBatchNorm"])
def test_shared_parity_helper_agrees(kind):
    """tests/parity.py: outputs, grads, buffers, state_dict keys and _metadata."""
    shape = KINDS.get(kind, ((5, 4, 3), None))[0]
    theirs, mine = pair(
        lambda: getattr(torch.nn, kind)(4, momentum=None),
        lambda: getattr(reimpl.nn, kind)(4, momentum=None),
    )
    check_pair(theirs, mine, torch.randn(shape) * 3 + 1, steps=3)


@pytest.mark.parametrize(
    ("kind", "shape"),
    [
        ("BatchNorm1d", (2, 3, 4, 5)),
        ("BatchNorm1d", (3,)),
        ("BatchNorm2d", (2, 3, 4)),
        ("BatchNorm3d", (2, 3, 4, 5)),
        ("SyncBatchNorm", (3,)),
        ("BatchNorm1d", (1, 3)),  # one value per channel while training
    ],
)
def test_input_errors_match_torch(kind, shape):
    x = torch.randn(shape)
    message = same_error(lambda: getattr(torch.nn, kind)(3)(x), lambda: getattr(ours, kind)(3)(x))
    assert "expected" in message or "Expected more than 1 value per channel" in message


def test_sync_batch_norm_rejects_zero_channels_like_torch():
    x = torch.randn(2, 0, 3)
    same_error(lambda: torch.nn.SyncBatchNorm(0)(x), lambda: ours.SyncBatchNorm(0)(x))


@pytest.mark.parametrize("config", CONFIGS)
def test_state_dict_and_repr_match_torch(config):
    theirs, mine = _pair("BatchNorm2d", 4, **CONFIGS[config])
    assert list(mine.state_dict()) == list(theirs.state_dict())
    assert repr(mine) == repr(theirs)
    mine.load_state_dict(theirs.state_dict())


def test_loading_a_version_1_state_dict_without_num_batches_tracked():
    theirs, mine = _pair("BatchNorm2d", 4)
    for _ in range(3):
        theirs(torch.randn(2, 4, 3, 3))
        mine(torch.randn(2, 4, 3, 3))
    old = theirs.state_dict()
    del old["num_batches_tracked"]
    old._metadata[""]["version"] = 1  # a checkpoint from before the buffer existed
    result = mine.load_state_dict(old)
    assert list(result.missing_keys) == [] and list(result.unexpected_keys) == []
    torch.testing.assert_close(mine.running_mean, theirs.running_mean)
    assert mine.num_batches_tracked.item() == 3  # kept, as torch keeps its own
    # Without the version marker the missing buffer is an error, as in torch.
    current = theirs.state_dict()
    del current["num_batches_tracked"]
    with pytest.raises(RuntimeError, match="num_batches_tracked"):
        mine.load_state_dict(current)


def test_reset_running_stats_and_parameters():
    _, mine = _pair("BatchNorm1d", 3)
    mine(torch.randn(4, 3) + 3)
    buffers = [mine.running_mean, mine.running_var, mine.num_batches_tracked]
    mine.reset_running_stats()
    assert [b.tolist() for b in buffers] == [[0.0] * 3, [1.0] * 3, 0]
    assert mine.running_mean is buffers[0]  # reset in place, not replaced
    mine.reset_parameters()
    assert mine.weight.tolist() == [1.0] * 3 and mine.bias.tolist() == [0.0] * 3


def test_sync_batch_norm_without_a_process_group_is_batch_norm():
    theirs, mine = _pair("BatchNorm2d", 4)
    sync = ours.SyncBatchNorm.convert_sync_batchnorm(mine)
    assert type(sync) is ours.SyncBatchNorm
    x, dy = torch.randn(3, 4, 2, 2), torch.randn(3, 4, 2, 2)
    _assert_same(theirs, sync, x, dy, {})
    theirs.eval()
    sync.eval()
    _assert_same(theirs, sync, x, dy, {})


def test_convert_sync_batchnorm_is_recursive_and_keeps_state():
    inner = ours.BatchNorm1d(3, momentum=None, affine=True, bias=False)
    inner.eval()
    inner.qconfig = "marker"
    model = Sequential(OrderedDict(block=Sequential(ours.BatchNorm2d(4, eps=1e-3)), head=inner))
    weight, running_mean = inner.weight, inner.running_mean
    converted = ours.SyncBatchNorm.convert_sync_batchnorm(model, process_group="group")
    assert converted is model
    bn2, bn1 = converted.block[0], converted.head
    assert type(bn2) is ours.SyncBatchNorm and type(bn1) is ours.SyncBatchNorm
    assert bn2.eps == 1e-3 and bn2.training and bn2.process_group == "group"
    assert bn1.momentum is None and bn1.bias is None and not bn1.training
    assert bn1.weight is weight and bn1.running_mean is running_mean
    assert bn1.qconfig == "marker"
    assert list(converted.state_dict()) == ["block.0.weight", *_bn_keys("block.0"), *_head()]


def _bn_keys(prefix):
    names = ["bias", "running_mean", "running_var", "num_batches_tracked"]
    return [f"{prefix}.{n}" for n in names]


def _head():
    return ["head.weight", "head.running_mean", "head.running_var", "head.num_batches_tracked"]
