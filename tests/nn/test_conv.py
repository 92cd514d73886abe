"""conv1d/conv2d/conv_transpose1d/2d and their modules against PyTorch CPU, plus gradcheck."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import phalanx as px
import phalanx.nn as nn
import phalanx.nn.functional as F
from phalanx.autograd import gradcheck, gradgradcheck

rng = np.random.default_rng(0)
# PyTorch warns that it pads a copy for even kernels with padding="same"; so do we
pytestmark = pytest.mark.filterwarnings("ignore:Using padding=.same.:UserWarning")


def _pair(shapes, dtype=np.float64):
    arrays = [None if s is None else rng.standard_normal(s).astype(dtype) for s in shapes]
    ours = [None if a is None else px.tensor(a, requires_grad=True) for a in arrays]
    theirs = [None if a is None else torch.tensor(a, requires_grad=True) for a in arrays]
    return ours, theirs


def _compare(fp, ft, shapes, atol=1e-10):
    """Outputs and gradients (w.r.t. every input) of fp and ft agree."""
    ours, theirs = _pair(shapes)
    y, yt = fp(*ours), ft(*theirs)
    assert tuple(y.shape) == tuple(yt.shape)
    np.testing.assert_allclose(y.detach().numpy(), yt.detach().numpy(), atol=atol)
    g = rng.standard_normal(tuple(yt.shape))
    y.backward(px.tensor(g))
    yt.backward(torch.tensor(g))
    for a, b in zip(ours, theirs):
        if a is not None:
            np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), atol=atol)


# (N, C, H, W, out, kernel, stride, padding, dilation, groups, bias)
CONV2D = [
    (2, 3, 8, 9, 4, 3, 1, 0, 1, 1, True),
    (2, 3, 8, 9, 4, 3, 2, 1, 1, 1, False),
    (1, 4, 9, 7, 6, (3, 2), (2, 1), (1, 0), 1, 2, True),
    (2, 4, 10, 10, 4, 3, 1, 2, 2, 4, True),          # depthwise, dilated
    (2, 2, 7, 8, 3, 4, 1, "same", 1, 1, True),        # even kernel: extra pad at the end
    (2, 2, 7, 8, 3, 3, 1, "same", (2, 1), 1, True),
    (2, 2, 7, 8, 3, 3, 1, "valid", 1, 1, False),
    (1, 6, 5, 5, 6, 5, 3, 2, 1, 3, True),
]


@pytest.mark.parametrize("n,c,h,w,o,k,s,p,d,g,bias", CONV2D)
def test_conv2d_matches_torch(n, c, h, w, o, k, s, p, d, g, bias):
    kh, kw = (k, k) if isinstance(k, int) else k
    shapes = [(n, c, h, w), (o, c // g, kh, kw), (o,) if bias else None]
    _compare(lambda x, wt, b: F.conv2d(x, wt, b, s, p, d, g),
             lambda x, wt, b: TF.conv2d(x, wt, b, s, p, d, g), shapes)


# (N, C, L, out, kernel, stride, padding, dilation, groups)
CONV1D = [(2, 3, 11, 4, 3, 1, 0, 1, 1), (2, 4, 12, 6, 3, 2, 1, 2, 2),
          (1, 2, 9, 2, 4, 1, "same", 1, 1)]


@pytest.mark.parametrize("n,c,length,o,k,s,p,d,g", CONV1D)
def test_conv1d_matches_torch(n, c, length, o, k, s, p, d, g):
    _compare(lambda x, w, b: F.conv1d(x, w, b, s, p, d, g),
             lambda x, w, b: TF.conv1d(x, w, b, s, p, d, g),
             [(n, c, length), (o, c // g, k), (o,)])


# (N, C_in, H, W, C_out, kernel, stride, padding, output_padding, groups, dilation)
CONVT2D = [
    (2, 4, 5, 6, 3, 3, 1, 0, 0, 1, 1),
    (2, 4, 5, 6, 6, 3, 2, 1, 1, 2, 1),
    (1, 3, 4, 4, 2, (2, 3), (3, 2), (0, 1), (2, 1), 1, 1),
    (2, 2, 4, 3, 4, 3, 2, 1, 1, 2, 2),
]


@pytest.mark.parametrize("n,c,h,w,o,k,s,p,op,g,d", CONVT2D)
def test_conv_transpose2d_matches_torch(n, c, h, w, o, k, s, p, op, g, d):
    kh, kw = (k, k) if isinstance(k, int) else k
    _compare(lambda x, wt, b: F.conv_transpose2d(x, wt, b, s, p, op, g, d),
             lambda x, wt, b: TF.conv_transpose2d(x, wt, b, s, p, op, g, d),
             [(n, c, h, w), (c, o // g, kh, kw), (o,)])


def test_conv_transpose1d_matches_torch():
    _compare(lambda x, w, b: F.conv_transpose1d(x, w, b, 2, 1, 1, 1, 1),
             lambda x, w, b: TF.conv_transpose1d(x, w, b, 2, 1, 1, 1, 1),
             [(2, 3, 7), (3, 4, 3), (4,)])


def test_unbatched_input():
    _compare(lambda x, w: F.conv2d(x, w, padding=1), lambda x, w: TF.conv2d(x, w, padding=1),
             [(3, 6, 5), (2, 3, 3, 3)])


def test_float32_close_to_torch():
    x = rng.standard_normal((4, 3, 12, 12)).astype(np.float32)
    w = rng.standard_normal((8, 3, 3, 3)).astype(np.float32)
    y = F.conv2d(px.tensor(x), px.tensor(w), stride=2, padding=1)
    assert y.dtype == px.float32
    np.testing.assert_allclose(y.numpy(), TF.conv2d(torch.tensor(x), torch.tensor(w), stride=2,
                                                    padding=1).numpy(), rtol=1e-5, atol=1e-5)


# ---- finite differences, first and second order --------------------------------------------
def _inputs(*shapes):
    return [px.tensor(rng.standard_normal(s), requires_grad=True) for s in shapes]


def test_gradcheck_conv2d():
    x, w, b = _inputs((2, 4, 5, 4), (4, 2, 2, 3), (4,))
    assert gradcheck(lambda x, w, b: F.conv2d(x, w, b, (2, 1), 1, (1, 2), 2), (x, w, b))
    assert gradgradcheck(lambda x, w, b: F.conv2d(x, w, b, 1, 1, 1, 2), (x, w, b))


def test_gradcheck_conv_transpose2d():
    x, w, b = _inputs((1, 4, 3, 3), (4, 1, 3, 2), (2,))
    assert gradcheck(lambda x, w, b: F.conv_transpose2d(x, w, b, 2, 1, 1, 2), (x, w, b))
    assert gradgradcheck(lambda x, w: F.conv_transpose2d(x, w, None, 2, 0, 1, 2), (x, w))


def test_gradcheck_conv1d():
    x, w = _inputs((2, 2, 6), (3, 2, 3))
    assert gradcheck(lambda x, w: F.conv1d(x, w, None, 2, 1), (x, w))


# ---- errors ----------------------------------------------------------------------------------
def test_wrong_channel_count_names_expected_and_got():
    with pytest.raises(RuntimeError, match=r"to have 3 channels.*but got 4 channels"):
        F.conv2d(px.randn(1, 4, 5, 5), px.randn(2, 3, 3, 3))
    with pytest.raises(RuntimeError, match=r"to have 2 channels.*but got 3"):
        F.conv_transpose2d(px.randn(1, 3, 5, 5), px.randn(2, 3, 3, 3))


def test_bad_arguments():
    with pytest.raises(RuntimeError, match="expected a batched input"):
        F.conv2d(px.randn(5, 5), px.randn(2, 3, 3, 3))
    with pytest.raises(RuntimeError, match="smaller than the dilated kernel"):
        F.conv2d(px.randn(1, 3, 2, 2), px.randn(2, 3, 3, 3))
    with pytest.raises(ValueError, match="'same' is not supported for strided"):
        F.conv2d(px.randn(1, 3, 5, 5), px.randn(2, 3, 3, 3), stride=2, padding="same")
    with pytest.raises(RuntimeError, match="same dtype"):
        F.conv2d(px.randn(1, 3, 5, 5).double(), px.randn(2, 3, 3, 3))
    with pytest.raises(RuntimeError, match=r"bias of shape \[2\]"):
        F.conv2d(px.randn(1, 3, 5, 5), px.randn(2, 3, 3, 3), px.randn(3))
    with pytest.raises(ValueError, match="output_padding"):
        F.conv_transpose2d(px.randn(1, 3, 5, 5), px.randn(3, 2, 3, 3), stride=2,
                           output_padding=2)
    with pytest.raises(ValueError, match="divisible by groups"):
        nn.Conv2d(3, 4, 3, groups=2)


# ---- modules -----------------------------------------------------------------------------------
def _load_from_torch(ours, theirs):
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})


MODULES = [
    (lambda m: m.Conv2d(3, 6, 3, stride=2, padding=1, bias=True), (2, 3, 9, 9)),
    (lambda m: m.Conv2d(4, 4, (3, 2), padding="same", dilation=2, groups=2), (2, 4, 7, 6)),
    (lambda m: m.Conv2d(2, 3, 3, padding=1, padding_mode="reflect"), (2, 2, 6, 5)),
    (lambda m: m.Conv2d(2, 3, 3, padding=2, padding_mode="circular", bias=False), (1, 2, 6, 5)),
    (lambda m: m.Conv2d(2, 3, 4, padding="same", padding_mode="replicate"), (1, 2, 6, 5)),
    (lambda m: m.Conv1d(3, 4, 3, stride=2, padding=1), (2, 3, 10)),
    (lambda m: m.ConvTranspose2d(4, 2, 3, stride=2, padding=1, output_padding=1), (2, 4, 5, 5)),
    (lambda m: m.ConvTranspose1d(4, 2, 3, stride=2), (2, 4, 5)),
]


@pytest.mark.parametrize("build,shape", MODULES)
def test_module_matches_torch(build, shape):
    torch.manual_seed(0)
    theirs = build(torch.nn).double()
    ours = build(nn).double()
    assert [(k, tuple(v.shape)) for k, v in ours.state_dict().items()] == \
        [(k, tuple(v.shape)) for k, v in theirs.state_dict().items()]
    _load_from_torch(ours, theirs)
    x = rng.standard_normal(shape)
    xp_, xt = px.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    y, yt = ours(xp_), theirs(xt)
    np.testing.assert_allclose(y.detach().numpy(), yt.detach().numpy(), atol=1e-10)
    y.square().sum().backward()
    yt.square().sum().backward()
    np.testing.assert_allclose(xp_.grad.numpy(), xt.grad.numpy(), atol=1e-9)
    for (name, p), pt in zip(ours.named_parameters(), theirs.parameters()):
        np.testing.assert_allclose(p.grad.numpy(), pt.grad.numpy(), atol=1e-9, err_msg=name)


def test_conv_transpose_output_size():
    m, mt = nn.ConvTranspose2d(3, 2, 3, stride=2, padding=1), torch.nn.ConvTranspose2d(
        3, 2, 3, stride=2, padding=1)
    _load_from_torch(m, mt)
    x = rng.standard_normal((1, 3, 4, 4)).astype(np.float32)
    y = m(px.tensor(x), output_size=(8, 8))
    assert tuple(y.shape) == (1, 2, 8, 8)
    np.testing.assert_allclose(y.detach().numpy(), mt(torch.tensor(x), output_size=(8, 8))
                               .detach().numpy(), atol=1e-5)
    with pytest.raises(ValueError, match="valid sizes range from 7 to 8"):
        m(px.tensor(x), output_size=(10, 10))


@pytest.mark.parametrize("cls,args", [("Conv2d", (6, 8, 5)), ("Conv1d", (4, 6, 3)),
                                      ("ConvTranspose2d", (6, 4, 3))])
def test_default_init_matches_torch_distribution(cls, args):
    """kaiming_uniform(a=sqrt(5)) -> weights and bias in +-1/sqrt(fan_in)."""
    px.manual_seed(3)   # 4 biases all under half the bound happen 1 time in 16 otherwise
    m = getattr(nn, cls)(*args)
    fan_in = m.weight.shape[1] * math.prod(m.weight.shape[2:])
    bound = 1 / math.sqrt(fan_in)
    for p in (m.weight, m.bias):
        a = p.detach().numpy()
        assert np.abs(a).max() <= bound + 1e-7
        assert np.abs(a).max() > 0.5 * bound  # really uniform over the range, not zeros
    assert "kernel_size=" in repr(m)


# ---- every layout of the windows, and the whole-map window (DCGAN's first and last layers) ---------
# (N, C, H, W, out, kernel, stride, padding, dilation, groups), transposed or not
LAYOUT_CASES = [
    (False, (3, 4, 6, 5, 6, 3, 1, 1, 1, 2)),
    (False, (2, 3, 12, 11, 4, 3, 2, 1, 2, 1)),
    (False, (4, 5, 4, 4, 3, 4, 1, 0, 1, 1)),          # one window covers the map
    (True, (4, 5, 1, 1, 6, 4, 1, 0, 1, 1)),           # 1x1 latent -> 4x4
    (True, (3, 4, 4, 4, 2, 4, 2, 1, 1, 2)),
    (True, (2, 2, 9, 8, 3, 3, 2, 1, 2, 1)),
]


def _force(monkeypatch, layout, scatter):
    """Windows in `layout` whatever the channels and map; with `scatter`, conv^T never runs as
    a flipped convolution."""
    from phalanx.nn.functional import conv
    monkeypatch.setattr(conv.ConvGeometry, "channels_last",
                        property(lambda self: layout == "channels_last"))
    monkeypatch.setattr(conv.ConvGeometry, "batch_last",
                        property(lambda self: layout == "batch_last"))
    if scatter:
        monkeypatch.setattr(conv, "_flipped", lambda g, channels: None)


@pytest.mark.parametrize("scatter", [False, True])
@pytest.mark.parametrize("layout", ["channels_last", "batch_last", "batch_first"])
@pytest.mark.parametrize("transposed,case", LAYOUT_CASES)
def test_every_layout_matches_torch(transposed, case, layout, scatter, monkeypatch):
    """Each layout of the windows; conv^T as a flipped convolution where the geometry allows
    it, or always by scattering the windows back."""
    _force(monkeypatch, layout, scatter)
    n, c, h, w, o, k, s, p, d, g = case
    if transposed:
        _compare(lambda x, wt, b: F.conv_transpose2d(x, wt, b, s, p, 0, g, d),
                 lambda x, wt, b: TF.conv_transpose2d(x, wt, b, s, p, 0, g, d),
                 [(n, c, h, w), (c, o // g, k, k), (o,)])
    else:
        _compare(lambda x, wt, b: F.conv2d(x, wt, b, s, p, d, g),
                 lambda x, wt, b: TF.conv2d(x, wt, b, s, p, d, g),
                 [(n, c, h, w), (o, c // g, k, k), (o,)])


def test_small_map_second_derivatives():
    x, w = _inputs((3, 2, 1, 1), (2, 3, 3, 3))    # transposed conv from a 1x1 map
    assert gradgradcheck(lambda x, w: F.conv_transpose2d(x, w), (x, w))
    x, w = _inputs((3, 2, 3, 3), (4, 2, 3, 3))    # conv down to a 1x1 map
    assert gradgradcheck(lambda x, w: F.conv2d(x, w), (x, w))


def test_channels_last_layout_second_derivatives():
    """Eight channels per group take the channels-last rows without any patching."""
    x, w, b = _inputs((2, 16, 4, 3), (6, 8, 2, 3), (6,))
    from phalanx.nn.functional.conv import ConvGeometry
    g = ConvGeometry((2, 3), (1, 1), (1, 1, 1, 1), (1, 1), 2, (4, 3), (5, 3), 16)
    assert g.channels_last
    assert gradgradcheck(lambda x, w, b: F.conv2d(x, w, b, (2, 1), 1, (1, 2), 2), (x, w, b))
    y, wt = _inputs((2, 8, 3, 3), (8, 4, 3, 2))
    assert gradgradcheck(lambda y, w: F.conv_transpose2d(y, w, None, 2, 1, 1, 2), (y, wt))


def test_conv_transpose_strategy():
    """conv^T runs as a flipped convolution where that gathers no more than twice what a
    scatter adds: a stride-1 3x3 'same' convolution's input gradient, not a 1x1 latent's
    transposed convolution (all padding) nor any strided one."""
    from phalanx.nn.functional.conv import ConvGeometry, _flipped
    same = ConvGeometry((3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1, (8, 8), (8, 8), 16)
    assert _flipped(same, 16) == same
    assert _flipped(same, 64) is None                           # 4x the channels to gather
    latent = ConvGeometry((4, 4), (1, 1), (0, 0, 0, 0), (1, 1), 1, (4, 4), (1, 1), 512)
    assert _flipped(latent, 100) is None
    strided = ConvGeometry((3, 3), (2, 2), (1, 1, 1, 1), (1, 1), 1, (8, 8), (4, 4), 16)
    assert _flipped(strided, 16) is None


@pytest.mark.parametrize("scatter", [False, True])
@pytest.mark.parametrize("layout", ["channels_last", "batch_last", "batch_first"])
def test_every_layout_with_uneven_borders(layout, scatter, monkeypatch):
    """Borders wider at the bottom/right: a transposed convolution's output_padding and an even
    kernel's padding='same', in each layout and conv^T strategy."""
    _force(monkeypatch, layout, scatter)
    _compare(lambda x, wt, b: F.conv_transpose2d(x, wt, b, 2, 1, (1, 0), 2, 1),
             lambda x, wt, b: TF.conv_transpose2d(x, wt, b, 2, 1, (1, 0), 2, 1),
             [(2, 4, 3, 4), (4, 3, 3, 3), (6,)])
    _compare(lambda x, wt, b: F.conv_transpose2d(x, wt, b, 1, 0, 0, 1, (2, 1)),
             lambda x, wt, b: TF.conv_transpose2d(x, wt, b, 1, 0, 0, 1, (2, 1)),
             [(2, 3, 4, 3), (3, 5, 2, 3), (5,)])
    _compare(lambda x, wt, b: F.conv2d(x, wt, b, 1, "same", 1, 1),
             lambda x, wt, b: TF.conv2d(x, wt, b, 1, "same", 1, 1),
             [(2, 3, 5, 6), (4, 3, 4, 2), (4,)])
