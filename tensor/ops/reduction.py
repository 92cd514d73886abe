"""Reductions: sum, mean, prod, amax/amin, max/min (values and indices), logsumexp, softmax,
log_softmax, cumsum, norm, var and std (one op each for real floating input); var_mean and
std_mean are composed from these.

The nodes carry PyTorch's names, which number the overloads: sum() is SumBackward0 and
sum(dim) SumBackward1, max() MaxBackward1 and max(dim) MaxBackward0. Only the tensor is an
input of these nodes (`graph_inputs`): dims, flags and dtypes are not."""
import builtins as _b
import math
import warnings

import numpy as np

from ...autograd import Function, dispatch
from ..backend import array_module, on_host
from ..dtypes import get_default_dtype, is_floating_np, to_numpy_dtype
from ..return_types import return_type
from ._util import make, normalize_dim
from .complex import conj_grad, reject_complex

MaxResult = return_type("max", ["values", "indices"])
MinResult = return_type("min", ["values", "indices"])


def _axes(dim, ndim):
    """NumPy axis argument for a PyTorch dim (None, int, or tuple)."""
    if dim is None or dim == ():
        return None
    d = normalize_dim(dim, ndim)
    return d if isinstance(d, tuple) else (d,)


def _keep_shape(shape, axes):
    if axes is None:
        return (1,) * len(shape)
    return tuple(1 if i in axes else s for i, s in enumerate(shape))


def _expand_back(g, shape, axes, keepdim):
    """Broadcast a reduced gradient back over the reduced axes."""
    if not keepdim:
        g = g.reshape(_keep_shape(shape, axes))
    return g.expand(shape)


class Sum(Function):
    graph_inputs = (0,)

    @staticmethod
    def forward(ctx, x, dim=None, keepdim=False, dtype=None):
        d = x._data
        if dim is not None:
            ctx.node_name = "SumBackward1"
        axes = _axes(dim, d.ndim)
        if dtype is None and d.dtype.kind in "bui":
            dtype = np.int64
        ctx.shape, ctx.axes, ctx.keepdim = d.shape, axes, keepdim
        return make(d.sum(axis=axes, keepdims=keepdim, dtype=dtype))

    @staticmethod
    def backward(ctx, g):
        return _expand_back(g, ctx.shape, ctx.axes, ctx.keepdim)


class Mean(Function):
    graph_inputs = (0,)

    @staticmethod
    def forward(ctx, x, dim=None, keepdim=False, dtype=None):
        d = x._data
        if dim is not None:
            ctx.node_name = "MeanBackward1"
        if d.dtype.kind not in "fc" and dtype is None:
            raise RuntimeError(f"mean(): could not infer output dtype. Input dtype must be "
                               f"floating point, but got {x.dtype}; use x.float().mean()")
        axes = _axes(dim, d.ndim)
        ctx.shape, ctx.axes, ctx.keepdim = d.shape, axes, keepdim
        ctx.count = (d.size if axes is None else int(np.prod([d.shape[a] for a in axes])))
        return make(array_module(d).asarray(d.mean(axis=axes, keepdims=keepdim, dtype=dtype)))

    @staticmethod
    def backward(ctx, g):
        return _expand_back(g * (1.0 / _b.max(ctx.count, 1)), ctx.shape, ctx.axes, ctx.keepdim)


class Prod(Function):
    graph_inputs = (0,)

    @staticmethod
    def forward(ctx, x, dim=None, keepdim=False):
        d = x._data
        if dim is not None:
            ctx.node_name = "ProdBackward1"
        axes = None if dim is None else (normalize_dim(dim, d.ndim),)
        out = make(array_module(d).asarray(d.prod(axis=axes, keepdims=keepdim)))
        ctx.save_for_backward(x, out)
        ctx.axes, ctx.keepdim = axes, keepdim
        return out

    @staticmethod
    def backward(ctx, g):
        x, out = ctx.saved_tensors
        shape = x.shape
        gk = _expand_back(g, shape, ctx.axes, ctx.keepdim)
        d = x._data
        if on_host(d) and bool((d != 0).all()):  # on a GPU: the general path, no read
            return gk * conj_grad(_expand_back(out, shape, ctx.axes, ctx.keepdim) / x)
        # with zeros: product of all other elements, from exclusive cumulative products
        xp = array_module(d)
        axis = ctx.axes[0] if ctx.axes is not None else None
        flat = d.reshape(-1) if axis is None else d
        ax = 0 if axis is None else axis
        ones = xp.ones_like(xp.take(flat, [0], axis=ax))
        left = xp.cumprod(xp.concatenate([ones, xp.take(flat, range(flat.shape[ax] - 1),
                                                        axis=ax)], axis=ax), axis=ax)
        rev = xp.flip(flat, axis=ax)
        right = xp.flip(xp.cumprod(xp.concatenate(
            [ones, xp.take(rev, range(rev.shape[ax] - 1), axis=ax)], axis=ax), axis=ax),
            axis=ax)
        others = (left * right).reshape(d.shape)
        return gk * conj_grad(make(others))  # complex: g * conj(d prod / d x)


class Amax(Function):
    """max over dims with the gradient shared evenly between ties (amax/amin; max() and min(),
    which pass dim=None, as amax's dims are () for all)."""
    node_name = "Amax"
    graph_inputs = (0,)

    @staticmethod
    def forward(ctx, x, dim=None, keepdim=False, largest=True):
        d = x._data
        if dim is None or not largest:
            ctx.node_name = _AMAX_NODES[dim is None, largest]
        if d.size == 0:
            raise IndexError("max(): Expected reduction dim to be specified for input.numel() "
                             "== 0. Specify the reduction dim with the 'dim' argument.")
        axes = _axes(dim, d.ndim)
        r = d.max(axis=axes, keepdims=True) if largest else d.min(axis=axes, keepdims=True)
        ctx.ties = d == r  # weights made in backward, in the gradient's dtype (not float64)
        ctx.shape, ctx.axes, ctx.keepdim = d.shape, axes, keepdim
        return make(r if keepdim else r.reshape(
            tuple(s for i, s in enumerate(d.shape) if axes is not None and i not in axes)))

    @staticmethod
    def backward(ctx, g):
        w = ctx.ties.astype(g._data.dtype)
        w /= w.sum(axis=ctx.axes, keepdims=True)
        return _expand_back(g, ctx.shape, ctx.axes, ctx.keepdim) * make(w)


_AMAX_NODES = {(False, True): "Amax", (False, False): "Amin", (True, True): "MaxBackward1",
               (True, False): "MinBackward1"}


class MaxDim(Function):
    """(values, indices) along one dim; the gradient goes to the returned index."""
    node_name = "Max"     # max(dim); min(dim) is MinBackward0
    graph_inputs = (0,)

    @staticmethod
    def forward(ctx, x, dim, keepdim=False, largest=True):
        d = x._data
        if not largest:
            ctx.node_name = "Min"
        xp = array_module(d)
        dim = normalize_dim(dim, d.ndim)
        if d.ndim == 0:  # a 0-d tensor is its own max, at index 0
            d = d.reshape(1)
        if d.shape[dim] == 0:
            raise IndexError(f"max(): cannot reduce over a zero-size dimension {dim}")
        idx = d.argmax(axis=dim) if largest else d.argmin(axis=dim)
        idx_k = xp.expand_dims(idx, dim)
        vals = xp.take_along_axis(d, idx_k, axis=dim)
        ctx.shape, ctx.dim, ctx.keepdim, ctx.idx = x._data.shape, dim, keepdim, idx_k
        if not keepdim or x._data.ndim == 0:
            vals, idx_k = vals.reshape(idx.shape), idx
        ind = make(idx_k.astype(np.int64))
        ctx.mark_non_differentiable(ind)
        return make(vals), ind

    @staticmethod
    def backward(ctx, g, _gi):
        if not ctx.shape:
            return g
        if not ctx.keepdim:
            g = g.unsqueeze(ctx.dim)
        return g.new_zeros(ctx.shape).scatter(ctx.dim, make(ctx.idx), g)


class Logsumexp(Function):
    graph_inputs = (0,)

    @staticmethod
    def forward(ctx, x, dim, keepdim=False):
        d = x._data
        xp = array_module(d)
        axes = _axes(dim, d.ndim)
        m = d.max(axis=axes, keepdims=True) if d.size else \
            xp.zeros(_keep_shape(d.shape, axes), d.dtype)
        m = xp.where(xp.isfinite(m), m, 0)
        out = xp.log(xp.exp(d - m).sum(axis=axes, keepdims=True)) + m
        res = make(out if keepdim else out.reshape(
            tuple(s for i, s in enumerate(d.shape) if axes is not None and i not in axes)))
        ctx.save_for_backward(x, res)
        ctx.axes, ctx.keepdim = axes, keepdim
        return res

    @staticmethod
    def backward(ctx, g):
        x, out = ctx.saved_tensors
        shape = x.shape
        return _expand_back(g, shape, ctx.axes, ctx.keepdim) * \
            (x - _expand_back(out, shape, ctx.axes, ctx.keepdim)).exp()


class Softmax(Function):
    graph_inputs = (0,)

    @staticmethod
    def forward(ctx, x, dim):
        d = x._data
        xp = array_module(d)
        dim = normalize_dim(dim, d.ndim)
        if d.size:
            e = d - d.max(axis=dim, keepdims=True)
            xp.exp(e, out=e)
            e /= e.sum(axis=dim, keepdims=True)
        else:
            e = d.copy()
        out = make(e)
        ctx.save_for_backward(out)
        ctx.dim = dim
        return out

    @staticmethod
    def backward(ctx, g):
        y, = ctx.saved_tensors
        return SoftmaxBackward.apply(g, y, ctx.dim)


class SoftmaxBackward(Function):
    """y * (g - sum(g * y)) in one pass over arrays (four tensor ops cost 2x on small inputs);
    differentiable itself, for double backward."""

    @staticmethod
    def forward(ctx, g, y, dim):
        gy = g._data * y._data
        gy -= y._data * gy.sum(axis=dim, keepdims=True)
        ctx.save_for_backward(g, y)
        ctx.dim = dim
        return make(gy)

    @staticmethod
    def backward(ctx, gg):
        g, y = ctx.saved_tensors
        dim = ctx.dim
        need_g, need_y = ctx.needs_input_grad[:2]
        # out_i = y_i g_i - y_i s, s = sum_j g_j y_j
        dg = SoftmaxBackward.apply(gg, y, dim) if need_g else None
        dy = None
        if need_y:
            s = (g * y).sum(dim, keepdim=True)
            t = (gg * y).sum(dim, keepdim=True)
            dy = gg * (g - s) - g * t
        return dg, dy, None


class LogSoftmax(Function):
    graph_inputs = (0,)

    @staticmethod
    def forward(ctx, x, dim):
        d = x._data
        xp = array_module(d)
        dim = normalize_dim(dim, d.ndim)
        p = None
        if d.size:
            z = d - d.max(axis=dim, keepdims=True)
            e = xp.exp(z)
            s = e.sum(axis=dim, keepdims=True)
            z -= xp.log(s)
            if x.requires_grad:  # backward needs the softmax: this is cheaper than exp(y)
                e *= 1 / s
                p = e
        else:
            z = d.copy()
        out = make(z)
        ctx.save_for_backward(out)
        ctx.dim, ctx.softmax = dim, p
        return out

    @staticmethod
    def backward(ctx, g):
        y, = ctx.saved_tensors
        return LogSoftmaxBackward.apply(g, y, ctx.dim, ctx.softmax)


class LogSoftmaxBackward(Function):
    """g - exp(y) * sum(g) in one pass over arrays; differentiable itself. `softmax`, when
    given, is exp(y) as the forward computed it."""

    @staticmethod
    def forward(ctx, g, y, dim, softmax=None):
        g_sum = g._data.sum(axis=dim, keepdims=True)
        if softmax is None:
            p = array_module(y._data).exp(y._data)
            p *= g_sum
        else:
            p = softmax * g_sum
        ctx.save_for_backward(g, y)
        ctx.dim = dim
        return make(g._data - p)

    @staticmethod
    def backward(ctx, gg):
        g, y = ctx.saved_tensors
        dim = ctx.dim
        need_g, need_y = ctx.needs_input_grad[:2]
        p = y.exp()
        # out_i = g_i - p_i S, S = sum_j g_j
        dg = gg - (gg * p).sum(dim, keepdim=True) if need_g else None
        dy = -gg * p * g.sum(dim, keepdim=True) if need_y else None
        return dg, dy, None, None


class Cumsum(Function):
    graph_inputs = (0,)

    @staticmethod
    def forward(ctx, x, dim):
        d = x._data
        dim = normalize_dim(dim, d.ndim)
        ctx.dim = dim
        out = d.cumsum(axis=dim) if d.ndim else d.copy()
        if d.dtype.kind in "bui":
            out = out.astype(np.int64)
        return make(out)

    @staticmethod
    def backward(ctx, g):
        if g.ndim == 0:
            return g
        return g.flip(ctx.dim).cumsum(ctx.dim).flip(ctx.dim)


class VectorNorm(Function):
    """The p-norm over dims for finite p > 0; its gradient at 0 is 0, as in PyTorch."""
    node_name = "LinalgVectorNorm"    # x.norm() and linalg.vector_norm alike
    graph_inputs = (0,)

    @staticmethod
    def forward(ctx, x, p=2, dim=None, keepdim=False):
        d = x._data
        xp = array_module(d)
        axes = _axes(dim, d.ndim)
        a = xp.abs(d)
        if p == 2:
            out = xp.sqrt((d * d).sum(axis=axes, keepdims=keepdim))
        elif p == 1:
            out = a.sum(axis=axes, keepdims=keepdim)
        else:
            out = (a ** p).sum(axis=axes, keepdims=keepdim) ** (1.0 / p)
        res = make(xp.asarray(out))
        ctx.save_for_backward(x, res)
        ctx.p, ctx.axes, ctx.keepdim = p, axes, keepdim
        return res

    @staticmethod
    def backward(ctx, g):
        x, out = ctx.saved_tensors
        shape = x.shape
        gk = _expand_back(g, shape, ctx.axes, ctx.keepdim)
        if ctx.p == 1:
            return gk * x.sign()
        ok = _expand_back(out, shape, ctx.axes, ctx.keepdim)
        safe = ok.masked_fill(ok == 0, 1.0)
        if ctx.p == 2:
            return (gk * x / safe).masked_fill(ok == 0, 0.0)
        p = ctx.p
        return (gk * x * x.abs() ** (p - 2) / safe ** (p - 1)).masked_fill(ok == 0, 0.0)


# ---- functional API ------------------------------------------------------------------------
def sum(input, dim=None, keepdim=False, *, dtype=None):
    return Sum.apply(input, dim, keepdim, to_numpy_dtype(dtype) if dtype is not None else None)


def mean(input, dim=None, keepdim=False, *, dtype=None):
    return Mean.apply(input, dim, keepdim, to_numpy_dtype(dtype) if dtype is not None else None)


def prod(input, dim=None, keepdim=False):
    return Prod.apply(input, dim, keepdim)


def amax(input, dim=(), keepdim=False):
    reject_complex("amax", input)
    return Amax.apply(input, dim, keepdim, True)


def amin(input, dim=(), keepdim=False):
    reject_complex("amin", input)
    return Amax.apply(input, dim, keepdim, False)


def _max_min(input, dim, keepdim, other, largest):
    from ..tensor import Tensor
    reject_complex("max" if largest else "min", input)
    if isinstance(dim, Tensor):  # max(a, b): elementwise
        other, dim = dim, None
    if other is not None:
        from .elementwise import maximum, minimum
        return maximum(input, other) if largest else minimum(input, other)
    if dim is None:
        return Amax.apply(input, None, False, largest)
    return (MaxResult if largest else MinResult)(*MaxDim.apply(input, dim, keepdim, largest))


def max(input, dim=None, keepdim=False, *, other=None):
    return _max_min(input, dim, keepdim, other, True)


def min(input, dim=None, keepdim=False, *, other=None):
    return _max_min(input, dim, keepdim, other, False)


class Argmax(Function):
    """Index of the largest value (`Argmin`: smallest); an integer output has no gradient.
    A Function so that ONNX export and the profiler see it at the dispatch point."""
    method = "argmax"

    @classmethod
    def forward(cls, ctx, x, dim=None, keepdim=False):
        d = x._data
        xp = array_module(d)
        if dim is None:
            r = getattr(d.reshape(-1), cls.method)()
            out = xp.asarray(r).reshape((1,) * d.ndim if keepdim else ())
        else:
            dim = normalize_dim(dim, d.ndim)
            out = getattr(d, cls.method)(axis=dim, keepdims=keepdim) if d.ndim else \
                xp.asarray(0)
        return make(xp.asarray(out).astype(np.int64))


class Argmin(Argmax):
    method = "argmin"


def argmax(input, dim=None, keepdim=False):
    reject_complex("argmax", input)
    return Argmax.apply(input, dim, keepdim)


def argmin(input, dim=None, keepdim=False):
    reject_complex("argmin", input)
    return Argmin.apply(input, dim, keepdim)


def logsumexp(input, dim, keepdim=False):
    return Logsumexp.apply(input, dim, keepdim)


def _cast_for(input, dtype):
    if dtype is not None:
        return input.to(dtype)
    if not is_floating_np(input._data.dtype):   # bfloat16 has kind 'V'
        return input.to(get_default_dtype())
    return input


def softmax(input, dim, dtype=None):
    return Softmax.apply(_cast_for(input, dtype), dim)


def log_softmax(input, dim, dtype=None):
    return LogSoftmax.apply(_cast_for(input, dtype), dim)


def cumsum(input, dim, *, dtype=None):
    out = Cumsum.apply(input, dim)
    return out if dtype is None else out.to(dtype)


def var(input, dim=None, *, correction=1, keepdim=False, unbiased=None):
    """Variance with Bessel's correction (correction=1) by default, as in PyTorch."""
    axes, denominator = _var_args("var", input, dim, correction, unbiased)
    if input._data.dtype.kind == "f" and not dispatch.watching():
        return Var.apply(input, axes, denominator, keepdim)
    return _composed_var(input, axes, denominator, keepdim)


def _var_args(name, input, dim, correction, unbiased):
    """(axes, denominator) of a variance over `dim`, with PyTorch's warning when no degrees
    of freedom are left."""
    if unbiased is not None:
        correction = int(unbiased)
    d = input._data
    axes = _axes(dim, d.ndim)
    n = d.size if axes is None else int(np.prod([d.shape[a] for a in axes]))
    if n - correction <= 0 and d.size:
        warnings.warn(f"{name}(): degrees of freedom is <= 0. Correction should be strictly "
                      f"less than the reduction factor (input numel divided by output numel).",
                      stacklevel=3)
    return axes, _b.max(0, n - correction)


def _composed_var(input, axes, denominator, keepdim):
    """var from mean, sub, mul, sum and div (complex input; what observers see)."""
    d = input._data
    centered = input - input.mean(dim=axes, keepdim=True)
    if d.dtype.kind == "c":  # |z - mean|^2: a real variance, as in PyTorch
        squares = centered.real * centered.real + centered.imag * centered.imag
    else:
        squares = centered * centered
    return squares.sum(dim=axes, keepdim=keepdim) / denominator


class Var(Function):
    """The variance of real floating input over `axes` in one op (what `var` composes from
    mean, sub, mul, sum and div); backward 2 (x - mean) / denominator, in tensor ops."""
    graph_inputs = (0,)

    @staticmethod
    def forward(ctx, x, axes, denominator, keepdim):
        ctx.save_for_backward(x)
        ctx.axes, ctx.denominator, ctx.keepdim = axes, denominator, keepdim
        return make(_variance(x._data, axes, denominator, keepdim, sqrt=False))

    @staticmethod
    def backward(ctx, g):
        x, = ctx.saved_tensors
        return _var_grad(ctx, x, g), None, None, None


class Std(Function):
    """The standard deviation of real floating input over `axes` in one op (PyTorch's
    StdBackward0); backward (x - mean) / (denominator std), in tensor ops (nan where the
    std is 0, as in PyTorch)."""
    graph_inputs = (0,)

    @staticmethod
    def forward(ctx, x, axes, denominator, keepdim):
        out = make(_variance(x._data, axes, denominator, keepdim, sqrt=True))
        ctx.save_for_backward(x, out)
        ctx.axes, ctx.denominator, ctx.keepdim = axes, denominator, keepdim
        return out

    @staticmethod
    def backward(ctx, g):
        x, out = ctx.saved_tensors
        return _var_grad(ctx, x, g / (2 * out)), None, None, None


def _variance(d, axes, denominator, keepdim, sqrt):
    """The variance (or its square root) of the array `d` over `axes`, in d's dtype."""
    work = d if d.dtype.itemsize >= 4 else d.astype(np.float32)   # float16: sums in float32
    centered = work - work.mean(axis=axes, keepdims=True)
    squares = (centered * centered).sum(axis=axes, keepdims=keepdim)
    with np.errstate(divide="ignore", invalid="ignore"):    # no degrees of freedom: nan
        out = squares / work.dtype.type(denominator)
    xp = array_module(d)
    if sqrt:
        out = xp.sqrt(out)
    return xp.asarray(out).astype(d.dtype, copy=False)


def _var_grad(ctx, x, g):
    """The gradient of the variance of `x` over ctx.axes for the output gradient `g`."""
    centered = x - x.mean(dim=ctx.axes, keepdim=True)
    g = _expand_back(g, x.shape, ctx.axes, ctx.keepdim)
    return g * centered * (2.0 / ctx.denominator if ctx.denominator else math.inf)


def std(input, dim=None, *, correction=1, keepdim=False, unbiased=None):
    axes, denominator = _var_args("std", input, dim, correction, unbiased)
    if input._data.dtype.kind == "f" and not dispatch.watching():
        return Std.apply(input, axes, denominator, keepdim)
    return _composed_var(input, axes, denominator, keepdim).sqrt()


def var_mean(input, dim=None, *, correction=1, keepdim=False):
    return var(input, dim, correction=correction, keepdim=keepdim), \
        input.mean(dim=dim, keepdim=keepdim)


def std_mean(input, dim=None, *, correction=1, keepdim=False):
    return std(input, dim, correction=correction, keepdim=keepdim), \
        input.mean(dim=dim, keepdim=keepdim)


def norm(input, p="fro", dim=None, keepdim=False, dtype=None):
    """Vector p-norm (p=2 / 'fro' by default; inf and -inf too) over `dim`."""
    if dtype is not None:
        input = input.to(dtype)
    if input._data.dtype.kind == "c":  # the norm of complex numbers is that of their moduli
        input = input.abs()
    if p == "fro" or p is None:
        p = 2
    if p == float("inf"):
        return input.abs().amax(dim=() if dim is None else dim, keepdim=keepdim)
    if p == float("-inf"):
        return input.abs().amin(dim=() if dim is None else dim, keepdim=keepdim)
    if p == 0:
        return (input != 0).to(input.dtype).sum(dim=dim, keepdim=keepdim)
    return VectorNorm.apply(input, p, dim, keepdim)


def all(input, dim=None, keepdim=False):
    d = input._data
    return make(array_module(d).asarray(d.all(axis=_axes(dim, d.ndim), keepdims=keepdim)))


def any(input, dim=None, keepdim=False):
    d = input._data
    return make(array_module(d).asarray(d.any(axis=_axes(dim, d.ndim), keepdims=keepdim)))


def count_nonzero(input, dim=None):
    d = input._data
    return make(array_module(d).asarray((d != 0).sum(axis=_axes(dim, d.ndim))).astype(np.int64))

