"""max/avg/adaptive pooling and their modules against PyTorch CPU, plus gradcheck."""
import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import phalanx as px
import phalanx.nn as nn
import phalanx.nn.functional as F
from phalanx.autograd import gradcheck, gradgradcheck

rng = np.random.default_rng(0)


def _compare(fp, ft, shape, atol=1e-12):
    x = rng.standard_normal(shape)
    xp_, xt = px.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    y, yt = fp(xp_), ft(xt)
    if isinstance(yt, tuple):  # (values, indices)
        np.testing.assert_array_equal(y[1].numpy(), yt[1].numpy())
        assert y[1].dtype == px.int64
        y, yt = y[0], yt[0]
    assert tuple(y.shape) == tuple(yt.shape)
    np.testing.assert_allclose(y.detach().numpy(), yt.detach().numpy(), atol=atol)
    g = rng.standard_normal(tuple(yt.shape))
    y.backward(px.tensor(g))
    yt.backward(torch.tensor(g))
    np.testing.assert_allclose(xp_.grad.numpy(), xt.grad.numpy(), atol=atol)


# (kernel, stride, padding, dilation, ceil_mode)
POOL2D = [(2, None, 0, 1, False), (3, 2, 1, 1, False), (3, 2, 1, 1, True), (3, 2, 0, 2, True),
          ((2, 3), (1, 2), (1, 1), 1, True), (3, 3, 1, 1, True), (2, 1, 0, 1, False)]


@pytest.mark.parametrize("k,s,p,d,ceil", POOL2D)
@pytest.mark.parametrize("shape", [(2, 3, 9, 10), (3, 7, 8)])
def test_max_pool2d_matches_torch(k, s, p, d, ceil, shape):
    _compare(lambda x: F.max_pool2d(x, k, s, p, d, ceil, return_indices=True),
             lambda x: TF.max_pool2d(x, k, s, p, d, ceil, return_indices=True), shape)


@pytest.mark.parametrize("k,s,p,d,ceil", [c for c in POOL2D if c[3] == 1])
@pytest.mark.parametrize("count_include_pad", [True, False])
def test_avg_pool2d_matches_torch(k, s, p, d, ceil, count_include_pad):
    _compare(lambda x: F.avg_pool2d(x, k, s, p, ceil, count_include_pad),
             lambda x: TF.avg_pool2d(x, k, s, p, ceil, count_include_pad), (2, 3, 9, 10))


def test_avg_pool2d_divisor_override():
    _compare(lambda x: F.avg_pool2d(x, 3, 2, 1, divisor_override=4),
             lambda x: TF.avg_pool2d(x, 3, 2, 1, divisor_override=4), (1, 2, 7, 7))


@pytest.mark.parametrize("k,s,p,d,ceil", [(3, 2, 1, 1, True), (2, None, 0, 2, False),
                                          (4, 3, 2, 1, True)])
def test_pool1d_matches_torch(k, s, p, d, ceil):
    _compare(lambda x: F.max_pool1d(x, k, s, p, d, ceil, return_indices=True),
             lambda x: TF.max_pool1d(x, k, s, p, d, ceil, return_indices=True), (2, 3, 11))
    if d == 1:
        _compare(lambda x: F.avg_pool1d(x, k, s, p, ceil, False),
                 lambda x: TF.avg_pool1d(x, k, s, p, ceil, False), (2, 3, 11))


def test_max_pool_ties_and_nan_follow_torch():
    x = np.zeros((1, 1, 4, 4))
    x[0, 0, 1, 1] = np.nan
    for arr in (np.zeros((1, 1, 4, 4)), x):
        y, i = F.max_pool2d(px.tensor(arr), 2, return_indices=True)
        yt, it = TF.max_pool2d(torch.tensor(arr), 2, return_indices=True)
        np.testing.assert_array_equal(y.numpy(), yt.numpy())
        np.testing.assert_array_equal(i.numpy(), it.numpy())


@pytest.mark.parametrize("size", [(3, 4), 1, (None, 4), (7, 10), 5])
def test_adaptive_avg_pool2d_matches_torch(size):
    _compare(lambda x: F.adaptive_avg_pool2d(x, size),
             lambda x: TF.adaptive_avg_pool2d(x, size), (2, 3, 7, 10))


def test_adaptive_avg_pool1d_matches_torch():
    _compare(lambda x: F.adaptive_avg_pool1d(x, 4), lambda x: TF.adaptive_avg_pool1d(x, 4),
             (2, 3, 9))


def test_gradcheck_pools():
    x = px.tensor(rng.standard_normal((1, 2, 5, 6)), requires_grad=True)
    for f in (lambda x: F.max_pool2d(x, 3, 2, 1, ceil_mode=True),
              lambda x: F.avg_pool2d(x, 3, 2, 1, ceil_mode=True, count_include_pad=False),
              lambda x: F.adaptive_avg_pool2d(x, (2, 4))):
        assert gradcheck(f, (x,))
        assert gradgradcheck(f, (x,))


def test_module_forms():
    x = rng.standard_normal((2, 3, 9, 8))
    pairs = [(nn.MaxPool2d(3, 2, 1, ceil_mode=True), torch.nn.MaxPool2d(3, 2, 1, ceil_mode=True)),
             (nn.AvgPool2d(2), torch.nn.AvgPool2d(2)),
             (nn.AdaptiveAvgPool2d((2, 3)), torch.nn.AdaptiveAvgPool2d((2, 3)))]
    for ours, theirs in pairs:
        np.testing.assert_allclose(ours(px.tensor(x)).numpy(),
                                   theirs(torch.tensor(x)).numpy(), atol=1e-12)
        assert ours.state_dict() == {}
    x1 = rng.standard_normal((2, 3, 9))
    for ours, theirs in [(nn.MaxPool1d(2), torch.nn.MaxPool1d(2)),
                         (nn.AvgPool1d(3, 2, 1), torch.nn.AvgPool1d(3, 2, 1)),
                         (nn.AdaptiveAvgPool1d(4), torch.nn.AdaptiveAvgPool1d(4))]:
        np.testing.assert_allclose(ours(px.tensor(x1)).numpy(),
                                   theirs(torch.tensor(x1)).numpy(), atol=1e-12)
    y, i = nn.MaxPool2d(2, return_indices=True)(px.tensor(x))
    assert tuple(i.shape) == tuple(y.shape)
    assert "kernel_size=3" in repr(pairs[0][0])


def test_errors():
    with pytest.raises(ValueError, match="at most half of the effective kernel"):
        F.max_pool2d(px.randn(1, 1, 5, 5), 2, padding=2)
    with pytest.raises(RuntimeError, match="too small"):
        F.max_pool2d(px.randn(1, 1, 2, 2), 3)
    with pytest.raises(RuntimeError, match=r"expected a 3-D or 4-D input"):
        F.max_pool2d(px.randn(5, 5), 2)
    with pytest.raises(RuntimeError, match="floating point"):
        F.max_pool2d(px.ones(1, 1, 4, 4, dtype=px.int64), 2)
