"""`out=`: PyTorch's functions write their result into a given tensor and return it.

    r = phalanx.empty(2, 2)
    phalanx.add(a, b, out=r)           # r holds a + b; the call returns r itself

Each function PyTorch gives an `out` parameter is wrapped once, here (not in its op): the
result is computed as usual and copied into `out`, which is resized if its shape differs (with
PyTorch's warning when it had elements) and keeps its dtype (a result that cannot be cast
safely to it raises). As in PyTorch, `out=` refuses arguments that require grad.
"""
import functools
import inspect

import numpy as np

from .tensor import Tensor
from .user_warnings import warn_user
from ..autograd import is_grad_enabled

# PyTorch's functions that take out= (and Phalanx has)
NAMES = (
    "abs", "acos", "acosh", "add", "addbmm", "addcdiv", "addcmul", "addmm", "addmv", "addr",
    "all", "amax", "amin", "aminmax", "angle", "any", "arange", "argmax", "argmin", "asin",
    "asinh", "atan", "atan2", "atanh", "baddbmm", "bernoulli", "bitwise_and",
    "bitwise_left_shift", "bitwise_not", "bitwise_or", "bitwise_right_shift", "bitwise_xor",
    "bmm", "bucketize", "cat", "ceil", "chain_matmul", "cholesky", "cholesky_inverse",
    "cholesky_solve", "clamp", "clip", "column_stack", "complex", "concat", "concatenate",
    "conj_physical", "copysign", "cos", "cosh", "cross", "cummax", "cummin", "cumprod",
    "cumsum", "deg2rad", "diag", "diff", "digamma", "div", "divide", "dot", "dstack", "empty",
    "eq", "erf", "erfc", "erfinv", "exp", "exp2", "expm1", "eye", "fix", "float_power",
    "floor", "floor_divide", "fmax", "fmin", "fmod", "frac", "frexp", "full", "gather", "gcd",
    "ge", "ger", "greater", "greater_equal", "gt", "heaviside", "histc", "hstack", "hypot",
    "i0", "igamma", "igammac", "index_select", "inner", "inverse", "isneginf", "isposinf",
    "kron", "kthvalue", "lcm", "ldexp", "le", "lerp", "less", "less_equal", "lgamma",
    "linspace", "log", "log10", "log1p", "log2", "logaddexp", "logaddexp2", "logcumsumexp",
    "logical_and", "logical_not", "logical_or", "logical_xor", "logit", "logspace",
    "logsumexp", "lt", "masked_select", "matmul", "matrix_power", "max", "maximum", "mean",
    "median", "min", "minimum", "mm", "mode", "msort", "mul", "multinomial", "multiply", "mv",
    "mvlgamma", "nan_to_num", "nanmean", "nanmedian", "nanquantile", "nansum", "narrow_copy",
    "ne", "neg", "negative", "nextafter", "nonzero", "norm", "normal", "not_equal", "ones",
    "outer", "polar", "polygamma", "pow", "prod", "qr", "quantile", "rad2deg", "rand",
    "randint", "randn", "randperm", "range", "reciprocal", "remainder", "renorm", "round",
    "row_stack", "rsqrt", "searchsorted", "sgn", "sigmoid", "sign", "signbit", "sin", "sinc",
    "sinh", "sort", "sqrt", "square", "stack", "std", "std_mean", "sub", "subtract", "sum",
    "svd", "take_along_dim", "tan", "tanh", "topk", "triangular_solve", "tril", "triu",
    "trunc", "var", "var_mean", "vdot", "vstack", "where", "xlogy", "zeros")


def accepts_out(fn):
    """`fn` with PyTorch's keyword-only `out=` (a tensor, or a tuple of tensors for a
    function that returns several)."""
    @functools.wraps(fn)
    def call(*args, out=None, **kwargs):
        if out is None:
            return fn(*args, **kwargs)
        name = fn.__name__
        if is_grad_enabled() and any(_requires_grad(a) for a in (*args, *kwargs.values(),
                                                                   out)):
            raise RuntimeError(f"{name}(): functions with out=... arguments don't support "
                               f"automatic differentiation, but one of the arguments requires "
                               f"grad.")
        result = fn(*args, **kwargs)
        if isinstance(result, tuple):
            outs = tuple(out) if isinstance(out, (tuple, list)) else None
            if outs is None or len(outs) != len(result):
                raise TypeError(f"{name}(): out= must be a tuple of {len(result)} tensors")
            for r, o in zip(result, outs):
                _write(name, r, o)
            return type(result)(*outs) if hasattr(result, "_fields") else outs
        _write(name, result, out)
        return out

    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return call
    if "out" not in signature.parameters:
        params = list(signature.parameters.values())
        at = next((i for i, p in enumerate(params) if p.kind is p.VAR_KEYWORD), len(params))
        params.insert(at, inspect.Parameter("out", inspect.Parameter.KEYWORD_ONLY,
                                            default=None))
        call.__signature__ = signature.replace(parameters=params)
    return call


def _requires_grad(value):
    if isinstance(value, Tensor):
        return value.requires_grad
    if isinstance(value, (list, tuple)):
        return any(_requires_grad(v) for v in value)
    return False


def _write(name, result, out):
    if not isinstance(out, Tensor):
        raise TypeError(f"{name}(): argument 'out' must be Tensor, not {type(out).__name__}")
    src, dst = result._data, out._data
    if not np.can_cast(src.dtype, dst.dtype, casting="same_kind"):
        raise RuntimeError(f"result type {result.dtype} can't be cast to the desired output "
                           f"type {out.dtype}")
    if tuple(src.shape) != tuple(dst.shape):
        if dst.size:
            warn_user(f"An output with one or more elements was resized since it had shape "
                      f"{list(dst.shape)}, which does not match the required output shape "
                      f"{list(src.shape)}. This behavior is deprecated, and in a future "
                      f"release outputs will not be resized unless they have zero elements. "
                      f"You can explicitly reuse an out tensor t by resizing it, inplace, to "
                      f"zero elements with t.resize_(0).")
        out._data = src.astype(dst.dtype, copy=True)
    else:
        dst[...] = src
    out._version[0] += 1
