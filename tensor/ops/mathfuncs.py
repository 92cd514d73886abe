"""More elementwise math: inverse trigonometric and hyperbolic functions, special functions,
two-argument functions (atan2, hypot, copysign, logaddexp, xlogy, ...) and NaN handling.

Where an op is a composition of differentiable primitives it is written as one (its gradient
comes for free); only functions with no such composition are new `Function`s.
"""
import math

import numpy as np

from ...autograd import Function
from ..backend import array_module, special
from ..dtypes import get_default_dtype
from .. import dtypes
from ..tensor import Tensor
from . import elementwise as ew
from ._util import binary_operands, make, named, shape_of, unbroadcast
from .elementwise import _unary
from . import complex as cx

# ---- unary Functions (forward with xp, backward with tensor ops) ---------------------------
Asin = _unary("Asin", lambda xp, x: xp.arcsin(x), lambda x, o, g: g * ew.rsqrt(1 - x * x))
Acos = _unary("Acos", lambda xp, x: xp.arccos(x), lambda x, o, g: -g * ew.rsqrt(1 - x * x))
Atan = _unary("Atan", lambda xp, x: xp.arctan(x), lambda x, o, g: g / (1 + x * x))
Sinh = _unary("Sinh", lambda xp, x: xp.sinh(x), lambda x, o, g: g * cosh(x))
Cosh = _unary("Cosh", lambda xp, x: xp.cosh(x), lambda x, o, g: g * sinh(x))
Asinh = _unary("Asinh", lambda xp, x: xp.arcsinh(x), lambda x, o, g: g * ew.rsqrt(x * x + 1))
Acosh = _unary("Acosh", lambda xp, x: xp.arccosh(x), lambda x, o, g: g * ew.rsqrt(x * x - 1))
Atanh = _unary("Atanh", lambda xp, x: xp.arctanh(x), lambda x, o, g: g / (1 - x * x))
Erfc = _unary("Erfc", lambda xp, x: special(xp).erfc(x),
              lambda x, o, g: g * (-2 / math.sqrt(math.pi)) * ew.exp(-(x * x)))
Erfinv = _unary("Erfinv", lambda xp, x: special(xp).erfinv(x),
                lambda x, o, g: g * (math.sqrt(math.pi) / 2) * ew.exp(o * o), save_out=True)
Lgamma = _unary("Lgamma", lambda xp, x: special(xp).gammaln(x),
                lambda x, o, g: g * digamma(x))
I0 = _unary("I0", lambda xp, x: special(xp).i0(x), lambda x, o, g: g * _i1(x))
Angle = _unary("Angle", lambda xp, x: xp.where(x < 0, x.dtype.type(math.pi),
                                                 xp.where(xp.isnan(x), x, x.dtype.type(0))),
               lambda x, o, g: g * 0)
_I1 = _unary("I1", lambda xp, x: special(xp).i1(x),
             lambda x, o, g: g * (i0(x) - _i1(x) / x))


def _i1(x):
    return _I1.apply(x)


class Polygamma(Function):
    """The n-th derivative of digamma; its own derivative is polygamma(n + 1)."""

    @staticmethod
    def forward(ctx, x, n):
        d = ew._float_input(x)
        ctx.save_for_backward(x)
        ctx.n = n
        sp = special(array_module(d))
        return make(sp.digamma(d) if n == 0 else sp.polygamma(n, d).astype(d.dtype))

    @staticmethod
    def backward(ctx, g):
        x, = ctx.saved_tensors
        return g * Polygamma.apply(x, ctx.n + 1), None


class Atan2(Function):
    @staticmethod
    def forward(ctx, y, x):
        a, b = binary_operands(y, x, float_result=True)
        ctx.save_for_backward(y if isinstance(y, Tensor) else None,
                              x if isinstance(x, Tensor) else None)
        ctx.scalars = (None if isinstance(y, Tensor) else y, None if isinstance(x, Tensor) else x)
        ctx.shapes = (shape_of(y), shape_of(x))
        return make(array_module(a).arctan2(a, b))

    @staticmethod
    def backward(ctx, g):
        y, x = ctx.saved_tensors
        sy, sx = ctx.scalars
        y = y if y is not None else sy
        x = x if x is not None else sx
        ny, nx = ctx.needs_input_grad
        den = x * x + y * y
        return (unbroadcast(g * x / den, ctx.shapes[0]) if ny else None,
                unbroadcast(-g * y / den, ctx.shapes[1]) if nx else None)


# ---- functional API: unary -------------------------------------------------------------------
def asin(input):
    return Asin.apply(input)


def acos(input):
    return Acos.apply(input)


def atan(input):
    return Atan.apply(input)


def sinh(input):
    return Sinh.apply(input)


def cosh(input):
    return Cosh.apply(input)


def asinh(input):
    return Asinh.apply(input)


def acosh(input):
    return Acosh.apply(input)


def atanh(input):
    return Atanh.apply(input)


arcsin, arccos, arctan, arcsinh, arccosh, arctanh = asin, acos, atan, asinh, acosh, atanh


def erfc(input):
    return Erfc.apply(input)


def erfinv(input):
    return Erfinv.apply(input)


def lgamma(input):
    return Lgamma.apply(input)


def digamma(input):
    return Polygamma.apply(input, 0)


def polygamma(n, input):
    return Polygamma.apply(input, int(n))


def i0(input):
    return I0.apply(input)


def exp2(input):
    out = ew.pow(2.0, input if input.is_floating_point() else input.to(get_default_dtype()))
    return named(out, ew.Pow, "Exp2", (1,))


def deg2rad(input):
    return _floating(input) * (math.pi / 180)


def rad2deg(input):
    return _floating(input) * (180 / math.pi)


def frac(input):
    """input - trunc(input); the gradient is 1, as in PyTorch."""
    return input - ew.trunc(input.detach())


def sinc(input):
    """sin(pi x) / (pi x), 1 at 0 (with gradient 0 there)."""
    x = _floating(input)
    zero = x == 0
    safe = ew.where(zero, 1.0, x) * math.pi
    return ew.where(zero, 1.0, ew.sin(safe) / safe)


def logit(input, eps=None):
    x = _floating(input)
    if eps is not None:
        x = ew.clamp(x, eps, 1 - eps)
    return ew.log(x / (1 - x))


def sgn(input):
    """sign for real tensors, z / |z| (0 at 0) for complex ones."""
    if input._data.dtype.kind == "c":
        return cx.sgn(input)
    return ew.sign(input)


def positive(input):
    if input.dtype.name == "bool":
        raise TypeError("The `+` operator, on a bool tensor is not supported.")
    return input


def signbit(input):
    return make(array_module(input._data).signbit(input._data))


def isposinf(input):
    d = input._data
    return make(array_module(d).isposinf(d) if d.dtype.kind == "f" else
                array_module(d).zeros(d.shape, bool))


def isneginf(input):
    d = input._data
    return make(array_module(d).isneginf(d) if d.dtype.kind == "f" else
                array_module(d).zeros(d.shape, bool))


def isreal(input):
    d = input._data
    return make(array_module(d).isreal(d))


def nan_to_num(input, nan=0.0, posinf=None, neginf=None):
    """NaN, +inf and -inf replaced (by default with 0 and the dtype's largest/smallest finite
    value); the gradient flows only through finite elements, as in PyTorch."""
    if not input.is_floating_point():
        return input.clone()
    info = np.finfo(input._data.dtype)
    hi = float(info.max) if posinf is None else posinf
    lo = float(info.min) if neginf is None else neginf
    out = ew.where(ew.isnan(input), float(nan), input)
    out = ew.where(isposinf(input), float(hi), out)
    return ew.where(isneginf(input), float(lo), out)


def clamp_min(input, min):
    if isinstance(min, Tensor):
        return named(ew.clamp(input, min=min), ew.Clamp, "ClampMinBackward1", (0, 1))
    return named(ew.clamp(input, min=min), ew.Clamp, "ClampMin")


def clamp_max(input, max):
    if isinstance(max, Tensor):
        return named(ew.clamp(input, max=max), ew.Clamp, "ClampMaxBackward1", (0, 2))
    return named(ew.clamp(input, max=max), ew.Clamp, "ClampMax")


def _floating(x):
    return x if x.is_floating_point() else x.to(get_default_dtype())


# ---- functional API: binary ------------------------------------------------------------------
def atan2(input, other):
    return Atan2.apply(input, other)


arctan2 = atan2


def hypot(input, other):
    return ew.sqrt(input * input + other * other)


def copysign(input, other):
    """|input| with the sign bit of `other` (so -0.0 counts as negative); no gradient flows
    to `other`."""
    mag = ew.abs(_floating(input) if isinstance(input, Tensor) else input)
    neg = signbit(other) if isinstance(other, Tensor) else \
        make(np.asarray(math.copysign(1.0, other) < 0))
    return ew.where(neg, -mag, mag)


def nextafter(input, other):
    x, y = binary_operands(input, other)
    return make(array_module(x).nextafter(x, y))


def logaddexp(input, other):
    """log(exp(a) + exp(b)) without overflow."""
    m = ew.maximum(input, other).detach()
    m = ew.where(ew.isinf(m), 0.0, m)  # both -inf (or +inf): keep the subtraction finite
    return m + ew.log(ew.exp(input - m) + ew.exp(other - m))


def logaddexp2(input, other):
    ln2 = math.log(2)
    return logaddexp(input * ln2, other * ln2) * (1 / ln2)


def xlogy(input, other):
    """input * log(other), 0 where input is 0 (unless other is NaN); the gradients match
    PyTorch's, including where input is 0 and other <= 0."""
    if not isinstance(input, Tensor):
        input = make(array_module(other._data).asarray(input, dtype=other._data.dtype))
    if not isinstance(other, Tensor):
        other = make(array_module(input._data).asarray(
            other, dtype=_floating(input)._data.dtype))
    safe = ew.where((input == 0) & (other <= 0), 1.0, _floating(other))
    return input * ew.log(safe)


def float_power(input, exponent):
    def f64(v):
        return v.to(dtypes.float64) if isinstance(v, Tensor) else float(v)
    return ew.pow(f64(input), f64(exponent))


def fmax(input, other):
    """maximum that ignores NaN (NaN only where both are NaN)."""
    return ew.where((input >= other) | ew.isnan(other), input, other)


def fmin(input, other):
    return ew.where((input <= other) | ew.isnan(other), input, other)


def heaviside(input, values):
    x, v = binary_operands(input, values)
    return make(array_module(x).heaviside(x, v).astype(x.dtype))


def ldexp(input, other):
    return _floating(input) * ew.pow(2.0, other)


def gcd(input, other):
    x, y = binary_operands(input, other)
    return make(array_module(x).gcd(x, y))


def lcm(input, other):
    x, y = binary_operands(input, other)
    return make(array_module(x).lcm(x, y))


def bitwise_left_shift(input, other):
    x, y = binary_operands(input, other)
    return make(array_module(x).left_shift(x, y))


def bitwise_right_shift(input, other):
    x, y = binary_operands(input, other)
    return make(array_module(x).right_shift(x, y))


def frexp(input):
    d = input._data
    if d.dtype.kind != "f":
        raise RuntimeError(f"torch.frexp() only supports floating-point dtypes (got "
                           f"{input.dtype})")
    xp = array_module(d)
    _, e = xp.frexp(d)
    # mantissa = input / 2**exponent, so that its gradient is 1 / 2**exponent (as in PyTorch)
    return input * make(xp.ldexp(xp.ones_like(d), -e)), make(e.astype(np.int32))


def isin(elements, test_elements, *, assume_unique=False, invert=False):
    xp_src = elements if isinstance(elements, Tensor) else test_elements
    xp = array_module(xp_src._data)
    a = elements._data if isinstance(elements, Tensor) else xp.asarray(elements)
    b = test_elements._data if isinstance(test_elements, Tensor) else xp.asarray(test_elements)
    return make(xp.asarray(xp.isin(a, b, assume_unique=assume_unique, invert=invert)))


def angle(input):
    """The argument of a real number: 0 for x >= 0, pi for x < 0 (NaN stays NaN); its
    gradient is 0, as in PyTorch. For complex numbers, atan2(imag, real)."""
    if input._data.dtype.kind == "c":
        return cx.complex_angle(input)
    return Angle.apply(input)


def rsub(input, other, *, alpha=1):
    return ew.rsub(input, other, alpha=alpha)


# PyTorch's alternative spellings of existing ops
greater, greater_equal, less, less_equal, not_equal = ew.gt, ew.ge, ew.lt, ew.le, ew.ne
multiply, subtract, divide, fix = ew.mul, ew.sub, ew.div, ew.trunc


def mvlgamma(input, p):
    """The multivariate log-gamma function of dimension p (a sum of lgamma)."""
    if p < 1:
        raise RuntimeError(f"p has to be greater than or equal to 1, got {p}")
    x = _floating(input)
    if bool((x <= (p - 1) / 2).any()):
        raise RuntimeError(f"All elements must be greater than (p-1)/2 = {(p - 1) / 2}")
    total = lgamma(x)
    for i in range(1, p):
        total = total + lgamma(x - i / 2)
    return total + p * (p - 1) / 4 * math.log(math.pi)


class Igamma(Function):
    """The regularized lower (`upper=False`) or upper incomplete gamma function P(a, x) /
    Q(a, x). As in PyTorch, only `other` (x) has a gradient: +-x^(a-1) e^-x / Gamma(a)."""

    @staticmethod
    def forward(ctx, a, x, upper=False):
        ad, xd = binary_operands(a, x, float_result=True)
        sp = special(array_module(ad))
        ctx.save_for_backward(a if isinstance(a, Tensor) else None,
                              x if isinstance(x, Tensor) else None)
        ctx.upper, ctx.shapes = upper, (shape_of(a), shape_of(x))
        return make((sp.gammaincc if upper else sp.gammainc)(ad, xd).astype(ad.dtype))

    @staticmethod
    def backward(ctx, g):
        a, x = ctx.saved_tensors
        na, nx = ctx.needs_input_grad[:2]
        if na:
            raise NotImplementedError("the derivative of igamma/igammac with respect to its "
                                      "first argument (input) is not implemented, as in "
                                      "PyTorch; detach input")
        density = ew.exp((a - 1) * ew.log(x) - x - lgamma(a))
        return None, unbroadcast(-g * density if ctx.upper else g * density,
                                 ctx.shapes[1]), None


def igamma(input, other):
    return Igamma.apply(input, other, False)


def igammac(input, other):
    return Igamma.apply(input, other, True)


