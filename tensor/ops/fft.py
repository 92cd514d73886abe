"""Discrete Fourier transforms (`phalanx.fft`), through `xp.fft` (NumPy's or CuPy's).

Three Functions carry every transform; each one's backward is another of them, so double
backward is free. With F the unnormalised DFT over `dims`, and the norm mode's scale folded in:

    Function  forward                          backward (g: gradient of the output)
    FftC2C    fftn / ifftn of a complex x      the other direction, dual norm: F^H g
    FftR2C    rfftn of a real x (half of F x)  Re(ifftn(g zero-padded to the full size))
    FftC2R    irfftn of a half spectrum        rfftn(g), the mirrored bins counted twice

The dual norm swaps "backward" and "forward" ("ortho" stays): the adjoint of fft with one
scale is the unscaled-opposite transform with the same scale. Gradients follow PyTorch's
complex convention (tensor/ops/complex.py). `n`/`s` crop or zero-pad the input first, with
differentiable ops, as PyTorch does.
"""
from ...autograd import Function
from .. import dtypes
from ..backend import array_module
from ..tensor import Tensor
from ..creation import arange
from ._util import make, normalize_dim
from .complex import Real
from .shape import cat, roll

_NORMS = ("backward", "ortho", "forward")
_DUAL = {"backward": "forward", "forward": "backward", "ortho": "ortho"}


class FftC2C(Function):
    @staticmethod
    def forward(ctx, x, dims, norm, forward):
        d = x._data
        xp = array_module(d)
        transform = xp.fft.fftn if forward else xp.fft.ifftn
        ctx.dims, ctx.norm, ctx.direction = dims, norm, forward
        return make(transform(d, axes=dims, norm=norm).astype(d.dtype, copy=False))

    @staticmethod
    def backward(ctx, g):
        return FftC2C.apply(g, ctx.dims, _DUAL[ctx.norm], not ctx.direction), None, None, None


class FftR2C(Function):
    """The one-sided transform: the last of `dims` keeps n // 2 + 1 bins."""

    @staticmethod
    def forward(ctx, x, dims, norm):
        d = x._data
        xp = array_module(d)
        ctx.dims, ctx.norm, ctx.n_last = dims, norm, d.shape[dims[-1]]
        out = xp.fft.rfftn(d, axes=dims, norm=norm)
        return make(out.astype(dtypes.complex_np(d.dtype), copy=False))

    @staticmethod
    def backward(ctx, g):
        last = ctx.dims[-1]
        full = _zero_pad(g, last, ctx.n_last)  # the discarded half had no effect on the loss
        return Real.apply(FftC2C.apply(full, ctx.dims, _DUAL[ctx.norm], False)), None, None


class FftC2R(Function):
    """The inverse of FftR2C: a half spectrum (last of `dims`) to a real signal of n_last."""

    @staticmethod
    def forward(ctx, x, dims, norm, n_last):
        d = x._data
        xp = array_module(d)
        ctx.dims, ctx.norm, ctx.n_last = dims, norm, n_last
        sizes = [d.shape[a] for a in dims[:-1]] + [n_last]
        out = xp.fft.irfftn(d, s=sizes, axes=dims, norm=norm)
        return make(out.astype(d.real.dtype, copy=False))

    @staticmethod
    def backward(ctx, g):
        dims, last = ctx.dims, ctx.dims[-1]
        half = FftR2C.apply(g, dims, _DUAL[ctx.norm])
        # bins 1 .. n - (n // 2 + 1) stand for themselves and their mirror images: twice
        n_half = half._data.shape[last]
        doubled = ctx.n_last - n_half
        if doubled <= 0:
            return half, None, None, None
        xp = array_module(half._data)
        w = xp.ones(n_half, dtype=g._data.dtype)
        w[1:1 + doubled] = 2
        w = w.reshape((n_half,) + (1,) * (g.ndim - 1 - last))
        return half * make(w), None, None, None


# ---- argument handling ----------------------------------------------------------------------
def _check_norm(norm):
    if norm is None:
        return "backward"
    if norm not in _NORMS:
        raise ValueError(f"Invalid normalization mode: {norm!r}; expected None, 'backward', "
                         f"'ortho' or 'forward'")
    return norm


def _check_out(out, name):
    if out is not None:
        raise NotImplementedError(f"fft.{name}: out= is not supported; assign the result "
                                  f"instead (y = fft.{name}(x))")


def _floating(x, name):
    """x as a floating tensor for a real-input transform (integers -> default dtype)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"fft.{name}: expected a Tensor as input, got {type(x).__name__}")
    dt = x._data.dtype
    if dt.kind == "c":
        raise RuntimeError(f"fft.{name} expects a real input tensor, but got {x.dtype}; "
                           f"use fft.{name[1:] if name.startswith('r') else 'fft'} for "
                           f"complex input, or pass x.real")
    if dt.kind in "biu":
        return x.to(dtypes.get_default_dtype())
    _complex_of(dt)  # float16/bfloat16: a clear error
    return x


def _complex_of(dt):
    if dt == dtypes.BF16_NP or dt.kind == "f" and dt.itemsize < 4:
        raise NotImplementedError(f"fft of {dt} tensors is not supported (PyTorch needs a GPU "
                                  f"for half precision transforms); convert with x.float()")
    return dtypes.complex_np(dt)


def _as_complex(x, name):
    """x as a complex tensor for a complex-to-complex transform (real inputs are promoted;
    their gradient then keeps the real part)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"fft.{name}: expected a Tensor as input, got {type(x).__name__}")
    dt = x._data.dtype
    if dt.kind == "c":
        return x
    if dt.kind in "biu":
        x = x.to(dtypes.get_default_dtype())
        dt = x._data.dtype
    return x.to(dtypes.from_numpy_dtype(_complex_of(dt)))


def _dims_and_sizes(x, s, dim, name, default_all=True):
    """Normalised (dims, sizes) as PyTorch's fftn: dims default to the last len(s) dims, or
    to every dim; a size of -1 keeps that dim's length."""
    ndim = x.ndim
    if dim is not None:
        dims = [dim] if isinstance(dim, int) else list(dim)
        if dims and ndim == 0:
            raise IndexError(f"fft.{name}: Dimension specified as {dims[0]} but tensor has no "
                             f"dimensions; transform a 1-D tensor (x.reshape(1))")
        dims = [normalize_dim(d, ndim) for d in dims]
        if len(set(dims)) != len(dims):
            raise RuntimeError(f"fft.{name}: FFT dims must be unique, got {tuple(dim)}")
        if s is not None and len(s) != len(dims):
            raise RuntimeError(f"fft.{name}: When given, dim and shape arguments must have "
                               f"the same length (s={tuple(s)}, dim={tuple(dim)})")
    elif s is not None:
        if len(s) > ndim:
            raise RuntimeError(f"fft.{name}: Got shape with {len(s)} values but input tensor "
                               f"only has {ndim} dimensions")
        dims = list(range(ndim - len(s), ndim))
    else:
        dims = list(range(ndim)) if default_all else []
    if s is None:
        sizes = [x.shape[d] for d in dims]
    else:
        sizes = [x.shape[d] if n == -1 else int(n) for n, d in zip(s, dims)]
    for n in sizes:
        if n < 1:
            raise RuntimeError(f"fft.{name}: Invalid number of data points ({n}) specified; "
                               f"each must be at least 1")
    return tuple(dims), sizes


def _zero_pad(x, dim, n):
    """x cropped or zero-padded to length n along dim (differentiable either way)."""
    size = x._data.shape[dim]
    if size == n:
        return x
    if size > n:
        return x.narrow(dim, 0, n)
    pad_shape = list(x._data.shape)
    pad_shape[dim] = n - size
    return cat([x, x.new_zeros(pad_shape)], dim)


def _resize(x, dims, sizes):
    for d, n in zip(dims, sizes):
        x = _zero_pad(x, d, n)
    return x


def _one_dim(n, dim):
    return (None if n is None else [n]), dim


# ---- complex-to-complex ---------------------------------------------------------------------
def _c2c(name, input, s, dim, norm, forward, out, default_all=True):
    _check_out(out, name)
    norm = _check_norm(norm)
    x = _as_complex(input, name)
    dims, sizes = _dims_and_sizes(x, s, dim, name, default_all)
    x = _resize(x, dims, sizes)
    if not dims:
        return x.clone() if x is input else x
    return FftC2C.apply(x, dims, norm, forward)


def fft(input, n=None, dim=-1, norm=None, *, out=None):
    """One-dimensional discrete Fourier transform along `dim` (n: crop or zero-pad first)."""
    return _c2c("fft", input, *_one_dim(n, dim), norm, True, out)


def ifft(input, n=None, dim=-1, norm=None, *, out=None):
    return _c2c("ifft", input, *_one_dim(n, dim), norm, False, out)


def fft2(input, s=None, dim=(-2, -1), norm=None, *, out=None):
    return _c2c("fft2", input, s, dim, norm, True, out)


def ifft2(input, s=None, dim=(-2, -1), norm=None, *, out=None):
    return _c2c("ifft2", input, s, dim, norm, False, out)


def fftn(input, s=None, dim=None, norm=None, *, out=None):
    return _c2c("fftn", input, s, dim, norm, True, out)


def ifftn(input, s=None, dim=None, norm=None, *, out=None):
    return _c2c("ifftn", input, s, dim, norm, False, out)


# ---- real-to-complex and back ---------------------------------------------------------------
def _r2c(name, input, s, dim, norm, out):
    _check_out(out, name)
    norm = _check_norm(norm)
    x = _floating(input, name)
    dims, sizes = _dims_and_sizes(x, s, dim, name)
    if not dims:
        raise RuntimeError(f"fft.{name} must transform at least one axis")
    return FftR2C.apply(_resize(x, dims, sizes), dims, norm)


def _c2r(name, input, s, dim, norm, out):
    """The last dim gets s[-1] points (default 2 * (m - 1) for m input bins); the input is
    first cropped or zero-padded to s[-1] // 2 + 1 bins there, and to s elsewhere."""
    _check_out(out, name)
    norm = _check_norm(norm)
    x = _as_complex(input, name)
    dims, sizes = _dims_and_sizes(x, s, dim, name)
    if not dims:
        raise RuntimeError(f"fft.{name} must transform at least one axis")
    last = dims[-1]
    if s is None or s[-1] == -1:
        n_last = 2 * (x.shape[last] - 1)
        if n_last < 1:
            raise RuntimeError(f"fft.{name}: Invalid number of data points ({n_last}) "
                               f"specified: an input of {x.shape[last]} bin(s) along dim "
                               f"{last} needs n= to be given")
    else:
        n_last = sizes[-1]
    sizes[-1] = n_last // 2 + 1
    return FftC2R.apply(_resize(x, dims, sizes), dims, norm, n_last)


def rfft(input, n=None, dim=-1, norm=None, *, out=None):
    """The n // 2 + 1 non-negative frequency bins of a real signal's transform along `dim`."""
    return _r2c("rfft", input, *_one_dim(n, dim), norm, out)


def irfft(input, n=None, dim=-1, norm=None, *, out=None):
    """The real signal (n points, default 2 * (bins - 1)) whose rfft is `input`."""
    return _c2r("irfft", input, *_one_dim(n, dim), norm, out)


def rfft2(input, s=None, dim=(-2, -1), norm=None, *, out=None):
    return _r2c("rfft2", input, s, dim, norm, out)


def irfft2(input, s=None, dim=(-2, -1), norm=None, *, out=None):
    return _c2r("irfft2", input, s, dim, norm, out)


def rfftn(input, s=None, dim=None, norm=None, *, out=None):
    return _r2c("rfftn", input, s, dim, norm, out)


def irfftn(input, s=None, dim=None, norm=None, *, out=None):
    return _c2r("irfftn", input, s, dim, norm, out)


def hfft(input, n=None, dim=-1, norm=None, *, out=None):
    """The real spectrum of a Hermitian-symmetric signal given by its first half: the
    transform of irfft's, with the dual scale (as NumPy's and PyTorch's hfft)."""
    _check_out(out, "hfft")
    return irfft(_as_complex(input, "hfft").conj(), n, dim, _DUAL[_check_norm(norm)])


def ihfft(input, n=None, dim=-1, norm=None, *, out=None):
    """The inverse of hfft: the one-sided, conjugated transform of a real signal."""
    _check_out(out, "ihfft")
    return rfft(input, n, dim, _DUAL[_check_norm(norm)]).conj()


# ---- frequencies and shifts -----------------------------------------------------------------
def fftfreq(n, d=1.0, *, dtype=None, layout=None, device=None, requires_grad=False):
    """Sample frequencies [0, 1, ..., n//2 - 1 (or (n-1)//2), -n//2 ..., -1] / (d * n)."""
    _check_layout(layout, "fftfreq")
    k = arange(n, dtype=dtypes.int64, device=device)
    k = (k + n // 2) % n - n // 2  # the upper half wraps to negative frequencies
    return _frequencies(k, n, d, dtype, requires_grad)


def rfftfreq(n, d=1.0, *, dtype=None, layout=None, device=None, requires_grad=False):
    """Sample frequencies of rfft: [0, 1, ..., n // 2] / (d * n)."""
    _check_layout(layout, "rfftfreq")
    return _frequencies(arange(n // 2 + 1, dtype=dtypes.int64, device=device), n, d, dtype,
                        requires_grad)


def _check_layout(layout, name):
    if layout is not None and str(layout) not in ("torch.strided", "phalanx.strided",
                                                  "strided"):
        raise NotImplementedError(f"fft.{name}: layout={layout} is not supported (only "
                                  f"strided tensors)")


def _frequencies(k, n, d, dtype, requires_grad):
    np_dtype = dtypes.to_numpy_dtype(dtypes.get_default_dtype() if dtype is None else dtype)
    # k times 1 / (d n) in the result dtype, as PyTorch computes it (not k / (d n))
    return make(k._data.astype(np_dtype) * np_dtype.type(1.0 / (n * d)), requires_grad)


def _shift_dims(input, dim):
    if dim is None:
        return tuple(range(input.ndim))
    return (dim,) if isinstance(dim, int) else tuple(dim)


def fftshift(input, dim=None):
    """Moves the zero frequency to the centre: a roll by n // 2 along each dim."""
    dims = _shift_dims(input, dim)
    return roll(input, [input.shape[d] // 2 for d in dims], dims)


def ifftshift(input, dim=None):
    """The inverse of fftshift: a roll by -(n // 2)."""
    dims = _shift_dims(input, dim)
    return roll(input, [-(input.shape[d] // 2) for d in dims], dims)


__all__ = ["fft", "ifft", "fft2", "ifft2", "fftn", "ifftn", "rfft", "irfft", "rfft2", "irfft2",
           "rfftn", "irfftn", "hfft", "ihfft", "fftfreq", "rfftfreq", "fftshift", "ifftshift"]