"""Complex numbers: building and taking apart complex tensors, and the gradient convention.

Gradients follow PyTorch ("Autograd for Complex Numbers"): for a real loss L of z = x + iy,
`z.grad` is dL/dx + i dL/dy (twice the conjugate Wirtinger derivative), so that a gradient
descent step `z -= lr * z.grad` lowers L; `(z.abs() ** 2).sum()` has gradient `2 * z`. A
holomorphic f then passes back `g * conj(f'(z))`, and an op that mixed a real input into a
complex result hands that input only the real part of its gradient.

    Function      forward                    backward (g: gradient of the output)
    Real          x.real (shares memory)     g as complex
    Imag          x.imag (shares memory)     i * g
    Conj          conj(x)                    conj(g)
    Complex       re + i * im                (Re g, Im g)
    ViewAsReal    (..., 2) view of parts     view_as_complex(g)
    ViewAsComplex complex view of (..., 2)   view_as_real(g)
    ComplexAbs    |z|                        g * z / |z|   (0 at z = 0)
    ComplexAngle  atan2(Im z, Re z)          g * i z / |z|^2   (0 at z = 0)
    Sgn           z / |z|   (0 at z = 0)     (g - Re(g conj(s)) s) / |z|   (0 at z = 0)

Real, Imag and the two views share memory with their input and are views in the engine's
sense too: an in-place op on one under autograd rebuilds the input (see `_view`).

`conj_grad`, `real_operands` and `keep_real` are what the real op families (elementwise,
matmul, conversion) use to follow the convention; each costs real tensors one dtype test.
"""
import builtins

import numpy as np

from ...autograd import Function
from .. import dtypes
from ..backend import array_module
from ..tensor import Tensor
from ._util import make


# ---- helpers for the real op families -------------------------------------------------------
def conj_grad(v):
    """conj(v) for a complex tensor or Python/NumPy complex number; v itself otherwise."""
    if isinstance(v, Tensor):
        return Conj.apply(v) if v._data.dtype.kind == "c" else v
    if isinstance(v, builtins.complex) or getattr(v, "dtype", None) is not None and \
            v.dtype.kind == "c":
        return v.conjugate()
    return v


def real_operands(*operands):
    """Forward side, for ops whose result is complex: for each operand, whether it is a real
    tensor (its gradient must then drop the imaginary part)."""
    return tuple(isinstance(o, Tensor) and o._data.dtype.kind != "c" for o in operands)


def keep_real(grad, is_real):
    """The gradient of a real input: the real part of a complex `grad` (as PyTorch does)."""
    if grad is not None and is_real and grad._data.dtype.kind == "c":
        return Real.apply(grad)
    return grad


def reject_complex(name, *tensors):
    """PyTorch's refusal of ops that need an ordering (comparisons, max, relu, clamp...)."""
    for t in tensors:
        if isinstance(t, Tensor) and t._data.dtype.kind == "c":
            raise NotImplementedError(f"{name} is not supported for complex tensors (got "
                                      f"{t.dtype}, shape {tuple(t.shape)}): complex numbers "
                                      f"have no order; apply it to their magnitudes (z.abs()) "
                                      f"or real parts (z.real)")


# ---- Functions ------------------------------------------------------------------------------
def _view(out, base, rebuild):
    """Make `out` (whose array views base's) a view of `base`: they share the version counter,
    and an in-place op on `out` under autograd gives `base` the new value rebuild(base, new)
    (see _rebase in tensor/methods.py), as writes through PyTorch's views do."""
    out._version = base._version
    out._view = (base, "rebuild", rebuild)
    return out


def _with_real(base, new):
    return Complex.apply(new, Imag.apply(base))


def _with_imag(base, new):
    return Complex.apply(Real.apply(base), new)


def _from_pairs(base, new):
    return ViewAsComplex.apply(new.contiguous())


def _to_pairs(base, new):
    return ViewAsReal.apply(new)


class Real(Function):
    @staticmethod
    def forward(ctx, x):
        return _view(make(x._data.real), x, _with_real)

    @staticmethod
    def backward(ctx, g):
        return Complex.apply(g, None)


class Imag(Function):
    @staticmethod
    def forward(ctx, x):
        d = x._data
        if d.dtype.kind != "c":
            raise RuntimeError(f"imag is not implemented for tensors with non-complex dtypes "
                               f"(got {x.dtype}); a real tensor's imaginary part is zero: use "
                               f"zeros_like(x)")
        return _view(make(d.imag), x, _with_imag)

    @staticmethod
    def backward(ctx, g):
        return Complex.apply(None, g)


class Conj(Function):
    @staticmethod
    def forward(ctx, x):
        d = x._data
        return make(array_module(d).conj(d))

    @staticmethod
    def backward(ctx, g):
        return Conj.apply(g)


class Complex(Function):
    """re + i * im from two real tensors of one floating dtype (either may be None inside
    backward formulas, meaning zero)."""

    @staticmethod
    def forward(ctx, re, im):
        ref = re if re is not None else im
        d = ref._data
        if re is not None and im is not None:
            _check_parts(re, im)
        xp = array_module(d)
        out = xp.empty(d.shape if re is None or im is None else
                       np.broadcast_shapes(re._data.shape, im._data.shape),  # shapes only
                       dtypes.complex_np(d.dtype))
        out.real = 0 if re is None else re._data
        out.imag = 0 if im is None else im._data
        ctx.shapes = (None if re is None else re._data.shape,
                      None if im is None else im._data.shape)
        return make(out)

    @staticmethod
    def backward(ctx, g):
        from ._util import unbroadcast
        nre, nim = ctx.needs_input_grad
        sre, sim = ctx.shapes
        return (unbroadcast(Real.apply(g), sre) if nre else None,
                unbroadcast(Imag.apply(g), sim) if nim else None)


def _check_parts(re, im):
    a, b = re._data.dtype, im._data.dtype
    if a != b or a.kind != "f" or a == dtypes.BF16_NP:
        raise RuntimeError(f"complex: expected both inputs to be float32 or float64 tensors of "
                           f"the same dtype, but got real {re.dtype} and imag {im.dtype}; "
                           f"convert them first, e.g. real.float(), imag.float()")


class ViewAsReal(Function):
    @staticmethod
    def forward(ctx, x):
        d = x._data
        if d.dtype.kind != "c":
            raise RuntimeError(f"view_as_real is only supported for complex tensors, got "
                               f"{x.dtype}")
        xp = array_module(d)
        part = d.real  # same strides as d, in the real dtype: add an axis over (re, im)
        pairs = xp.lib.stride_tricks.as_strided(part, d.shape + (2,), d.strides + (part.itemsize,))
        return _view(make(pairs), x, _from_pairs)

    @staticmethod
    def backward(ctx, g):
        return ViewAsComplex.apply(g.contiguous())


class ViewAsComplex(Function):
    @staticmethod
    def forward(ctx, x):
        d = x._data
        if d.dtype not in (dtypes.float32.np, dtypes.float64.np):
            raise RuntimeError(f"view_as_complex is only supported for float32 and float64 "
                               f"tensors, but got a tensor of dtype {x.dtype}")
        if d.ndim == 0 or d.shape[-1] != 2:
            raise RuntimeError(f"view_as_complex: Tensor must have a last dimension of size 2, "
                               f"got shape {tuple(d.shape)}")
        if d.strides[-1] != d.itemsize or any(s % (2 * d.itemsize) for s in d.strides[:-1]):
            raise RuntimeError(f"view_as_complex: Tensor must have a last dimension with "
                               f"stride 1 and other strides divisible by 2 (strides "
                               f"{x.stride()}); call .contiguous() first")
        return _view(make(d.view(dtypes.complex_np(d.dtype))[..., 0]), x, _to_pairs)

    @staticmethod
    def backward(ctx, g):
        return ViewAsReal.apply(g)


class ComplexAbs(Function):
    @staticmethod
    def forward(ctx, x):
        d = x._data
        out = make(array_module(d).abs(d))
        ctx.save_for_backward(x, out)
        return out

    @staticmethod
    def backward(ctx, g):
        x, r = ctx.saved_tensors
        # g * x / |x|, with 0 where x == 0 (as PyTorch's sgn)
        safe = r + (r == 0).to(r.dtype)
        return Complex.apply(g, None) * (x / safe)


class ComplexAngle(Function):
    @staticmethod
    def forward(ctx, x):
        d = x._data
        xp = array_module(d)
        ctx.save_for_backward(x)
        return make(xp.arctan2(d.imag, d.real))

    @staticmethod
    def backward(ctx, g):
        x, = ctx.saved_tensors
        r2 = ComplexAbs.apply(x) ** 2
        zero = r2 == 0
        # g * i x / |x|^2, 0 at x == 0
        rotated = x * 1j / (r2 + zero.to(r2.dtype))
        return Complex.apply(g, None) * rotated


class Sgn(Function):
    """z / |z| (0 at 0) for complex z; sign for real tensors."""

    @staticmethod
    def forward(ctx, x):
        d = x._data
        xp = array_module(d)
        r = xp.abs(d)
        zero = r == 0
        out = make(xp.where(zero, 0, d / xp.where(zero, 1, r)).astype(d.dtype))
        ctx.save_for_backward(x, out)
        return out

    @staticmethod
    def backward(ctx, g):
        # PyTorch's sgn_backward: (g - Re(g * conj(s)) * s) / |z|, 0 at z == 0
        x, s = ctx.saved_tensors
        r = ComplexAbs.apply(x)
        zero = r == 0
        proj = Real.apply(g * Conj.apply(s))
        return (g - Complex.apply(proj, None) * s) / Complex.apply(r + zero.to(r.dtype), None) \
            * Complex.apply((~zero).to(r.dtype), None)


# ---- public functions -----------------------------------------------------------------------
def complex(real, imag):
    """The complex tensor real + i * imag (float32 parts -> complex64, float64 -> complex128)."""
    if not isinstance(real, Tensor) or not isinstance(imag, Tensor):
        raise TypeError(f"complex(): expected real and imag to be tensors, got "
                        f"{type(real).__name__} and {type(imag).__name__}")
    _check_parts(real, imag)
    return Complex.apply(real, imag)


def polar(abs, angle):
    """abs * (cos(angle) + i sin(angle)), composed from differentiable ops."""
    _check_parts(abs, angle)
    return Complex.apply(abs * angle.cos(), abs * angle.sin())


def real(input):
    """The real part; a view sharing memory for complex tensors, the tensor itself otherwise."""
    if input._data.dtype.kind != "c":
        return input
    return Real.apply(input)


def imag(input):
    return Imag.apply(input)


def conj(input):
    """The complex conjugate (a copy; PyTorch's is a lazy view with the same values). Real
    tensors are returned as they are, as in PyTorch."""
    if input._data.dtype.kind != "c":
        return input
    return Conj.apply(input)


def conj_physical(input):
    return conj(input)


def view_as_real(input):
    return ViewAsReal.apply(input)


def view_as_complex(input):
    return ViewAsComplex.apply(input)


def complex_abs(input):
    return ComplexAbs.apply(input)


def complex_angle(input):
    return ComplexAngle.apply(input)


def sgn(input):
    return Sgn.apply(input)


def is_complex(input):
    return input._data.dtype.kind == "c"
