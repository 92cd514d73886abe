"""Bind the op library to `Tensor`: methods, Python operators and in-place variants.

In-place ops run the out-of-place op on an alias of the tensor (holding its old place in the
graph), write the result into the tensor's own buffer (so views see it), bump the version
counter and move the tensor to the new graph node.
"""
import numpy as np

from ..autograd.grad_mode import is_grad_enabled
from . import random as _random
from .ops import conversion, elementwise as ew, indexing, linalg, reduction as red, shape
from .ops._util import normalize_dim
from .ops.indexing import Overwrite, normalize_index
from .backend import array_module
from .tensor import Tensor

_methods = {
    # elementwise
    "add": ew.add, "sub": ew.sub, "subtract": ew.sub, "mul": ew.mul, "multiply": ew.mul,
    "div": ew.div, "divide": ew.div, "true_divide": ew.true_divide,
    "floor_divide": ew.floor_divide, "remainder": ew.remainder, "fmod": ew.fmod, "pow": ew.pow,
    "maximum": ew.maximum, "minimum": ew.minimum, "neg": ew.neg, "negative": ew.neg,
    "exp": ew.exp, "log": ew.log, "log2": ew.log2, "log10": ew.log10, "log1p": ew.log1p,
    "expm1": ew.expm1, "sqrt": ew.sqrt, "rsqrt": ew.rsqrt, "square": ew.square,
    "reciprocal": ew.reciprocal, "sin": ew.sin, "cos": ew.cos, "tan": ew.tan, "tanh": ew.tanh,
    "sigmoid": ew.sigmoid, "relu": ew.relu, "erf": ew.erf, "abs": ew.abs, "absolute": ew.abs,
    "sign": ew.sign, "clamp": ew.clamp, "clip": ew.clamp, "lerp": ew.lerp,
    "floor": ew.floor, "ceil": ew.ceil, "trunc": ew.trunc, "round": ew.round,
    "isnan": ew.isnan, "isinf": ew.isinf, "isfinite": ew.isfinite,
    "eq": ew.eq, "ne": ew.ne, "lt": ew.lt, "le": ew.le, "gt": ew.gt, "ge": ew.ge,
    "logical_and": ew.logical_and, "logical_or": ew.logical_or,
    "logical_xor": ew.logical_xor, "logical_not": ew.logical_not, "equal": ew.equal,
    "allclose": ew.allclose, "isclose": ew.isclose, "addcmul": ew.addcmul,
    "addcdiv": ew.addcdiv,
    # reductions
    "sum": red.sum, "mean": red.mean, "prod": red.prod, "amax": red.amax, "amin": red.amin,
    "max": red.max, "min": red.min, "argmax": red.argmax, "argmin": red.argmin,
    "logsumexp": red.logsumexp, "softmax": red.softmax, "log_softmax": red.log_softmax,
    "cumsum": red.cumsum, "var": red.var, "std": red.std, "norm": red.norm, "all": red.all,
    "any": red.any, "count_nonzero": red.count_nonzero,
    # linear algebra
    "matmul": linalg.matmul, "mm": linalg.mm, "bmm": linalg.bmm, "dot": linalg.dot,
    "outer": linalg.outer,
    # shape
    "reshape": shape.reshape, "view": shape.view, "permute": shape.permute,
    "transpose": shape.transpose, "swapaxes": shape.transpose, "t": shape.t,
    "movedim": shape.movedim, "expand": shape.expand, "expand_as": shape.expand_as,
    "broadcast_to": shape.broadcast_to, "squeeze": shape.squeeze,
    "unsqueeze": shape.unsqueeze, "flatten": shape.flatten, "unflatten": shape.unflatten,
    "split": shape.split, "chunk": shape.chunk, "unbind": shape.unbind, "flip": shape.flip,
    "roll": shape.roll, "tile": shape.tile, "repeat": shape.repeat,
    "repeat_interleave": shape.repeat_interleave, "tril": shape.tril, "triu": shape.triu,
    # indexing
    "gather": indexing.gather, "scatter": indexing.scatter,
    "scatter_add": indexing.scatter_add, "index_select": indexing.index_select,
    "masked_fill": indexing.masked_fill, "masked_select": indexing.masked_select,
    "nonzero": indexing.nonzero, "take_along_dim": indexing.take_along_dim,
    # conversion
    "clone": conversion.clone, "contiguous": conversion.contiguous,
}


def narrow(input, dim, start, length):
    """The slice [start, start + length) of dimension `dim`, as a view sharing memory."""
    dim = normalize_dim(dim, input.ndim)
    size = input.shape[dim]
    start = int(start)  # a 0-d integer tensor is accepted, as in PyTorch
    if not -size <= start <= size:
        raise IndexError(f"narrow(): start out of range (expected to be in range of "
                         f"[{-size}, {size}], but got {start})")
    if start < 0:
        start += size
    if length < 0 or start + length > size:
        raise RuntimeError(f"narrow(): start ({start}) + length ({length}) exceeds dimension "
                           f"size ({size}) of dim {dim} (shape {list(input.shape)})")
    return input[(slice(None),) * dim + (slice(start, start + length),)]


def _view_as(self, other):
    return shape.reshape(self, tuple(other.shape))


def _reshape_as(self, other):
    return shape.reshape(self, tuple(other.shape))


def _setitem(self, idx, value):
    index, _ = normalize_index(idx, array_module(self._data))
    _inplace_apply(self, lambda alias: Overwrite.apply(alias, value, index), value)


def _inplace_apply(self, compute, *others):
    """Run `compute(old_self)` out of place, then write its result into `self`'s buffer."""
    recording = is_grad_enabled() and (self.requires_grad or any(
        isinstance(o, Tensor) and o.requires_grad for o in others))
    d = self._data
    if not d.flags.writeable:
        raise RuntimeError(f"unsupported operation: more than one element of the written-to "
                           f"tensor (shape {list(d.shape)}) refers to a single memory location "
                           f"(an expanded tensor?). Call .clone() before the in-place op.")
    if recording:
        _check_not_leaf(self)
        old = _alias(self)
        out = compute(old)
        node = out.grad_fn
        if node is not None and node._saved and any(t is old for t in node._saved):
            old._data = d.copy()  # backward needs the values we are about to overwrite
    else:
        out = compute(self)
    res = out._data
    if res.dtype != d.dtype and not np.can_cast(res.dtype, d.dtype, "same_kind"):
        raise RuntimeError(f"result type {res.dtype} can't be cast to the desired output type "
                           f"{d.dtype} (in-place op on a {d.dtype} tensor); convert first")
    if res.shape != d.shape:
        raise RuntimeError(f"output with shape {list(d.shape)} doesn't match the broadcast "
                           f"shape {list(res.shape)} of an in-place op")
    d[...] = res
    self._version[0] += 1
    if recording:
        _rebase(self, out)
    return self


def _alias(t):
    """A tensor over t's buffer at t's current place in the graph, with its own version."""
    a = Tensor._make(t._data)
    a.requires_grad, a.grad_fn, a._output_nr = t.requires_grad, t.grad_fn, t._output_nr
    return a


def _check_not_leaf(t):
    while t is not None:
        if t.requires_grad and t.grad_fn is None:
            raise RuntimeError(
                f"a leaf Variable that requires grad (shape {list(t.shape)}), or a view of "
                f"one, is being used in an in-place operation. Wrap it in `with "
                f"phalanx.no_grad():` (e.g. for weight updates) or use an out-of-place op.")
        t = t._view[0] if t._view is not None else None


def _rebase(t, new):
    """`t` now holds `new`'s values: give it new's place in the graph and, when t is a view,
    give the tensor it views the matching new value (recursively)."""
    t.grad_fn, t._output_nr, t.requires_grad = new.grad_fn, new._output_nr, True
    if t._view is not None:
        base, kind, arg = t._view
        if kind == "index":
            new_base = Overwrite.apply(_alias(base), new, arg)
        elif kind == "reshape":
            new_base = new.reshape(base.shape)
        else:  # permute: arg is the inverse permutation
            new_base = new.permute(arg)
        _rebase(base, new_base)


def _make_inplace(fn):
    def op(self, *args, **kwargs):
        return _inplace_apply(self, lambda s: fn(s, *args, **kwargs), *args)
    op.__name__ = fn.__name__ + "_"
    return op


_inplace_names = ["add", "sub", "mul", "div", "pow", "neg", "exp", "log", "sqrt", "rsqrt",
                  "sin", "cos", "tanh", "sigmoid", "relu", "abs", "clamp", "clip", "lerp",
                  "floor", "ceil", "trunc", "round", "sign", "reciprocal", "square", "log1p",
                  "expm1", "maximum", "minimum", "tril", "triu", "masked_fill", "scatter",
                  "scatter_add", "remainder", "fmod", "erf", "addcmul", "addcdiv"]


def _copy_(self, src, non_blocking=False):
    src_arr = src._data if isinstance(src, Tensor) else src
    if isinstance(src, Tensor) and type(src_arr) is not type(self._data):
        src = src.to(self.device)
    return _inplace_apply(self, lambda s: Overwrite.apply(s, src, (Ellipsis,)), src)


def _fill_(self, value):
    return _inplace_apply(self, lambda s: Overwrite.apply(s, value, (Ellipsis,)), value)


def _zero_(self):
    return _fill_(self, 0)


def _rop(fn):
    def op(self, other):
        return fn(other, self)
    return op


def _bind():
    for name, fn in _methods.items():
        setattr(Tensor, name, fn)
    for name in _inplace_names:
        setattr(Tensor, name + "_", _make_inplace(_methods[name]))
    Tensor.view_as = _view_as
    Tensor.narrow = narrow
    Tensor.multinomial = _random.multinomial
    Tensor.reshape_as = _reshape_as
    Tensor.copy_ = _copy_
    Tensor.fill_ = _fill_
    Tensor.zero_ = _zero_
    Tensor.__getitem__ = indexing.getitem
    Tensor.__setitem__ = _setitem
    Tensor.uniform_ = _random.uniform_
    Tensor.normal_ = _random.normal_
    Tensor.bernoulli_ = _random.bernoulli_
    Tensor.random_ = _random.random_
    Tensor.exponential_ = _random.exponential_
    ops = {
        "__add__": ew.add, "__radd__": _rop(ew.add), "__sub__": ew.sub,
        "__rsub__": _rop(ew.sub), "__mul__": ew.mul, "__rmul__": _rop(ew.mul),
        "__truediv__": ew.div, "__rtruediv__": _rop(ew.div),
        "__floordiv__": ew.floor_divide, "__rfloordiv__": _rop(ew.floor_divide),
        "__mod__": ew.remainder, "__rmod__": _rop(ew.remainder),
        "__pow__": ew.pow, "__rpow__": _rop(ew.pow), "__matmul__": linalg.matmul,
        "__rmatmul__": _rop(linalg.matmul), "__neg__": ew.neg, "__abs__": ew.abs,
        "__pos__": lambda self: self,
        "__eq__": ew.eq, "__ne__": ew.ne, "__lt__": ew.lt, "__le__": ew.le, "__gt__": ew.gt,
        "__ge__": ew.ge, "__and__": ew.logical_and_or_bitwise("and"),
        "__or__": ew.logical_and_or_bitwise("or"), "__xor__": ew.logical_and_or_bitwise("xor"),
        "__invert__": ew.bitwise_not,
    }
    for name, fn in ops.items():
        setattr(Tensor, name, fn)
    Tensor.__iadd__ = _make_inplace(ew.add)
    Tensor.__isub__ = _make_inplace(ew.sub)
    Tensor.__imul__ = _make_inplace(ew.mul)
    Tensor.__itruediv__ = _make_inplace(ew.div)


_bind()
