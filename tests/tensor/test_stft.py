"""px.stft / px.istft (and the Tensor methods) against torch.stft / torch.istft: values and
gradients over the arguments' combinations, float64 finite differences, and PyTorch's errors."""
import warnings

import numpy as np
import pytest
import torch

import phalanx as px
from phalanx.autograd import gradcheck

RNG = np.random.default_rng(0)
SIGNAL = RNG.standard_normal((2, 100))


def _windows(length, kind):
    w = torch.hann_window(length, dtype=torch.float64) if kind == "hann" else None
    return w, (None if w is None else px.tensor(w.numpy()))


def _check(ours, theirs, x_ours, x_theirs):
    assert tuple(ours.shape) == tuple(theirs.shape)
    np.testing.assert_allclose(ours.detach().numpy(), theirs.detach().numpy(), atol=1e-12)
    (theirs.abs() ** 1.5).sum().backward()
    (ours.abs() ** 1.5).sum().backward()
    np.testing.assert_allclose(x_ours.grad.numpy(), x_theirs.grad.numpy(), atol=1e-10)


STFT_CASES = [
    dict(n_fft=16),
    dict(n_fft=16, hop_length=5, window="hann"),
    dict(n_fft=16, win_length=10, window="hann", center=False),
    dict(n_fft=15, pad_mode="constant", normalized=True, window="hann"),
    dict(n_fft=16, onesided=False),
    dict(n_fft=16, pad_mode="replicate", window="hann"),
    dict(n_fft=16, pad_mode="circular"),
]


@pytest.mark.parametrize("kw", STFT_CASES, ids=str)
@pytest.mark.parametrize("batched", [True, False], ids=["batched", "1d"])
def test_stft_matches_torch(kw, batched):
    kw = dict(kw)
    tw, pw = _windows(kw.get("win_length") or kw["n_fft"], kw.pop("window", None))
    a = SIGNAL if batched else SIGNAL[0]
    tx, x = torch.tensor(a, requires_grad=True), px.tensor(a, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")             # the rectangular-window warning
        theirs = torch.stft(tx, window=tw, return_complex=True, **kw)
        ours = px.stft(x, window=pw, return_complex=True, **kw)
    _check(ours, theirs, x, tx)


ISTFT_CASES = [
    dict(n_fft=16),
    dict(n_fft=16, hop_length=5, length=100),
    dict(n_fft=16, center=False, window="ones"),
    dict(n_fft=15, normalized=True, length=90),
    dict(n_fft=16, length=120),                         # longer than the frames: zero-padded
]


@pytest.mark.parametrize("kw", ISTFT_CASES, ids=str)
def test_istft_inverts_stft_and_matches_torch(kw):
    kw = dict(kw)
    ones = kw.pop("window", None) == "ones"
    tw = torch.ones(kw["n_fft"], dtype=torch.float64) if ones else \
        torch.hann_window(kw["n_fft"], dtype=torch.float64)
    pw = px.tensor(tw.numpy())
    framing = {k: v for k, v in kw.items() if k != "length"}
    spec = torch.stft(torch.tensor(SIGNAL), window=tw, return_complex=True, **framing).numpy()
    ts, s = torch.tensor(spec, requires_grad=True), px.tensor(spec, requires_grad=True)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        ours = px.istft(s, window=pw, **kw)
        theirs = torch.istft(ts, window=tw, **kw)
    padded = [str(w.message) for w in seen if "zero-padded" in str(w.message)]
    assert len(padded) == (kw.get("length", 0) > 100)   # as PyTorch warns it pads the tail
    _check(ours, theirs, s, ts)
    if kw.get("length", 100) <= 100:
        n = ours.shape[-1]
        np.testing.assert_allclose(ours.detach().numpy(), SIGNAL[:, :n], atol=1e-12)


@pytest.mark.parametrize("return_complex", [False, True])
def test_two_sided_istft_as_torch_also_off_a_real_signals_spectrum(return_complex):
    """A two-sided input that is not a real signal's: a real result reads only its first
    half (PyTorch's rule), a complex one all of it."""
    spec = RNG.standard_normal((2, 16, 20)) + 1j * RNG.standard_normal((2, 16, 20))
    tw = torch.hann_window(16, dtype=torch.float64)
    ts, s = torch.tensor(spec, requires_grad=True), px.tensor(spec, requires_grad=True)
    ours = px.istft(s, 16, window=px.tensor(tw.numpy()), onesided=False,
                    return_complex=return_complex)
    theirs = torch.istft(ts, 16, window=tw, onesided=False, return_complex=return_complex)
    assert ours.is_complex() == return_complex
    _check(ours, theirs, s, ts)


def test_tensor_methods_and_deprecated_real_form():
    x = px.tensor(SIGNAL[0])
    w = px.hann_window(16, dtype=px.float64)
    spec = x.stft(16, window=w, return_complex=True)
    with pytest.warns(UserWarning, match="return_complex=False is deprecated"):
        pairs = px.stft(x, 16, window=w, return_complex=False)
    np.testing.assert_array_equal(pairs.numpy(), px.view_as_real(spec).numpy())
    np.testing.assert_allclose(spec.istft(16, window=w, length=100).numpy(), SIGNAL[0],
                               atol=1e-12)


def test_finite_differences_in_float64():
    x = px.tensor(RNG.standard_normal(40), requires_grad=True)
    w = px.hann_window(8, dtype=px.float64)
    assert gradcheck(lambda t: px.view_as_real(px.stft(t, 8, 3, window=w,
                                                       return_complex=True)), (x,))
    parts = px.view_as_real(px.stft(x.detach(), 8, 2, window=w, return_complex=True))
    parts = parts.detach().requires_grad_(True)       # gradcheck perturbs real numbers
    assert gradcheck(lambda p: px.istft(px.view_as_complex(p), 8, 2, window=w), (parts,))


def test_errors_as_torch():
    x = px.randn(100)
    with pytest.raises(RuntimeError, match="return_complex parameter be given"):
        px.stft(x, 16)
    with pytest.raises(RuntimeError, match="win_length"):
        px.stft(x, 16, win_length=20, return_complex=True)
    with pytest.raises(RuntimeError, match="window tensor of size equal to win_length=16"):
        px.stft(x, 16, window=px.ones(10), return_complex=True)
    with pytest.raises(RuntimeError, match="n_fft"):
        px.stft(x, 300, window=px.ones(300), center=False, return_complex=True)
    with pytest.raises(RuntimeError, match="reflect padding"):     # as PyTorch's pad refuses
        px.stft(x, 300, window=px.ones(300), return_complex=True)
    with pytest.warns(UserWarning, match="rectangular"):
        px.stft(x, 16, return_complex=True)
    with pytest.raises(NotImplementedError, match="align_to_window"):
        px.stft(x, 16, window=px.ones(16), return_complex=True, align_to_window=True)
    spec = px.stft(x, 16, window=px.hann_window(16), return_complex=True)
    with pytest.raises(RuntimeError, match="complex-valued input"):
        px.istft(spec.real, 16)
    with pytest.raises(RuntimeError, match="n_fft // 2 \\+ 1 = 5"):
        px.istft(spec, 8, window=px.hann_window(8), onesided=True)
    with pytest.raises(RuntimeError, match="overlap add min"):
        px.istft(spec, 16, hop_length=4, win_length=10, window=px.hann_window(10),
                 center=False)
    with pytest.raises(RuntimeError, match="cannot have onesided output"):
        px.istft(spec, 16, window=px.hann_window(16), return_complex=True)
