"""batch_norm, layer_norm, group_norm and their modules against PyTorch CPU, plus gradcheck."""
import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import phalanx as px
import phalanx.nn as nn
import phalanx.nn.functional as F
from phalanx.autograd import gradcheck, gradgradcheck
from phalanx.nn.functional.normalization import _Standardize

rng = np.random.default_rng(0)


def _arrays(*shapes):
    arrays = [rng.standard_normal(s) for s in shapes]
    return ([px.tensor(a, requires_grad=True) for a in arrays],
            [torch.tensor(a, requires_grad=True) for a in arrays])


def _check_grads(y, yt, ours, theirs, atol=1e-10):
    np.testing.assert_allclose(y.detach().numpy(), yt.detach().numpy(), atol=atol)
    g = rng.standard_normal(tuple(yt.shape))
    y.backward(px.tensor(g))
    yt.backward(torch.tensor(g))
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), atol=atol)


@pytest.mark.parametrize("shape,normalized", [((3, 4, 5), (5,)), ((3, 4, 5), (4, 5)),
                                              ((6, 8), (8,))])
def test_layer_norm_matches_torch(shape, normalized):
    ours, theirs = _arrays(shape, normalized, normalized)
    _check_grads(F.layer_norm(ours[0], normalized, ours[1], ours[2]),
                 TF.layer_norm(theirs[0], normalized, theirs[1], theirs[2]), ours, theirs)


@pytest.mark.parametrize("shape,groups", [((3, 4, 5, 2), 2), ((2, 6, 7), 3), ((4, 6), 6)])
def test_group_norm_matches_torch(shape, groups):
    c = shape[1]
    ours, theirs = _arrays(shape, (c,), (c,))
    _check_grads(F.group_norm(ours[0], groups, ours[1], ours[2], 1e-3),
                 TF.group_norm(theirs[0], groups, theirs[1], theirs[2], 1e-3), ours, theirs)


@pytest.mark.parametrize("shape", [(5, 4), (3, 4, 6), (3, 4, 5, 2)])
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_functional_matches_torch(shape, training):
    ours, theirs = _arrays(shape, (4,), (4,))
    stats = rng.standard_normal(4), rng.uniform(0.5, 2, 4)
    rm, rv = px.tensor(stats[0]), px.tensor(stats[1])
    rmt, rvt = torch.tensor(stats[0]), torch.tensor(stats[1])
    y = F.batch_norm(ours[0], rm, rv, ours[1], ours[2], training, 0.3, 1e-4)
    yt = TF.batch_norm(theirs[0], rmt, rvt, theirs[1], theirs[2], training, 0.3, 1e-4)
    _check_grads(y, yt, ours, theirs)
    np.testing.assert_allclose(rm.numpy(), rmt.numpy(), atol=1e-12)
    np.testing.assert_allclose(rv.numpy(), rvt.numpy(), atol=1e-12)


@pytest.mark.parametrize("shape", [(7, 3), (4, 3, 9), (5, 3, 4, 4), (2, 3, 2, 3, 2)])
@pytest.mark.parametrize("affine", ["both", "weight", "none"])
def test_fused_training_batch_norm_matches_torch(shape, affine):
    """The fused training Function: every gradient, each affine variant, any rank."""
    ours, theirs = _arrays(shape, (3,), (3,))
    w, wt = (ours[1], theirs[1]) if affine != "none" else (None, None)
    b, bt = (ours[2], theirs[2]) if affine == "both" else (None, None)
    y = F.batch_norm(ours[0], None, None, w, b, True, 0.1, 1e-3)
    yt = TF.batch_norm(theirs[0], None, None, wt, bt, True, 0.1, 1e-3)
    used = 1 + (w is not None) + (b is not None)
    _check_grads(y, yt, ours[:used], theirs[:used])


def test_fused_batch_norm_gradient_of_a_transposed_view():
    """A non-contiguous incoming gradient (the output used through a transpose)."""
    ours, theirs = _arrays((4, 3, 5), (3,), (3,))
    y = F.batch_norm(ours[0], None, None, ours[1], ours[2], True).transpose(0, 2)
    yt = TF.batch_norm(theirs[0], None, None, theirs[1], theirs[2], True).transpose(0, 2)
    _check_grads(y, yt, ours, theirs)


@pytest.mark.parametrize("cls,shape", [("BatchNorm1d", (8, 4)), ("BatchNorm1d", (8, 4, 5)),
                                       ("BatchNorm2d", (6, 4, 3, 5))])
@pytest.mark.parametrize("momentum", [0.1, None])
def test_batchnorm_module_running_stats_and_eval(cls, shape, momentum):
    torch.manual_seed(0)
    theirs = getattr(torch.nn, cls)(4, momentum=momentum).double()
    ours = getattr(nn, cls)(4, momentum=momentum).double()
    assert [(k, tuple(v.shape)) for k, v in ours.state_dict().items()] == \
        [(k, tuple(v.shape)) for k, v in theirs.state_dict().items()]
    ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
    for _ in range(4):  # several training steps, with an affine update in between
        ours_in, theirs_in = _arrays(shape)
        _check_grads(ours(ours_in[0]), theirs(theirs_in[0]), ours_in, theirs_in)
        with torch.no_grad():
            theirs.weight.sub_(0.1 * theirs.weight.grad)
        with px.no_grad():
            ours.weight.sub_(0.1 * ours.weight.grad)
    for name in ("running_mean", "running_var", "num_batches_tracked", "weight", "bias"):
        np.testing.assert_allclose(getattr(ours, name).detach().numpy(),
                                   getattr(theirs, name).detach().numpy(), atol=1e-12,
                                   err_msg=name)
    assert ours.num_batches_tracked.dtype == px.int64
    ours.eval(), theirs.eval()
    ours_in, theirs_in = _arrays(shape)
    _check_grads(ours(ours_in[0]), theirs(theirs_in[0]), ours_in, theirs_in)
    assert int(ours.num_batches_tracked.item()) == 4  # eval does not count


@pytest.mark.parametrize("kwargs", [dict(affine=False), dict(track_running_stats=False)])
def test_batchnorm_options(kwargs):
    theirs, ours = torch.nn.BatchNorm2d(3, **kwargs).double(), nn.BatchNorm2d(3, **kwargs).double()
    assert list(ours.state_dict()) == list(theirs.state_dict())
    x = rng.standard_normal((4, 3, 2, 2))
    for train in (True, False):
        ours.train(train), theirs.train(train)
        np.testing.assert_allclose(ours(px.tensor(x)).detach().numpy(),
                                   theirs(torch.tensor(x)).detach().numpy(), atol=1e-12)


def test_layernorm_and_groupnorm_modules():
    torch.manual_seed(0)
    for build, shape in [(lambda m: m.LayerNorm((4, 5)), (3, 4, 5)),
                         (lambda m: m.LayerNorm(5, elementwise_affine=False), (3, 5)),
                         (lambda m: m.LayerNorm(5, bias=False), (3, 5)),
                         (lambda m: m.GroupNorm(2, 4), (3, 4, 6)),
                         (lambda m: m.GroupNorm(2, 4, affine=False), (3, 4, 6))]:
        theirs, ours = build(torch.nn).double(), build(nn).double()
        assert [(k, tuple(v.shape)) for k, v in ours.state_dict().items()] == \
            [(k, tuple(v.shape)) for k, v in theirs.state_dict().items()]
        with torch.no_grad():
            for p in theirs.parameters():
                p.normal_()
        ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
        ours_in, theirs_in = _arrays(shape)
        _check_grads(ours(ours_in[0]), theirs(theirs_in[0]), ours_in, theirs_in)
        for p, pt in zip(ours.parameters(), theirs.parameters()):
            np.testing.assert_allclose(p.grad.numpy(), pt.grad.numpy(), atol=1e-10)


def test_gradcheck_standardize_and_norms():
    x = px.tensor(rng.standard_normal((3, 4)), requires_grad=True)
    assert gradcheck(lambda x: _Standardize.apply(x, (1,), 1e-5), (x,))
    assert gradgradcheck(lambda x: _Standardize.apply(x, (1,), 1e-5), (x,))
    x4 = px.tensor(rng.standard_normal((3, 2, 2, 2)), requires_grad=True)
    w = px.tensor(rng.standard_normal(2), requires_grad=True)
    assert gradgradcheck(lambda x, w: F.batch_norm(x, None, None, w, w, True), (x4, w))
    assert gradgradcheck(lambda x, w: F.group_norm(x, 2, w, w), (x4, w))
    assert gradcheck(lambda x, w: F.layer_norm(x, (4,), None, None), (x, w[:1]))


def test_errors():
    with pytest.raises(RuntimeError, match=r"expected input with shape \[\*, 6\]"):
        F.layer_norm(px.randn(2, 5), (6,))
    with pytest.raises(RuntimeError, match="divisible by num_groups"):
        F.group_norm(px.randn(2, 5, 3), 2)
    with pytest.raises(ValueError, match=r"expected 4D input \(got 3D"):
        nn.BatchNorm2d(3)(px.randn(2, 3, 4))
    with pytest.raises(ValueError, match="expected 3 channels"):
        nn.BatchNorm1d(3)(px.randn(2, 4))
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        nn.BatchNorm1d(3)(px.randn(1, 3))
    with pytest.raises(RuntimeError, match=r"running_mean has shape \[3\].*4 channels"):
        F.batch_norm(px.randn(2, 4), px.zeros(3), px.ones(3))
