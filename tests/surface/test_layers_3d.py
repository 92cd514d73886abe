"""3-D convolutions and pooling (functional and modules) against PyTorch: values, gradients,
indices, PyTorch state dicts, lazy layers; double backward through gradcheck."""
import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import phalanx as px
import phalanx.nn as nn
import phalanx.nn.functional as F
from phalanx.autograd import gradcheck, gradgradcheck

RNG = np.random.default_rng(3)


def _compare(name, arrays, *args, **kwargs):
    """Run F.<name> on float64 copies of `arrays` (None passes through) in both libraries,
    backpropagate the same random cotangent and compare values, indices and gradients."""
    P = [None if a is None else px.tensor(a, requires_grad=True) for a in arrays]
    T = [None if a is None else torch.tensor(a, requires_grad=True) for a in arrays]
    po, to = getattr(F, name)(*P, *args, **kwargs), getattr(TF, name)(*T, *args, **kwargs)
    if isinstance(to, tuple):
        np.testing.assert_array_equal(po[1].numpy(), to[1].numpy())
        po, to = po[0], to[0]
    assert tuple(po.shape) == tuple(to.shape)
    np.testing.assert_allclose(po.detach().numpy(), to.detach().numpy(), rtol=1e-10,
                               atol=1e-12, equal_nan=True)
    cot = RNG.standard_normal(tuple(to.shape))
    (po * px.tensor(cot)).sum().backward()
    (to * torch.tensor(cot)).sum().backward()
    for p, t in zip(P, T):
        if p is not None:
            np.testing.assert_allclose(p.grad.numpy(), t.grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("x, w, b, kw", [
    ((2, 4, 5, 6, 7), (6, 2, 3, 2, 3), (6,),
     dict(stride=(2, 1, 2), padding=(1, 0, 1), dilation=(1, 2, 1), groups=2)),
    ((4, 5, 6, 7), (3, 4, 3, 3, 3), None, dict(padding="same", dilation=(2, 1, 1))),
    ((1, 2, 4, 4, 4), (3, 2, 2, 2, 2), (3,), dict(padding="valid", stride=2)),
])
def test_conv3d(x, w, b, kw):
    _compare("conv3d", [RNG.standard_normal(s) if s else None for s in (x, w, b)], **kw)


@pytest.mark.parametrize("x, w, b, kw", [
    ((2, 4, 3, 4, 5), (4, 3, 3, 2, 3), (6,),
     dict(stride=(2, 2, 1), padding=(1, 0, 1), output_padding=(1, 1, 0), groups=2,
          dilation=(1, 1, 2))),
    ((4, 3, 4, 5), (4, 3, 2, 2, 2), None, dict(stride=3, padding=1, dilation=2,
                                               output_padding=2)),
])
def test_conv_transpose3d(x, w, b, kw):
    _compare("conv_transpose3d", [RNG.standard_normal(s) if s else None for s in (x, w, b)],
             **kw)


@pytest.mark.parametrize("name, shape, args, kw", [
    ("max_pool3d", (2, 3, 7, 8, 9), ((3, 2, 3),),
     dict(stride=(2, 2, 1), padding=(1, 1, 0), dilation=(1, 2, 1), ceil_mode=True)),
    ("max_pool3d", (3, 7, 8, 9), ((3, 2, 3),),
     dict(stride=(2, 3, 2), padding=1, ceil_mode=True, return_indices=True)),
    ("avg_pool3d", (2, 3, 7, 8, 9), ((3, 2, 3),),
     dict(stride=(2, 2, 1), padding=(1, 1, 1), ceil_mode=True, count_include_pad=False)),
    ("avg_pool3d", (2, 3, 7, 8, 9), (3,), dict(stride=2, padding=1)),
    ("avg_pool3d", (2, 3, 7, 8, 9), (3,), dict(stride=2, padding=1, divisor_override=5)),
    ("adaptive_avg_pool3d", (2, 3, 7, 8, 9), ((3, 5, 4),), {}),
    ("adaptive_avg_pool3d", (3, 7, 8, 9), ((None, 2, 4),), {}),
    ("adaptive_max_pool3d", (2, 3, 7, 8, 9), ((3, 5, 4),), dict(return_indices=True)),
    ("lp_pool3d", (2, 3, 7, 8, 9), (2, (2, 3, 2)), {}),
    ("lp_pool3d", (2, 3, 6, 6, 6), (1.5, 2), dict(stride=1, ceil_mode=True)),
])
def test_pooling3d(name, shape, args, kw):
    a = RNG.standard_normal(shape)
    if name == "lp_pool3d":
        a = np.abs(a) + 0.1   # fractional powers of negative numbers are NaN in both
    _compare(name, [a], *args, **kw)


def test_max_unpool3d_inverts_max_pool3d():
    a = RNG.standard_normal((2, 3, 6, 6, 6))
    po, pi = F.max_pool3d(px.tensor(a), 2, return_indices=True)
    to, ti = TF.max_pool3d(torch.tensor(a), 2, return_indices=True)
    np.testing.assert_array_equal(F.max_unpool3d(po, pi, 2).numpy(),
                                  TF.max_unpool3d(to, ti, 2).numpy())
    unpool = nn.MaxUnpool3d(2)
    assert unpool(po, pi, output_size=(7, 7, 7)).shape == (2, 3, 7, 7, 7)


def test_conv3d_double_backward():
    x = px.tensor(RNG.standard_normal((1, 2, 3, 4, 3)), requires_grad=True)
    w = px.tensor(RNG.standard_normal((2, 2, 2, 2, 2)), requires_grad=True)
    assert gradcheck(lambda x, w: F.conv3d(x, w, stride=(2, 1, 1), padding=1), (x, w))
    assert gradgradcheck(lambda x, w: F.conv_transpose3d(x, w, stride=2), (x, w))


@pytest.mark.parametrize("make", [
    lambda m: m.Conv3d(4, 6, (3, 2, 3), stride=(2, 1, 1), padding=1, groups=2),
    lambda m: m.Conv3d(4, 6, 3, padding=1, padding_mode="reflect", bias=False),
    lambda m: m.Conv3d(4, 2, 3, padding="same", dilation=2),
    lambda m: m.ConvTranspose3d(4, 2, 2, stride=2, output_padding=1, dilation=1),
    lambda m: m.MaxPool3d(2, stride=1, padding=1),
    lambda m: m.AvgPool3d((2, 3, 2), count_include_pad=False, padding=1),
    lambda m: m.AdaptiveAvgPool3d((2, None, 3)),
    lambda m: m.AdaptiveMaxPool3d(2),
    lambda m: m.LPPool3d(2, 2),
])
def test_modules_load_torch_weights_and_match(make):
    torch.manual_seed(0)
    tm = make(torch.nn).double()
    pm = make(nn)
    pm.load_state_dict({k: px.tensor(v.detach().numpy()) for k, v in tm.state_dict().items()})
    pm = pm.double()
    a = np.abs(RNG.standard_normal((2, 4, 5, 6, 5))) + 0.1
    np.testing.assert_allclose(pm(px.tensor(a)).detach().numpy(),
                               tm(torch.tensor(a)).detach().numpy(), rtol=1e-10, atol=1e-12)
    assert repr(pm).split("(")[0] == repr(tm).split("(")[0]


def test_lazy_3d_convs_become_their_layers():
    for lazy, full, out in [(nn.LazyConv3d(5, 3), nn.Conv3d, (1, 5, 3, 3, 3)),
                            (nn.LazyConvTranspose3d(5, 3), nn.ConvTranspose3d,
                             (1, 5, 7, 7, 7))]:
        y = lazy(px.randn(1, 3, 5, 5, 5))
        assert type(lazy) is full and tuple(y.shape) == out
        assert lazy.weight.shape[0 if full is nn.Conv3d else 1] == 5


def test_module_paths_and_errors():
    from phalanx.nn.modules.conv import Conv3d, ConvTranspose3d  # noqa: F401
    from phalanx.nn.modules.pooling import AvgPool3d, MaxPool3d  # noqa: F401
    with pytest.raises(RuntimeError, match="5-D weight"):
        F.conv3d(px.randn(1, 2, 3, 3, 3), px.randn(2, 2, 3, 3))
    with pytest.raises(RuntimeError, match=r"\(N, C, D, H, W\)"):
        F.conv3d(px.randn(2, 3, 3), px.randn(2, 2, 3, 3, 3))
    with pytest.raises(RuntimeError, match="channels"):
        F.conv3d(px.randn(1, 3, 3, 3, 3), px.randn(2, 2, 1, 1, 1))
