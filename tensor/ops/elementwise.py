"""Elementwise ops: arithmetic, math, activations, comparisons, where/clamp.

Each Function's forward works on raw arrays; its backward uses tensor ops, so
create_graph=True differentiates through it. Broadcasting is undone by `unbroadcast`.
"""
import math

import numpy as np

from ...autograd import Function
from ..backend import array_module, can_check, special
from ..tensor import Tensor
from ..user_warnings import warn_user
from ..dtypes import result_type
from ._util import arr, binary_operands, make, named, shape_of, unbroadcast
from .complex import complex_abs, conj_grad, keep_real, real_operands, reject_complex


# ---- binary arithmetic ----------------------------------------------------------------------
class Add(Function):
    @staticmethod
    def forward(ctx, a, b, alpha=1):
        x, y = binary_operands(a, b)
        ctx.shapes = (shape_of(a), shape_of(b))
        ctx.alpha = alpha
        if x.dtype.kind == "c":
            ctx.real_in = real_operands(a, b)
        return make(x + y if alpha == 1 else x + alpha * y)

    @staticmethod
    def backward(ctx, g):
        sa, sb = ctx.shapes
        na, nb = ctx.needs_input_grad[:2]
        gb = None
        if nb:
            gb = unbroadcast(g if ctx.alpha == 1 else g * conj_grad(ctx.alpha), sb)
        ga = unbroadcast(g, sa) if na else None
        if g._data.dtype.kind == "c":
            return _keep_real_parts(ctx, ga, gb)
        return ga, gb


class Sub(Function):
    @staticmethod
    def forward(ctx, a, b, alpha=1):
        x, y = binary_operands(a, b)
        ctx.shapes = (shape_of(a), shape_of(b))
        ctx.alpha = alpha
        if x.dtype.kind == "c":
            ctx.real_in = real_operands(a, b)
        return make(x - y if alpha == 1 else x - alpha * y)

    @staticmethod
    def backward(ctx, g):
        sa, sb = ctx.shapes
        na, nb = ctx.needs_input_grad[:2]
        ga = unbroadcast(g, sa) if na else None
        gb = unbroadcast(-g if ctx.alpha == 1 else g * -conj_grad(ctx.alpha), sb) if nb \
            else None
        if g._data.dtype.kind == "c":
            return _keep_real_parts(ctx, ga, gb)
        return ga, gb


def _keep_real_parts(ctx, ga, gb):
    """A complex gradient of a binary op: its real inputs get the real part only."""
    real_a, real_b = getattr(ctx, "real_in", (False, False))
    return keep_real(ga, real_a), keep_real(gb, real_b)


def _requires_grad(x):
    return isinstance(x, Tensor) and x.requires_grad


class Mul(Function):
    saved_names = ("other", "self")     # grad_fn._saved_self, in PyTorch's names and order

    @staticmethod
    def forward(ctx, a, b):
        x, y = binary_operands(a, b)
        # each factor is saved only for the other's gradient (so an in-place change of a
        # factor whose partner needs no gradient is harmless, as in PyTorch)
        ta, tb = isinstance(a, Tensor), isinstance(b, Tensor)
        ctx.save_for_backward(b if tb and _requires_grad(a) else None,
                              a if ta and _requires_grad(b) else None)
        ctx.scalars = (None if ta else a, None if tb else b)
        ctx.shapes = (shape_of(a), shape_of(b))
        if x.dtype.kind == "c":
            ctx.real_in = real_operands(a, b)
        return make(x * y)

    @staticmethod
    def backward(ctx, g):
        b, a = ctx.saved_tensors
        sa, sb = ctx.shapes
        ca, cb = ctx.scalars
        na, nb = ctx.needs_input_grad
        if g._data.dtype.kind == "c":  # complex: g * conj(other factor)
            ga = unbroadcast(g * conj_grad(b if b is not None else cb), sa) if na else None
            gb = unbroadcast(g * conj_grad(a if a is not None else ca), sb) if nb else None
            return _keep_real_parts(ctx, ga, gb)
        ga = unbroadcast(g * (b if b is not None else cb), sa) if na else None
        gb = unbroadcast(g * (a if a is not None else ca), sb) if nb else None
        return ga, gb


class Div(Function):
    saved_names = ("other", "self")     # the dividend serves only the divisor's gradient

    @staticmethod
    def forward(ctx, a, b):
        x, y = binary_operands(a, b, float_result=True)
        ctx.save_for_backward(b if isinstance(b, Tensor) else None,
                              a if _requires_grad(b) and isinstance(a, Tensor) else None)
        ctx.shapes = (shape_of(a), shape_of(b))
        ctx.scalars = (None if isinstance(a, Tensor) else a, None if isinstance(b, Tensor) else b)
        if x.dtype.kind == "c":
            ctx.real_in = real_operands(a, b)
        return make(x / y)

    @staticmethod
    def backward(ctx, g):
        b, a = ctx.saved_tensors
        shape_a, shape_b = ctx.shapes
        sa, sb = ctx.scalars
        na, nb = ctx.needs_input_grad
        if g._data.dtype.kind == "c":  # complex: g / conj(b), -g * conj(a / b**2)
            den = conj_grad(b if b is not None else sb)
            ga = unbroadcast(g / den, shape_a) if na else None
            gb = None
            if nb:
                num = conj_grad(a if a is not None else sa)
                gb = unbroadcast(-g * num / (den * den), shape_b)
            return _keep_real_parts(ctx, ga, gb)
        den = b if b is not None else sb
        ga = unbroadcast(g / den, shape_a) if na else None
        gb = None
        if nb:
            num = a if a is not None else sa
            gb = unbroadcast(-g * num / (b * b), shape_b)
        return ga, gb


class Pow(Function):
    saved_names = ("self", "exponent", "result")
    graph_inputs = (0,)    # PyTorch's pow(Tensor, Scalar); tensor exponents are set per call

    @staticmethod
    def forward(ctx, a, b):
        x, y = binary_operands(a, b)
        if x.dtype.kind in "iu" and can_check(y) and bool((y < 0).any()):
            raise RuntimeError("Integers to negative integer powers are not allowed.")
        out = make(x ** y)
        if x.dtype.kind == "c":
            ctx.real_in = real_operands(a, b)
        # the output only serves the exponent's gradient
        ctx.save_for_backward(a if isinstance(a, Tensor) else None,
                              b if isinstance(b, Tensor) else None,
                              out if _requires_grad(b) else None)
        ctx.scalars = (None if isinstance(a, Tensor) else a, None if isinstance(b, Tensor) else b)
        if isinstance(b, Tensor):   # PyTorch's pow(Tensor, Tensor) and pow(Scalar, Tensor)
            ctx.node_name, ctx.graph_inputs = _POW_NODES[isinstance(a, Tensor)]
        return out

    @staticmethod
    def backward(ctx, g):
        a, b, out = ctx.saved_tensors
        sa, sb = ctx.scalars
        if g._data.dtype.kind == "c":
            # the derivatives are holomorphic in a and b: at the conjugates they are the
            # conjugate derivatives PyTorch's convention asks for
            a, b, out, sa, sb = map(conj_grad, (a, b, out, sa, sb))
            return _keep_real_parts(ctx, *Pow._gradients(ctx, g, a, b, out, sa, sb))
        return Pow._gradients(ctx, g, a, b, out, sa, sb)

    @staticmethod
    def _gradients(ctx, g, a, b, out, sa, sb):
        na, nb = ctx.needs_input_grad
        ga = gb = None
        if na:
            if b is None:
                ga = g * sb * a ** (sb - 1) if sb != 0 else g * 0.0
            else:
                ga = unbroadcast(g * b * a ** (b - 1), a.shape)
        if nb:
            base = a if a is not None else sa
            # d/db a**b = a**b * log(a); 0 where a == 0 (as in PyTorch) to avoid 0 * -inf
            log_base = where(base == 0, 0.0, log(base)) if isinstance(base, Tensor) \
                else math.log(base) if base > 0 else (0.0 if base == 0 else float("nan"))
            gb = unbroadcast(g * out * log_base, b.shape)
        return ga, gb


_POW_NODES = {True: ("PowBackward1", (0, 1)), False: ("PowBackward2", (1,))}


class Maximum(Function):
    @staticmethod
    def forward(ctx, a, b):
        x, y = binary_operands(a, b)
        if x.dtype.kind == "c":
            reject_complex("maximum", a, b)
        xp = array_module(x)
        ctx.mask = (x > y) + 0.5 * (x == y)  # ties split the gradient, as in PyTorch
        ctx.shapes = (shape_of(a), shape_of(b))
        return make(xp.maximum(x, y))

    @staticmethod
    def backward(ctx, g):
        m = make(ctx.mask.astype(g._data.dtype))
        sa, sb = ctx.shapes
        na, nb = ctx.needs_input_grad
        return (unbroadcast(g * m, sa) if na else None,
                unbroadcast(g * (1 - m), sb) if nb else None)


class Minimum(Function):
    @staticmethod
    def forward(ctx, a, b):
        x, y = binary_operands(a, b)
        if x.dtype.kind == "c":
            reject_complex("minimum", a, b)
        xp = array_module(x)
        ctx.mask = (x < y) + 0.5 * (x == y)
        ctx.shapes = (shape_of(a), shape_of(b))
        return make(xp.minimum(x, y))

    backward = Maximum.backward


# ---- unary math -----------------------------------------------------------------------------
def _float_input(x):
    d = x._data
    if d.dtype.kind not in "fc":
        from ..dtypes import get_default_dtype
        d = d.astype(get_default_dtype().np)
    return d


def _unary(name, fwd, grad, save_out=False, keeps_dtype=False, saves=True):
    """Define a one-input Function from `fwd(xp, array)` and `grad(x, out, g)` (tensor ops);
    `grad` gets the output (save_out=True) or the input, not both, or neither (`saves=False`:
    a linear op, whose backward can run again after the graph is freed, as PyTorch's).

    Integer inputs are computed in the default float dtype unless `keeps_dtype` (neg, abs)."""
    def forward(ctx, x):
        d = x._data if keeps_dtype else _float_input(x)
        out = make(fwd(array_module(d), d))
        if saves:
            ctx.save_for_backward(out if save_out else x)
        return out

    def backward(ctx, g):
        if not saves:
            return grad(None, None, g)
        saved, = ctx.saved_tensors
        if saved._data.dtype.kind == "c":
            # PyTorch's convention: g * conj(f'(z)), which is g * f'(conj z) for these f
            saved = conj_grad(saved)
        return grad(None, saved, g) if save_out else grad(saved, None, g)

    return type(name, (Function,), {"forward": staticmethod(forward),
                                    "backward": staticmethod(backward),
                                    "saved_names": ("result",) if save_out else ("self",)})


Neg = _unary("Neg", lambda xp, x: -x, lambda x, o, g: -g, keeps_dtype=True, saves=False)
Exp = _unary("Exp", lambda xp, x: xp.exp(x), lambda x, o, g: g * o, save_out=True)
Log = _unary("Log", lambda xp, x: xp.log(x), lambda x, o, g: g / x)
Log1p = _unary("Log1p", lambda xp, x: xp.log1p(x), lambda x, o, g: g / (x + 1))
Log1p.node_name = "Log1P"
Log2 = _unary("Log2", lambda xp, x: xp.log2(x), lambda x, o, g: g / (x * math.log(2)))
Log10 = _unary("Log10", lambda xp, x: xp.log10(x), lambda x, o, g: g / (x * math.log(10)))
Expm1 = _unary("Expm1", lambda xp, x: xp.expm1(x), lambda x, o, g: g * (o + 1), save_out=True)
Sqrt = _unary("Sqrt", lambda xp, x: xp.sqrt(x), lambda x, o, g: g / (o * 2), save_out=True)
Rsqrt = _unary("Rsqrt", lambda xp, x: 1 / xp.sqrt(x),
               lambda x, o, g: g * -0.5 * o * o * o, save_out=True)
Sin = _unary("Sin", lambda xp, x: xp.sin(x), lambda x, o, g: g * cos(x))
Cos = _unary("Cos", lambda xp, x: xp.cos(x), lambda x, o, g: -g * sin(x))
Tanh = _unary("Tanh", lambda xp, x: xp.tanh(x), lambda x, o, g: g * (1 - o * o), save_out=True)
Sigmoid = _unary("Sigmoid", lambda xp, x: sigmoid_array(xp, x),
                 lambda x, o, g: g * o * (1 - o), save_out=True)
Silu = _unary("Silu", lambda xp, x: x * sigmoid_array(xp, x),
              lambda x, o, g: g * _silu_grad(x))
Abs = _unary("Abs", lambda xp, x: xp.abs(x), lambda x, o, g: g * sign(x), keeps_dtype=True)


def sigmoid_array(xp, x):
    """The sigmoid of the array `x` of module `xp` (shared with activations on arrays)."""
    if x.dtype.kind == "c":  # no order to branch on: the definition
        return 1 / (1 + xp.exp(-x))
    # exp of a non-positive number only: no overflow warnings for large |x|
    e = xp.exp(-xp.abs(x))
    return xp.where(x >= 0, 1 / (1 + e), e / (1 + e))


def _silu_grad(x):
    s = sigmoid(x)
    return s * (1 + x * (1 - s))


class Relu(Function):
    saved_names = ("result",)

    @staticmethod
    def forward(ctx, x):
        d = x._data
        if d.dtype.kind == "c":
            reject_complex("relu", x)
        out = make(array_module(d).maximum(d, 0))
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, g):
        out, = ctx.saved_tensors
        return g * make((out._data > 0).astype(g._data.dtype))


class LeakyRelu(Function):
    """max(x, slope*x) for slopes up to 1 (min above): one pass, where `where` costs several."""
    graph_inputs = (0,)

    @staticmethod
    def forward(ctx, x, negative_slope=0.01):
        d = x._data
        xp = array_module(d)
        scaled = d * d.dtype.type(negative_slope)
        out = make(xp.maximum(d, scaled) if negative_slope <= 1 else xp.minimum(d, scaled))
        # with a slope >= 0 the output is positive exactly where the input is: saving it
        # lets leaky_relu_ overwrite the input (a negative slope cannot, as in PyTorch)
        ctx.save_for_backward(out if negative_slope >= 0 else x)
        ctx.negative_slope = negative_slope
        return out

    @staticmethod
    def backward(ctx, g):
        saved, = ctx.saved_tensors
        d, slope = saved._data, ctx.negative_slope
        # 1 where x > 0, the slope elsewhere: slope + (1 - slope) * (x > 0), in g's dtype
        dtype = g._data.dtype
        factor = (d > 0).astype(dtype) * dtype.type(1 - slope) + dtype.type(slope)
        return g * make(factor), None


class Gelu(Function):
    saved_names = ("self",)
    graph_inputs = (0,)

    @staticmethod
    def forward(ctx, x, approximate="none"):
        d = _float_input(x)
        xp = array_module(d)
        ctx.save_for_backward(x)
        ctx.approximate = approximate
        if approximate == "tanh":
            k = math.sqrt(2 / math.pi)
            return make(0.5 * d * (1 + xp.tanh(k * (d + 0.044715 * d ** 3))))
        if approximate != "none":
            raise ValueError(f"approximate must be 'none' or 'tanh', got {approximate!r}")
        return make(0.5 * d * (1 + special(xp).erf(d / math.sqrt(2))))

    @staticmethod
    def backward(ctx, g):
        x, = ctx.saved_tensors
        if ctx.approximate == "tanh":
            k = math.sqrt(2 / math.pi)
            inner = k * (x + 0.044715 * x ** 3)
            t = tanh(inner)
            return g * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * k * (1 + 3 * 0.044715 * x * x))
        cdf = 0.5 * (1 + erf(x * (1 / math.sqrt(2))))
        pdf = exp(x * x * -0.5) * (1 / math.sqrt(2 * math.pi))
        return g * (cdf + x * pdf)


Erf = _unary("Erf", lambda xp, x: special(xp).erf(x),
             lambda x, o, g: g * (2 / math.sqrt(math.pi)) * exp(-(x * x)))


class Softplus(Function):
    graph_inputs = (0,)

    @staticmethod
    def forward(ctx, x, beta=1.0, threshold=20.0):
        d = _float_input(x)
        xp = array_module(d)
        z = d * beta
        # log1p(exp(z)) computed stably; linear above the threshold, as in PyTorch
        soft = (xp.maximum(z, 0) + xp.log1p(xp.exp(-xp.abs(z)))) / beta
        ctx.save_for_backward(x)
        ctx.beta, ctx.threshold = beta, threshold
        return make(xp.where(z > threshold, d, soft))

    @staticmethod
    def backward(ctx, g):
        x, = ctx.saved_tensors
        z = x * ctx.beta
        return g * where(z > ctx.threshold, 1.0, sigmoid(z)), None, None


class Clamp(Function):
    """min/max may be numbers or broadcasting tensors; a tensor bound gets the gradient where
    it binds (as in PyTorch: x < min for min, x > max for max). PyTorch's node is
    ClampBackward1 for numbers, ClampBackward0 (with the bounds as inputs) for tensors."""
    node_name = "ClampBackward1"
    graph_inputs = (0,)

    @staticmethod
    def forward(ctx, x, min=None, max=None):
        if min is None and max is None:
            raise RuntimeError("clamp: at least one of 'min' or 'max' must not be None")
        if isinstance(min, Tensor) or isinstance(max, Tensor):
            ctx.node_name, ctx.graph_inputs = "Clamp", (0, 1, 2)
        dt = result_type(*(v for v in (x, min, max) if v is not None))
        if dt.kind == "c":
            reject_complex("clamp", x, min, max)
        d = x._data if x._data.dtype == dt else x._data.astype(dt)
        xp = array_module(d)
        out, keep = d, True
        ctx.below = ctx.above = None
        if min is not None:
            lo = _as_operand(min, dt)
            ctx.below = d < lo
            keep = ~ctx.below
            out = xp.maximum(out, lo)
        if max is not None:
            hi = _as_operand(max, dt)
            ctx.above = d > hi
            keep = keep & ~ctx.above
            out = xp.minimum(out, hi)
        ctx.keep = keep
        ctx.shapes = (shape_of(x), shape_of(min), shape_of(max))
        return make(out)

    @staticmethod
    def backward(ctx, g):
        nx, nlo, nhi = ctx.needs_input_grad
        sx, slo, shi = ctx.shapes

        def part(mask, shape):   # where, not g * mask: an inf/nan g outside the mask is 0
            return unbroadcast(where(make(mask), g, g.new_zeros(())), shape)
        return (part(ctx.keep, sx) if nx else None,
                part(ctx.below, slo) if nlo else None,
                part(ctx.above, shi) if nhi else None)


def _as_operand(v, dt):
    """A clamp bound as an array or NumPy scalar of dtype `dt`."""
    a = arr(v)
    if hasattr(a, "dtype") and not isinstance(a, np.generic):
        return a if a.dtype == dt else a.astype(dt)
    return dt.type(v)


class Where(Function):
    graph_inputs = (1, 2)     # the condition is not an input of PyTorch's node

    @staticmethod
    def forward(ctx, cond, a, b):
        c = arr(cond)
        if c.dtype == np.uint8:      # PyTorch still takes a byte condition, with a warning
            warn_user("where received a uint8 condition tensor. This behavior is deprecated "
                      "and will be removed in a future version. Use a boolean condition "
                      "instead.")
            c = c.astype(bool)
        elif c.dtype.kind != "b":
            raise RuntimeError(f"where expected condition to be a boolean tensor, but got a "
                               f"tensor with dtype {c.dtype}")
        x, y = binary_operands(a, b)
        ctx.cond = c
        ctx.shapes = (shape_of(a), shape_of(b))
        return make(array_module(c).where(c, x, y))

    @staticmethod
    def backward(ctx, g):
        c = make(ctx.cond)
        sa, sb = ctx.shapes
        _, na, nb = ctx.needs_input_grad
        zero = g.new_zeros(())
        return (None,
                unbroadcast(where(c, g, zero), sa) if na else None,
                unbroadcast(where(c, zero, g), sb) if nb else None)


class Sign(Function):
    @staticmethod
    def forward(ctx, x):
        d = x._data
        if d.dtype.kind == "c":
            raise NotImplementedError("Unlike NumPy, sign is not intended to support complex "
                                      "numbers. Please use sgn instead.")
        xp = array_module(d)
        out = xp.sign(d)
        if d.dtype.kind == "f":
            out = xp.where(out != out, out.dtype.type(0), out)  # sign(NaN) is 0, as in PyTorch
        return make(out)

    @staticmethod
    def backward(ctx, g):
        return g * 0


# ---- functional API ------------------------------------------------------------------------
def add(input, other, *, alpha=1):
    # alpha by keyword: it is not an input, so not an edge of the graph (next_functions)
    return Add.apply(input, other, alpha=alpha)


def sub(input, other, *, alpha=1):
    return Sub.apply(input, other, alpha=alpha)


def mul(input, other):
    return Mul.apply(input, other)


def div(input, other, *, rounding_mode=None):
    if rounding_mode is None:
        return Div.apply(input, other)
    x, y = binary_operands(input, other)
    xp = array_module(x)
    q = xp.true_divide(x, y)
    q = xp.floor(q) if rounding_mode == "floor" else xp.trunc(q)
    if x.dtype.kind in "iu":
        q = q.astype(x.dtype)
    return make(q)


def true_divide(input, other):
    return Div.apply(input, other)


def floor_divide(input, other):
    return div(input, other, rounding_mode="floor")


class _Modulo(Function):
    """x - q(x / y) * y for q = floor (remainder, Python's sign) or trunc (fmod, C's): its
    gradient is 1 for x and -q(x / y) for y, as PyTorch's."""

    @staticmethod
    def forward(ctx, a, b, truncate):
        x, y = binary_operands(a, b)
        ctx.shapes, ctx.operands, ctx.truncate = (shape_of(a), shape_of(b)), (x, y), truncate
        xp = array_module(x)
        return make(xp.fmod(x, y) if truncate else xp.mod(x, y))

    @staticmethod
    def backward(ctx, g):
        sa, sb = ctx.shapes
        na, nb = ctx.needs_input_grad[:2]
        gb = None
        if nb:
            x, y = ctx.operands
            xp = array_module(x)
            q = xp.true_divide(x, y)
            q = xp.trunc(q) if ctx.truncate else xp.floor(q)
            gb = unbroadcast(g * make(-q.astype(g._data.dtype)), sb)
        return unbroadcast(g, sa) if na else None, gb, None


def remainder(input, other):
    return _modulo(input, other, False, "Remainder")


def fmod(input, other):
    return _modulo(input, other, True, "Fmod")


def _modulo(input, other, truncate, name):
    """PyTorch's node: <name>Backward0 of a tensor and a number, 1 of two tensors."""
    out = _Modulo.apply(input, other, truncate)
    if not isinstance(input, Tensor):
        return out
    return named(out, _Modulo, *((f"{name}Backward1", (0, 1)) if isinstance(other, Tensor)
                                 else (name, (0,))))


def pow(input, exponent):
    return Pow.apply(input, exponent)


def rsub(input, other, alpha=1):
    """other - alpha * input, as PyTorch's one node: RsubBackward0 of (input, other) for a
    tensor `other`, RsubBackward1 of input for a number."""
    if isinstance(other, Tensor):
        return named(Sub.apply(other, input, alpha=alpha), Sub, "Rsub", (1, 0))
    return named(Sub.apply(other, input, alpha=alpha), Sub, "RsubBackward1", (1,))


def maximum(input, other):
    return Maximum.apply(input, other)


def minimum(input, other):
    return Minimum.apply(input, other)


def neg(input):
    return Neg.apply(input)


negative = neg


def exp(input):
    return Exp.apply(input)


def log(input):
    return Log.apply(input)


def log2(input):
    return Log2.apply(input)


def log10(input):
    return Log10.apply(input)


def log1p(input):
    return Log1p.apply(input)


def expm1(input):
    return Expm1.apply(input)


def sqrt(input):
    return Sqrt.apply(input)


def rsqrt(input):
    return Rsqrt.apply(input)


def square(input):
    return named(Mul.apply(input, input), Mul, "Pow", (0,))    # PyTorch's x.pow(2)


def reciprocal(input):
    return named(Div.apply(1.0, input), Div, "Reciprocal", (1,))


def sin(input):
    return Sin.apply(input)


def cos(input):
    return Cos.apply(input)


def tan(input):
    return sin(input) / cos(input)


def tanh(input):
    return Tanh.apply(input)


def sigmoid(input):
    return Sigmoid.apply(input)


def relu(input):
    return Relu.apply(input)


def leaky_relu(input, negative_slope=0.01):
    return LeakyRelu.apply(input, float(negative_slope))


def gelu(input, approximate="none"):
    return Gelu.apply(input, approximate)


def erf(input):
    return Erf.apply(input)


def silu(input):
    return Silu.apply(input)


def softplus(input, beta=1.0, threshold=20.0):
    return Softplus.apply(input, beta, threshold)


def abs(input):
    if input._data.dtype.kind == "c":
        return complex_abs(input)
    return Abs.apply(input)


absolute = abs


def sign(input):
    return Sign.apply(input)


def clamp(input, min=None, max=None):
    return Clamp.apply(input, min, max)


clip = clamp


def where(condition, input=None, other=None):
    if input is None and other is None:
        from .indexing import nonzero
        return nonzero(condition, as_tuple=True)
    return Where.apply(condition, input, other)


def lerp(input, end, weight):
    """input + weight * (end - input), composed from primitives."""
    return input + weight * (end - input)


def addcmul(input, tensor1, tensor2, *, value=1):
    """input + value * tensor1 * tensor2, composed from primitives."""
    prod = tensor1 * tensor2
    return input + (prod if value == 1 else prod * value)


def addcdiv(input, tensor1, tensor2, *, value=1):
    """input + value * tensor1 / tensor2, composed from primitives (true division)."""
    if not _is_float(tensor1) and not _is_float(tensor2):
        raise RuntimeError(f"addcdiv: integer division is not supported (tensor1 and tensor2 "
                           f"are {_dtype_name(tensor1)} and {_dtype_name(tensor2)}); for "
                           f"true division convert one to a floating dtype, for floor "
                           f"division use input + value * div(tensor1, tensor2, "
                           f"rounding_mode='floor')")
    quot = tensor1 / tensor2
    return input + (quot if value == 1 else quot * value)


def _is_float(x):
    return x._data.dtype.kind == "f" if isinstance(x, Tensor) else isinstance(x, float)


def _dtype_name(x):
    return str(x.dtype) if isinstance(x, Tensor) else type(x).__name__


def _stepwise(name, fwd):
    """A piecewise-constant op: its gradient is zero (PyTorch's too, so a loss built on it
    still backpropagates, with zeros); integer inputs come back as they are."""
    def forward(ctx, x, *args):
        d = x._data
        if d.dtype.kind == "c":
            raise NotImplementedError(f"{name.lower()} is not supported for complex inputs "
                                      f"(got {x.dtype})")
        return make(d.copy() if d.dtype.kind in "biu" else fwd(array_module(d), d, *args))

    def backward(ctx, g):
        return (make(array_module(g._data).zeros_like(g._data)),) + \
            (None,) * (len(ctx.needs_input_grad) - 1)
    return type(name, (Function,), {"forward": staticmethod(forward),
                                    "backward": staticmethod(backward),
                                    "graph_inputs": (0,), "saved_names": ()})


Floor = _stepwise("Floor", lambda xp, x: xp.floor(x))
Ceil = _stepwise("Ceil", lambda xp, x: xp.ceil(x))
Trunc = _stepwise("Trunc", lambda xp, x: xp.trunc(x))
Round = _stepwise("Round", lambda xp, x, decimals: xp.round(x, decimals))


def floor(input):
    return Floor.apply(input)


def ceil(input):
    return Ceil.apply(input)


def trunc(input):
    return Trunc.apply(input)


def round(input, decimals=0):
    if decimals:            # PyTorch's round.decimals overload: RoundBackward1
        return named(Round.apply(input, decimals), Round, "RoundBackward1", (0,))
    return Round.apply(input, 0)


# ---- comparisons, logical and bitwise ops --------------------------------------------------
# Functions (so autocast, the profiler and ONNX export see them at the dispatch point) whose
# outputs are boolean or integer, hence never differentiable: backward is never called.
class _NoGradient(Function):
    differentiable = False

    @staticmethod
    def backward(ctx, *grads):
        raise RuntimeError(f"{ctx.fn.__name__} has no gradient (its output is not floating)")


def _binary_function(name, np_name, ordered=False):
    def forward(ctx, a, b):
        x, y = binary_operands(a, b)
        if ordered and x.dtype.kind == "c":
            reject_complex(np_name, a, b)
        return make(getattr(array_module(x), np_name)(x, y))
    return type(name, (_NoGradient,), {"forward": staticmethod(forward)})


def _unary_function(name, np_name):
    def forward(ctx, x):
        d = x._data
        return make(getattr(array_module(d), np_name)(d))
    return type(name, (_NoGradient,), {"forward": staticmethod(forward)})


Eq = _binary_function("Eq", "equal")
Ne = _binary_function("Ne", "not_equal")
Lt = _binary_function("Lt", "less", ordered=True)
Le = _binary_function("Le", "less_equal", ordered=True)
Gt = _binary_function("Gt", "greater", ordered=True)
Ge = _binary_function("Ge", "greater_equal", ordered=True)
LogicalAnd = _binary_function("LogicalAnd", "logical_and")
LogicalOr = _binary_function("LogicalOr", "logical_or")
LogicalXor = _binary_function("LogicalXor", "logical_xor")
BitwiseAnd = _binary_function("BitwiseAnd", "bitwise_and")
BitwiseOr = _binary_function("BitwiseOr", "bitwise_or")
BitwiseXor = _binary_function("BitwiseXor", "bitwise_xor")
LogicalNot = _unary_function("LogicalNot", "logical_not")
BitwiseNot = _unary_function("BitwiseNot", "invert")
IsNan = _unary_function("IsNan", "isnan")
IsInf = _unary_function("IsInf", "isinf")
IsFinite = _unary_function("IsFinite", "isfinite")


def _applier(cls, name):
    apply = cls.apply

    def op(input, other):
        return apply(input, other)
    op.__name__ = name
    return op


eq = _applier(Eq, "eq")
ne = _applier(Ne, "ne")
lt = _applier(Lt, "lt")
le = _applier(Le, "le")
gt = _applier(Gt, "gt")
ge = _applier(Ge, "ge")
logical_and = _applier(LogicalAnd, "logical_and")
logical_or = _applier(LogicalOr, "logical_or")
logical_xor = _applier(LogicalXor, "logical_xor")
bitwise_and = _applier(BitwiseAnd, "bitwise_and")
bitwise_or = _applier(BitwiseOr, "bitwise_or")
bitwise_xor = _applier(BitwiseXor, "bitwise_xor")


def logical_not(input):
    return LogicalNot.apply(input)


def bitwise_not(input):
    return BitwiseNot.apply(input)


def isnan(input):
    return IsNan.apply(input)


def isinf(input):
    return IsInf.apply(input)


def isfinite(input):
    return IsFinite.apply(input)


def equal(input, other):
    """True if both tensors have the same shape and elements."""
    same = input.shape == other.shape and input._data.shape == other._data.shape and \
        bool((input._data == other._data).all())
    return input._everywhere(same)


def allclose(input, other, rtol=1e-5, atol=1e-8, equal_nan=False):
    return input._everywhere(bool(array_module(input._data).allclose(
        input._data, other._data, rtol, atol, equal_nan)))


def isclose(input, other, rtol=1e-5, atol=1e-8, equal_nan=False):
    x, y = binary_operands(input, other)
    return make(array_module(x).isclose(x, y, rtol, atol, equal_nan))


def logical_and_or_bitwise(kind):
    """`&`, `|`, `^`: logical on bool tensors, bitwise on integers (as in PyTorch)."""
    logical = {"and": logical_and, "or": logical_or, "xor": logical_xor}[kind]
    bitwise = {"and": bitwise_and, "or": bitwise_or, "xor": bitwise_xor}[kind]

    def op(input, other):
        x = input._data
        if x.dtype.kind == "b" and (not isinstance(other, Tensor) or
                                    other._data.dtype.kind == "b"):
            return logical(input, other)
        return bitwise(input, other)
    op.__name__ = f"__{kind}__"
    return op
