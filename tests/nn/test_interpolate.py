"""interpolate in every mode (nearest, nearest-exact, linear, bilinear, bicubic, trilinear,
area) against PyTorch CPU, plus gradcheck."""
import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import phalanx as px
import phalanx.nn.functional as F
from phalanx.autograd import gradcheck, gradgradcheck

rng = np.random.default_rng(0)

CASES = [((2, 3, 5, 7), dict(size=(8, 4))), ((2, 3, 5, 7), dict(scale_factor=2)),
         ((2, 3, 5, 7), dict(scale_factor=1.7)), ((2, 3, 5, 7), dict(scale_factor=(0.5, 3))),
         ((1, 2, 6, 6), dict(size=1)), ((2, 3, 9), dict(size=4)),
         ((2, 3, 4), dict(scale_factor=2.5)),
         ((2, 3, 5, 7), dict(scale_factor=1.7, recompute_scale_factor=True)),
         ((2, 3, 9, 11), dict(size=(4, 3))), ((1, 2, 3, 4, 5), dict(size=(5, 2, 7)))]


def _modes(shape):
    linear = {3: "linear", 4: "bilinear", 5: "trilinear"}[len(shape)]
    modes = [("nearest", None), ("nearest-exact", None), ("area", None), (linear, False),
             (linear, True)]
    if len(shape) == 4:
        modes += [("bicubic", False), ("bicubic", True)]
    return modes


@pytest.mark.parametrize("shape,kwargs", CASES)
def test_interpolate_matches_torch(shape, kwargs):
    for mode, align in _modes(shape):
        x = rng.standard_normal(shape)
        xp_, xt = px.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
        y = F.interpolate(xp_, mode=mode, align_corners=align, **kwargs)
        yt = TF.interpolate(xt, mode=mode, align_corners=align, **kwargs)
        assert tuple(y.shape) == tuple(yt.shape), (mode, align)
        np.testing.assert_allclose(y.detach().numpy(), yt.detach().numpy(), atol=1e-12,
                                   err_msg=f"{mode} align_corners={align} {kwargs}")
        g = rng.standard_normal(tuple(yt.shape))
        y.backward(px.tensor(g))
        yt.backward(torch.tensor(g))
        np.testing.assert_allclose(xp_.grad.numpy(), xt.grad.numpy(), atol=1e-12,
                                   err_msg=f"{mode} align_corners={align} {kwargs}")


@pytest.mark.parametrize("mode", ["bilinear", "bicubic"])
@pytest.mark.parametrize("align", [False, True])
@pytest.mark.parametrize("kwargs", [dict(size=(5, 13)), dict(scale_factor=0.37),
                                    dict(scale_factor=(2.5, 0.5)), dict(size=(1, 1))])
def test_antialias_matches_torch(mode, align, kwargs):
    """antialias=True: PIL's filters stretched over each output pixel's footprint when
    downsampling (and Keys' a = -0.5 cubic throughout), values and gradients."""
    x = rng.standard_normal((2, 3, 16, 9))
    xp_, xt = px.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    y = F.interpolate(xp_, mode=mode, align_corners=align, antialias=True, **kwargs)
    yt = TF.interpolate(xt, mode=mode, align_corners=align, antialias=True, **kwargs)
    np.testing.assert_allclose(y.detach().numpy(), yt.detach().numpy(), atol=1e-12)
    g = rng.standard_normal(tuple(yt.shape))
    y.backward(px.tensor(g))
    yt.backward(torch.tensor(g))
    np.testing.assert_allclose(xp_.grad.numpy(), xt.grad.numpy(), atol=1e-12)


def test_nearest_5d_and_float32():
    x = rng.standard_normal((1, 2, 3, 4, 5)).astype(np.float32)
    np.testing.assert_array_equal(F.interpolate(px.tensor(x), scale_factor=2).numpy(),
                                  TF.interpolate(torch.tensor(x), scale_factor=2).numpy())
    y = F.interpolate(px.tensor(x[:, :, 0]), size=(5, 9), mode="bilinear")
    assert y.dtype == px.float32


def test_gradcheck_interpolate():
    x = px.tensor(rng.standard_normal((1, 2, 3, 4)), requires_grad=True)
    for kw in (dict(mode="bilinear", size=(5, 3)), dict(mode="bilinear", scale_factor=2,
                                                        align_corners=True),
               dict(mode="nearest", size=(5, 7)), dict(mode="bicubic", size=(5, 2)),
               dict(mode="area", size=(2, 3))):
        assert gradcheck(lambda x: F.interpolate(x, **kw), (x,))
    assert gradgradcheck(lambda x: F.interpolate(x, mode="bilinear", size=(4, 5)), (x,))


def test_errors():
    x = px.randn(1, 2, 4, 4)
    with pytest.raises(ValueError, match="exactly one of size and scale_factor"):
        F.interpolate(x)
    with pytest.raises(ValueError, match="expects a 3-D input"):
        F.interpolate(x, size=3, mode="linear")
    with pytest.raises(ValueError, match="align_corners only applies"):
        F.interpolate(x, size=3, align_corners=True)
    with pytest.raises(ValueError, match="Anti-alias option is restricted"):
        F.interpolate(x, size=3, mode="nearest", antialias=True)
    with pytest.raises(ValueError, match="unknown mode 'cubic'"):
        F.interpolate(x, size=3, mode="cubic")
    with pytest.raises(ValueError, match="'bicubic' expects a 4-D input"):
        F.interpolate(px.randn(1, 2, 4), size=3, mode="bicubic")
    with pytest.raises(ValueError, match="must have 2 entries"):
        F.interpolate(x, size=(3, 4, 5))
