"""Bind the op library to `Tensor`: methods, Python operators and in-place variants.

In-place ops run the out-of-place op on an alias of the tensor (holding its old place in the
graph), write the result into the tensor's own buffer (so views see it), bump the version
counter and move the tensor to the new graph node.
"""
import numpy as np

from ..autograd.grad_mode import is_grad_enabled
from . import random as _random
from .ops import conversion, elementwise as ew, indexing, linalg, reduction as red, shape
from .ops import complex as cx
from .ops._util import normalize_dim
from .ops.indexing import Overwrite, normalize_index
from .backend import array_module, writeable
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
    if isinstance(idx, Tensor) and idx._data.dtype == np.uint8 and not isinstance(value, Tensor):
        # PyTorch sends `x[mask] = scalar` to masked_fill_, which takes only bool masks
        raise RuntimeError(f"masked_fill_ only supports boolean masks, but got mask with dtype "
                           f"{idx.dtype}")
    index, _ = normalize_index(idx, array_module(self._data))
    _inplace_apply(self, lambda alias: Overwrite.apply(alias, value, index), value)


def _inplace_on_meta(self, compute, recording):
    """An in-place op on a meta tensor: shapes and dtypes are checked, nothing is written."""
    if recording:
        _check_not_leaf(self)
    out = compute(_alias(self) if recording else self)
    if out.shape != self.shape:
        raise RuntimeError(f"output with shape {list(self.shape)} doesn't match the broadcast "
                           f"shape {list(out.shape)} of an in-place op")
    self._version[0] += 1
    if recording:
        _rebase(self, out)
    return self


def _inplace_apply(self, compute, *others):
    """Run `compute(old_self)` out of place, then write its result into `self`'s buffer."""
    recording = is_grad_enabled() and (self.requires_grad or any(
        isinstance(o, Tensor) and o.requires_grad for o in others))
    d = self._data
    if type(d).__name__ == "MetaArray":
        return _inplace_on_meta(self, compute, recording=is_grad_enabled() and (
            self.requires_grad or any(isinstance(o, Tensor) and o.requires_grad
                                      for o in others)))
    if not writeable(d):
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
        elif kind == "rebuild":  # arg(base, new) gives it (complex parts: tensor/ops/complex.py)
            new_base = arg(_alias(base), new)
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
        src = src.to(self.device, non_blocking=non_blocking)
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
        # commutative: the tensor stays the first input, as in PyTorch's graph
        "__add__": ew.add, "__radd__": ew.add, "__sub__": ew.sub,
        "__rsub__": ew.rsub, "__mul__": ew.mul, "__rmul__": ew.mul,
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


# ---- more of torch.Tensor's surface (ops in mathfuncs, sorting, products, placement, linalg) --
def _bind_more():
    from . import dtypes, linalg as la, linalg_eig, linalg_lu
    from .ops import mathfuncs as mf, placement as pl, products as pr, sorting as so
    from .ops.scatter_reduce import scatter_reduce
    more = {name: getattr(mf, name) for name in (
        "acos", "acosh", "angle", "arccos", "arccosh", "arcsin", "arcsinh", "arctan", "arctan2",
        "arctanh", "asin", "asinh", "atan", "atan2", "atanh", "bitwise_left_shift",
        "bitwise_right_shift", "clamp_max", "clamp_min", "copysign", "cosh", "deg2rad",
        "digamma", "erfc", "erfinv", "exp2", "fix", "float_power", "fmax", "fmin", "frac",
        "frexp", "gcd", "greater", "greater_equal", "heaviside", "hypot", "i0", "isneginf",
        "isposinf", "isreal", "lcm", "ldexp", "less", "less_equal", "lgamma", "logaddexp",
        "logaddexp2", "logit", "nan_to_num", "nextafter", "not_equal", "positive", "rad2deg",
        "sgn", "signbit", "sinc", "sinh", "xlogy", "mvlgamma", "igamma", "igammac")}
    more.update({name: getattr(so, name) for name in (
        "aminmax", "argsort", "bincount", "cummax", "cummin", "cumprod", "diff", "histc",
        "kthvalue", "logcumsumexp", "median", "mode", "msort", "nanmean", "nanmedian",
        "nanquantile", "nansum", "quantile", "sort", "topk", "unique", "unique_consecutive",
        "histogram", "nonzero_static")})
    more.update({name: getattr(pr, name) for name in (
        "addbmm", "addmm", "addmv", "addr", "baddbmm", "corrcoef", "cov", "cross", "diag",
        "diag_embed", "diagflat", "diagonal", "dist", "ger", "inner", "kron", "matrix_power",
        "mv", "trace", "vdot")})
    more.update({name: getattr(pl, name) for name in (
        "dsplit", "fliplr", "flipud", "hsplit", "index_add", "index_copy", "index_fill",
        "index_put", "masked_scatter", "moveaxis", "put", "ravel", "rot90", "select",
        "select_scatter", "slice_scatter", "split_with_sizes", "swapdims", "take",
        "tensor_split", "vsplit")})
    more.update({"det": la.det, "logdet": la.logdet, "slogdet": la.slogdet,
                 "inverse": la.inverse, "pinverse": la.pinverse, "cholesky": la.legacy_cholesky,
                 "qr": la.legacy_qr, "svd": la.legacy_svd,
                 "polygamma": lambda self, n: mf.polygamma(n, self),
                 "where": lambda self, condition, other: ew.where(condition, self, other),
                 "bitwise_and": ew.bitwise_and, "bitwise_or": ew.bitwise_or,
                 "bitwise_xor": ew.bitwise_xor, "bitwise_not": ew.bitwise_not,
                 "ndimension": lambda self: self.ndim,
                 "is_complex": lambda self: self._data.dtype.kind == "c",
                 "is_signed": lambda self: self._data.dtype.kind in "fic",
                 "is_same_size": lambda self, other: tuple(self.shape) == tuple(other.shape),
                 "is_nonzero": _is_nonzero, "get_device": _get_device,
                 "apply_": _apply_, "map_": _map_})
    more.update({name: getattr(pl, name) for name in (
        "unfold", "sum_to_size", "diagonal_scatter", "fill_diagonal", "as_strided",
        "as_strided_scatter")})
    more.update({"scatter_reduce": scatter_reduce, "renorm": pr.renorm,
                 "matrix_exp": la.matrix_exp, "argwhere": indexing.argwhere,
                 "cholesky_solve": la.cholesky_solve, "lu": linalg_lu.legacy_lu,
                 "lu_solve": linalg_lu.legacy_lu_solve, "orgqr": linalg_eig.orgqr,
                 "geqrf": linalg_eig.geqrf,
                 "cholesky_inverse": la.cholesky_inverse,
                 "unsafe_chunk": shape.chunk, "unsafe_split": shape.split,
                 "unsafe_split_with_sizes": pl.split_with_sizes,
                 "narrow_copy": lambda self, dim, start, length:
                     narrow(self, dim, start, length).clone(),
                 "char": lambda self: self.to(dtypes.int8),
                 "bernoulli": _random.bernoulli,
                 "triangular_solve": la.triangular_solve,
                 "output_nr": property(lambda self: self._output_nr),
                 "data_ptr": _data_ptr,
                 # conjugation is the identity on real tensors, as in PyTorch; complex ones
                 # are conjugated eagerly, so there is never a conjugate bit to resolve
                 "conj": cx.conj, "conj_physical": cx.conj, "resolve_conj": _identity,
                 "resolve_neg": _identity, "real": property(cx.real),
                 "imag": property(cx.imag),
                 "is_conj": _false, "is_neg": _false, "is_inference": _is_inference,
                 "adjoint": lambda self: cx.conj(shape.transpose(self, -2, -1)),
                 "mH": property(lambda self: cx.conj(shape.transpose(self, -2, -1))),
                 "H": property(_matrix_transpose)})
    for name, fn in more.items():
        setattr(Tensor, name, fn)
    _methods.update(more)
    inplace = [
        "acos", "acosh", "arccos", "arccosh", "arcsin", "arcsinh", "arctan", "arctan2",
        "arctanh", "asin", "asinh", "atan", "atan2", "atanh", "clamp_max", "clamp_min",
        "copysign", "cosh", "cumprod", "cumsum", "deg2rad", "digamma", "erfc", "erfinv", "exp2",
        "fix", "float_power", "frac", "gcd", "heaviside", "hypot", "i0", "lcm", "ldexp",
        "lgamma", "logit", "nan_to_num", "nextafter", "rad2deg", "sgn", "sinc", "sinh",
        "xlogy", "index_add", "index_copy", "index_fill", "index_put", "masked_scatter", "put",
        "polygamma", "eq", "ne", "lt", "le", "gt", "ge", "greater", "greater_equal", "less",
        "less_equal", "not_equal", "logical_and", "logical_or", "logical_xor", "logical_not",
        "bitwise_and", "bitwise_or", "bitwise_xor", "bitwise_not", "subtract", "multiply",
        "divide", "true_divide", "floor_divide", "negative", "log2", "log10", "tan", "erf",
        "absolute", "bitwise_left_shift", "bitwise_right_shift", "addmm", "addmv", "addr",
        "addbmm", "baddbmm", "scatter_reduce", "renorm", "fill_diagonal", "arctan2",
        "mvlgamma", "igamma", "igammac"]
    for name in inplace:
        setattr(Tensor, name + "_", _make_inplace(_methods[name]))
    for name, fn in (("t", shape.t), ("transpose", shape.transpose),
                     ("swapaxes", shape.transpose), ("swapdims", shape.transpose),
                     ("squeeze", shape.squeeze), ("unsqueeze", shape.unsqueeze)):
        setattr(Tensor, name + "_", _reshape_inplace(fn, name + "_"))


def _identity(self):
    return self


def _data_ptr(self):
    """The address of the first element (host or device memory)."""
    d = self._data
    interface = getattr(d, "__cuda_array_interface__", None) or d.__array_interface__
    return interface["data"][0]


def _false(self):
    return False


def _is_inference(self):
    from ..autograd.grad_mode import is_inference_mode_enabled
    return bool(is_inference_mode_enabled()) and not self.requires_grad


def _matrix_transpose(self):
    if self.ndim not in (0, 2):
        raise RuntimeError(f"tensor.H is only supported on matrices (2-D tensors). Got "
                           f"{self.ndim}-D tensor.")
    return cx.conj(shape.t(self))


def _reshape_inplace(fn, name):
    """t_, transpose_, squeeze_, unsqueeze_, ...: the tensor takes the new shape itself (its
    values and memory stay); under autograd it moves to the op's node, as in PyTorch."""
    def op(self, *args, **kwargs):
        recording = is_grad_enabled() and self.requires_grad
        if recording:
            _check_not_leaf(self)
            if self._view is not None:
                raise NotImplementedError(f"{name} on a view of another tensor that requires "
                                          f"grad is not supported; use the out-of-place "
                                          f"{name[:-1]}")
        out = fn(_alias(self) if recording else self, *args, **kwargs)
        self._data = out._data
        if recording:
            self.grad_fn, self._output_nr = out.grad_fn, out._output_nr
        return self
    op.__name__ = name
    return op


def _is_nonzero(self):
    if self.numel() != 1:
        what = "no values" if self.numel() == 0 else "more than one value"
        raise RuntimeError(f"Boolean value of Tensor with {what} is ambiguous")
    return bool(self._data.reshape(()) != 0)


def _get_device(self):
    """-1 for a CPU tensor, the GPU index otherwise."""
    dev = self.device
    return -1 if dev.type == "cpu" else dev.index


def _apply_(self, callable):
    """Apply a Python function to every element in place (CPU tensors only, as in PyTorch)."""
    if self.device.type != "cpu":
        raise TypeError("apply_ is only implemented on CPU tensors")
    flat = self._data.reshape(-1)
    for i in range(flat.size):
        flat[i] = callable(flat[i].item())
    self._version[0] += 1
    return self


def _map_(self, tensor, callable):
    """self[i] = callable(self[i], tensor[i]) with `tensor` broadcast to self (CPU only)."""
    if self.device.type != "cpu":
        raise TypeError("map_ is only implemented on CPU tensors")
    other = np.broadcast_to(tensor._data, self._data.shape).reshape(-1)
    flat = self._data.reshape(-1)
    for i in range(flat.size):
        flat[i] = callable(flat[i].item(), other[i].item())
    self._version[0] += 1
    return self


_bind_more()


def _bind_legacy():
    from .legacy_types import new
    Tensor.new = new


_bind_legacy()
from . import extra_methods as _extra_methods  # noqa: E402  (binds its methods)

Tensor.index_reduce_ = _make_inplace(_extra_methods.index_reduce)


def _bind_legacy_overloads():
    """add(value, other), addcmul(value, t1, t2), var(dim, unbiased, keepdim), ... (see
    legacy_overloads): the methods and their in-place forms take the old spellings too."""
    from .legacy_overloads import INPLACE, METHODS
    for name, fn in METHODS.items():
        setattr(Tensor, name, fn)
        _methods[name] = fn
    for name, fn in INPLACE.items():
        op = _make_inplace(fn)
        op.__name__ = name
        setattr(Tensor, name, op)


_bind_legacy_overloads()
