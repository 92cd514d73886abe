"""scatter_reduce: src values reduced into input at index along dim with sum, prod, mean, amax
or amin (PyTorch's `Tensor.scatter_reduce`), with PyTorch's gradients: mean divides by the
count, amax/amin share the gradient evenly among the tied winners, prod gives each element the
product of the others (zeros included)."""
import numpy as np

from ...autograd import Function
from ..backend import add_at, array_module, ufunc_at
from ..tensor import Tensor
from ._util import make, normalize_dim
from .elementwise import where
from .indexing import _along_dim_index, _check_index_tensor

_UFUNC = {"sum": "add", "mean": "add", "prod": "multiply", "amax": "maximum",
          "amin": "minimum"}


def _identity(reduce, dtype):
    if reduce in ("sum", "mean"):
        return 0
    if reduce == "prod":
        return 1
    if dtype.kind == "f":
        return -np.inf if reduce == "amax" else np.inf
    info = np.iinfo(dtype)
    return info.min if reduce == "amax" else info.max


class ScatterReduce(Function):
    @staticmethod
    def forward(ctx, x, dim, index, src, reduce, include_self=True):
        d = x._data
        _check_index_tensor("scatter_reduce", index, d.ndim)
        if reduce not in _UFUNC:
            raise RuntimeError(f"reduce argument must be either sum, prod, mean, amax or amin, "
                               f"got {reduce}")
        dim = normalize_dim(dim, d.ndim)
        xp = array_module(d)
        idx = index._data
        full = _along_dim_index(idx, dim)
        s = src._data[tuple(slice(0, n) for n in idx.shape)].astype(d.dtype, copy=False)
        out = d.copy()
        if not include_self:
            out[full] = _identity(reduce, d.dtype)
        ufunc_at(xp, _UFUNC[reduce], out, full, s)
        counts = None
        if reduce == "mean":
            counts = xp.zeros(d.shape, np.int64 if d.dtype.kind != "f" else d.dtype)
            add_at(xp, counts, full, 1)
            if include_self:
                counts = counts + 1
            counts = xp.maximum(counts, 1)
            out = out // counts if d.dtype.kind in "iu" else out / counts
        ctx.dim, ctx.index, ctx.reduce, ctx.include_self = dim, index, reduce, include_self
        ctx.counts, ctx.src_shape = counts, tuple(src.shape)
        res = make(out)
        ctx.save_for_backward(x, src, res)
        return res

    @staticmethod
    def backward(ctx, g):
        x, src, out = ctx.saved_tensors
        nx, _, _, ns = ctx.needs_input_grad[:4]
        dim, index, reduce = ctx.dim, ctx.index, ctx.reduce
        src = src[tuple(slice(0, n) for n in index.shape)]
        scattered = make(_scattered_mask(x._data, dim, index._data))
        keep_self = (~scattered).to(g.dtype) if not ctx.include_self else None
        gx = gs = None
        if reduce == "sum":
            gx = g if keep_self is None else g * keep_self
            gs = g.gather(dim, index)
        elif reduce == "mean":
            gm = g / make(ctx.counts.astype(g._data.dtype))
            gx = gm if keep_self is None else gm * keep_self
            gs = gm.gather(dim, index)
        elif reduce in ("amax", "amin"):
            self_win = (x == out).to(g.dtype)
            src_win = (src == out.gather(dim, index)).to(g.dtype)
            # as PyTorch does, input ties count in the share even when include_self is False
            ties = self_win.scatter_add(dim, index, src_win)
            share = g / ties
            gx = share * self_win if keep_self is None else share * self_win * keep_self
            gs = share.gather(dim, index) * src_win
        else:  # prod: each element gets the product of the others in its group
            gx, gs = _prod_grads(ctx, g, x, src, keep_self)
        if gs is not None and tuple(gs.shape) != ctx.src_shape:
            from .indexing import pad_to
            gs = pad_to(gs, ctx.src_shape)
        return (gx if nx else None), None, None, (gs if ns else None), None, None


def _scattered_mask(d, dim, idx):
    xp = array_module(d)
    mask = xp.zeros(d.shape, bool)
    mask[_along_dim_index(idx, dim)] = True
    return mask


def _prod_grads(ctx, g, x, src, keep_self):
    dim, index = ctx.dim, ctx.index
    x_nz = x.masked_fill(x == 0, 1.0)
    src_nz = src.masked_fill(src == 0, 1.0)
    x_zero = (x == 0).to(g.dtype)
    if keep_self is not None:   # self is not part of a scattered position's group
        x_nz = x_nz.masked_fill(keep_self == 0, 1.0)
        x_zero = x_zero * keep_self
    src_zero = (src == 0).to(g.dtype)
    nz_prod = ScatterReduce.apply(x_nz, dim, index, src_nz, "prod", True)
    zeros = x_zero.scatter_add(dim, index, src_zero)

    def grad_of(e, e_nz, zero_count, prod_nz, gg):
        only_zero = (zero_count == 1).to(gg.dtype)
        no_zero = (zero_count == 0).to(gg.dtype)
        return gg * where(e == 0, prod_nz * only_zero, no_zero * prod_nz / e_nz)

    gx = grad_of(x, x_nz, zeros, nz_prod, g)
    if keep_self is not None:
        gx = gx * keep_self
    gs = grad_of(src, src_nz, zeros.gather(dim, index), nz_prod.gather(dim, index),
                 g.gather(dim, index))
    return gx, gs


def scatter_reduce(input, dim, index, src, reduce, *, include_self=True):
    if not isinstance(src, Tensor):
        raise TypeError(f"scatter_reduce(): src must be a Tensor, got {type(src).__name__}")
    return ScatterReduce.apply(input, dim, index, src, reduce, include_self)
