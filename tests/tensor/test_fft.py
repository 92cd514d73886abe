"""phalanx.fft against torch.fft: values, dtypes and gradients (PyTorch's complex convention)
for every transform with n/s, dim and norm; frequencies, shifts, errors; and a float64
finite-difference check of a real loss through rfft -> irfft."""
import numpy as np
import pytest
import torch

import phalanx as px
import phalanx.fft  # noqa: F401  (the module imports as torch.fft does)

NORMS = [None, "backward", "ortho", "forward"]


def _leaf(values, lib):
    return (px if lib == "px" else torch).tensor(values, requires_grad=True)


def _real_loss(out, weights, lib):
    """A real loss touching every output element (real and imaginary parts apart)."""
    wr, wi = weights
    if out.is_complex():
        return (out.real * wr).sum() + (out.imag * wi).sum()
    return (out * wr).sum()


def _compare(op, values, rng, rtol=1e-10, atol=1e-10, **kwargs):
    """Run `op` in both libraries on float64/complex128 `values`; compare output and grad."""
    x_px, x_th = _leaf(values, "px"), _leaf(values, "torch")
    y_px = getattr(px.fft, op)(x_px, **kwargs)
    y_th = getattr(torch.fft, op)(x_th, **kwargs)
    assert tuple(y_px.shape) == tuple(y_th.shape)
    assert y_px.dtype.name == str(y_th.dtype).split(".")[-1]
    np.testing.assert_allclose(y_px.detach().numpy(), y_th.detach().resolve_conj().numpy(),
                               rtol=rtol, atol=atol)
    w = (rng.standard_normal(y_th.shape), rng.standard_normal(y_th.shape))
    _real_loss(y_px, [px.tensor(a) for a in w], "px").backward()
    _real_loss(y_th, [torch.tensor(a) for a in w], "torch").backward()
    assert x_px.grad.dtype.name == str(x_th.grad.dtype).split(".")[-1]
    np.testing.assert_allclose(x_px.grad.numpy(), x_th.grad.resolve_conj().numpy(),
                               rtol=rtol, atol=atol)


def _complex(rng, shape):
    return rng.standard_normal(shape) + 1j * rng.standard_normal(shape)


# ---- one-dimensional --------------------------------------------------------------------------
@pytest.mark.parametrize("op", ["fft", "ifft"])
@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("n", [None, 3, 8])
@pytest.mark.parametrize("real_input", [False, True])
def test_c2c_1d(op, norm, n, real_input):
    rng = np.random.default_rng(0)
    values = rng.standard_normal((3, 5)) if real_input else _complex(rng, (3, 5))
    _compare(op, values, rng, n=n, norm=norm)
    _compare(op, values, rng, n=n, dim=0, norm=norm)


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("n", [None, 4, 5, 9])
def test_rfft(norm, n):
    rng = np.random.default_rng(1)
    _compare("rfft", rng.standard_normal((2, 7)), rng, n=n, norm=norm)
    _compare("rfft", rng.standard_normal((6, 3)), rng, n=n, dim=0, norm=norm)


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("n", [None, 1, 4, 7, 12])
def test_irfft_gradient_counts_mirrored_bins_twice(norm, n):
    # the gradient of the bins that stand for their mirror images is doubled (PyTorch's rule)
    rng = np.random.default_rng(2)
    _compare("irfft", _complex(rng, (2, 5)), rng, n=n, norm=norm)
    _compare("irfft", _complex(rng, (4, 3)), rng, n=n, dim=0, norm=norm)


@pytest.mark.parametrize("op", ["hfft", "ihfft"])
@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("n", [None, 6, 7])
def test_hermitian_transforms(op, norm, n):
    rng = np.random.default_rng(3)
    values = _complex(rng, (2, 5)) if op == "hfft" else rng.standard_normal((2, 5))
    _compare(op, values, rng, n=n, norm=norm)


# ---- two- and n-dimensional -------------------------------------------------------------------
@pytest.mark.parametrize("op", ["fft2", "ifft2", "fftn", "ifftn"])
@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("s,dim", [(None, None), ((3, 6), None), ((5, -1), (0, 2)),
                                   (None, (2, 0))])
def test_c2c_nd(op, norm, s, dim):
    rng = np.random.default_rng(4)
    kwargs = {"s": s, "norm": norm}
    if dim is not None:
        kwargs["dim"] = dim
    _compare(op, _complex(rng, (4, 3, 5)), rng, **kwargs)


@pytest.mark.parametrize("op", ["rfft2", "rfftn"])
@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("s,dim", [(None, None), ((3, 6), None), ((5, 4), (2, 0)),
                                   (None, (1, 2))])
def test_rfft_nd(op, norm, s, dim):
    rng = np.random.default_rng(5)
    kwargs = {"s": s, "norm": norm}
    if dim is not None:
        kwargs["dim"] = dim
    _compare(op, rng.standard_normal((4, 3, 5)), rng, **kwargs)


@pytest.mark.parametrize("op", ["irfft2", "irfftn"])
@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("s,dim", [(None, None), ((3, 6), None), ((5, 7), (2, 0)),
                                   (None, (1, 2)), ((4, -1), None)])
def test_irfft_nd(op, norm, s, dim):
    rng = np.random.default_rng(6)
    kwargs = {"s": s, "norm": norm}
    if dim is not None:
        kwargs["dim"] = dim
    _compare(op, _complex(rng, (4, 3, 5)), rng, **kwargs)


def test_float32_gives_complex64_and_integers_the_default_dtype():
    x = np.arange(8, dtype=np.float32)
    for op in ("fft", "rfft"):
        y, t = getattr(px.fft, op)(px.tensor(x)), getattr(torch.fft, op)(torch.tensor(x))
        assert y.dtype == px.complex64 and t.dtype == torch.complex64
        np.testing.assert_allclose(y.numpy(), t.numpy(), rtol=1e-5, atol=1e-5)
    y = px.fft.irfft(px.fft.rfft(px.tensor(x)))
    assert y.dtype == px.float32
    assert px.fft.fft(px.arange(4)).dtype == px.complex64 == px.fft.rfft(px.arange(4)).dtype


# ---- frequencies, shifts ----------------------------------------------------------------------
@pytest.mark.parametrize("n", [1, 2, 5, 8])
@pytest.mark.parametrize("d", [1.0, 0.1])
def test_frequencies(n, d):
    for name in ("fftfreq", "rfftfreq"):
        for dt, tdt in ((None, None), (px.float64, torch.float64)):
            a = getattr(px.fft, name)(n, d, dtype=dt)
            b = getattr(torch.fft, name)(n, d, dtype=tdt)
            assert a.dtype.name == str(b.dtype).split(".")[-1]
            np.testing.assert_array_equal(a.numpy(), b.numpy())


@pytest.mark.parametrize("shape,dim", [((5,), None), ((4, 5), None), ((4, 5), 1),
                                       ((3, 4, 5), (0, 2))])
def test_shifts_and_their_gradients(shape, dim):
    rng = np.random.default_rng(7)
    values = rng.standard_normal(shape)
    for name in ("fftshift", "ifftshift"):
        x_px, x_th = _leaf(values, "px"), _leaf(values, "torch")
        y_px = getattr(px.fft, name)(x_px, dim=dim)
        y_th = getattr(torch.fft, name)(x_th, dim=dim)
        np.testing.assert_array_equal(y_px.detach().numpy(), y_th.detach().numpy())
        w = rng.standard_normal(shape)
        (y_px * px.tensor(w)).sum().backward()
        (y_th * torch.tensor(w)).sum().backward()
        np.testing.assert_array_equal(x_px.grad.numpy(), x_th.grad.numpy())
    back = px.fft.ifftshift(px.fft.fftshift(px.tensor(values), dim=dim), dim=dim)
    np.testing.assert_array_equal(back.numpy(), values)


# ---- numerical checks -------------------------------------------------------------------------
def test_rfft_irfft_real_loss_matches_finite_differences():
    rng = np.random.default_rng(8)
    x = px.tensor(rng.standard_normal((3, 7)), requires_grad=True)
    filt = px.tensor(_complex(rng, (3, 4)))  # a complex filter on the half spectrum

    def loss(x):
        spec = px.fft.rfft(x, n=7, norm="ortho") * filt
        y = px.fft.irfft(spec, n=7)
        return (y * y).sum() + (spec.abs() ** 2).mean()
    assert px.autograd.gradcheck(loss, (x,), eps=1e-6, atol=1e-6, rtol=1e-5)


def test_second_order_through_fft():
    # each transform's backward is another transform, so create_graph works
    rng = np.random.default_rng(9)
    values = rng.standard_normal(6)
    grads = []
    for lib in (px, torch):
        x = lib.tensor(values, requires_grad=True)
        y = lib.fft.irfft(lib.fft.rfft(x) ** 2, n=6)
        (g,) = (px.autograd.grad if lib is px else torch.autograd.grad)(
            (y * y).sum(), x, create_graph=True)
        (g * g).sum().backward()
        grads.append(np.asarray(x.grad.detach()))
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-9, atol=1e-9)


# ---- errors -----------------------------------------------------------------------------------
def test_errors_name_the_problem():
    z = px.tensor([1 + 1j, 2, 3, 4])
    with pytest.raises(RuntimeError, match="real input"):
        px.fft.rfft(z)
    with pytest.raises(ValueError, match="Invalid normalization mode"):
        px.fft.fft(z, norm="unitary")
    with pytest.raises(RuntimeError, match="unique"):
        px.fft.fft2(px.ones(3, 3), dim=(0, 0))
    with pytest.raises(RuntimeError, match="same length"):
        px.fft.fftn(px.ones(3, 3), s=(2,), dim=(0, 1))
    with pytest.raises(RuntimeError, match="Invalid number of data points"):
        px.fft.fft(z, n=0)
    with pytest.raises(NotImplementedError, match="out="):
        px.fft.fft(z, out=px.zeros(4, dtype=px.complex64))
    with pytest.raises(IndexError, match="no dimensions"):
        px.fft.fft(px.tensor(1.0))
    with pytest.raises(NotImplementedError, match="float16"):
        px.fft.fft(px.ones(4, dtype=px.float16))
