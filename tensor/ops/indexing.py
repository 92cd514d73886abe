"""Indexing: x[idx] (basic and advanced), x[idx] = v, gather, scatter, scatter_add,
index_select, masked_fill. Gradients through repeated indices accumulate."""
import numpy as np

from ...autograd import Function
from ..backend import add_at, array_module, can_check, on_host
from ..tensor import Tensor
from ..user_warnings import warn_user
from ._util import arr, make, named, normalize_dim, unbroadcast

_BASIC = (int, slice, type(None), type(Ellipsis))


def _one(i, xp):
    if isinstance(i, Tensor):
        a = i._data
        if a.dtype.kind not in "biu":
            raise IndexError(f"tensors used as indices must be long, int, byte or bool tensors "
                             f"(got {i.dtype})")
        if a.dtype == np.uint8:          # a byte tensor is a mask, as in PyTorch (deprecated)
            warn_user("indexing with dtype phalanx.uint8 is now deprecated, please use a dtype "
                      "phalanx.bool instead.")
            return a.astype(bool)
        return a
    if isinstance(i, (list, tuple)) or isinstance(i, np.ndarray):
        a = xp.asarray(np.asarray(i) if not hasattr(i, "__cuda_array_interface__") else i)
        if a.dtype.kind == "f" and a.size == 0:
            a = a.astype(np.int64)
        return a
    if isinstance(i, bool):
        return i
    if hasattr(i, "__index__") and not isinstance(i, (slice, type(Ellipsis))):
        return int(i) if not isinstance(i, np.ndarray) else i
    return i


def normalize_index(idx, xp):
    """A tuple index for NumPy/CuPy; bool arrays expanded to integer arrays (for add_at)."""
    if not isinstance(idx, tuple):
        idx = (idx,)
    out = []
    basic = True
    for i in idx:
        i = _one(i, xp)
        if not isinstance(i, _BASIC) or isinstance(i, bool):
            basic = False
            if hasattr(i, "dtype") and i.dtype.kind == "b" and i.ndim:
                out.extend(i.nonzero())
                continue
        out.append(i)
    if not any(i is Ellipsis for i in out):
        out.append(Ellipsis)  # keeps 0-d results arrays (views) rather than scalars
    return tuple(out), basic


def _index_node_name(idx, basic):
    """PyTorch's node for an index: Index (advanced), else that of the last component that
    does something: Select (an int), Slice or Unsqueeze (None)."""
    if not basic:
        return "Index"
    for i in reversed(idx if isinstance(idx, tuple) else (idx,)):
        if isinstance(i, int):
            return "Select"
        if i is None:
            return "Unsqueeze"
        if isinstance(i, slice) and i != slice(None):
            return "Slice"
    return "Slice"


class GetItem(Function):
    graph_inputs = (0,)

    @staticmethod
    def forward(ctx, x, idx):
        d = x._data
        index, basic = normalize_index(idx, array_module(d))
        ctx.node_name = _index_node_name(idx, basic)
        if d.ndim == 0 and any(isinstance(i, (int, slice)) and not isinstance(i, bool) or
                               getattr(i, "dtype", None) is not None and i.dtype.kind in "iu"
                               for i in index):
            raise IndexError("invalid index of a 0-dim tensor. Use `tensor.item()` in Python "
                             "to convert a 0-dim tensor to a number")
        try:
            out = d[index]
        except IndexError as e:
            raise IndexError(f"{e} (indexing a tensor of shape {list(d.shape)})") from None
        ctx.shape, ctx.index, ctx.basic = d.shape, index, basic
        return x._view_of(out, "index", index) if basic else make(out)

    @staticmethod
    def backward(ctx, g):
        return IndexAdd.apply(g, ctx.shape, ctx.index, ctx.basic), None


class IndexAdd(Function):
    """zeros(shape)[index] += g: the adjoint of GetItem."""

    @staticmethod
    def forward(ctx, g, shape, index, basic):
        d = g._data
        xp = array_module(d)
        out = xp.zeros(shape, d.dtype)
        if basic:
            out[index] = d
        else:
            add_at(xp, out, index, d)
        ctx.index, ctx.basic = index, basic
        return make(out)

    @staticmethod
    def backward(ctx, gg):
        return GetItem.apply(gg, ctx.index), None, None, None


class Overwrite(Function):
    """out = x with out[index] = value (setitem, copy_, fill_, masked_fill_)."""

    @staticmethod
    def forward(ctx, x, value, index):
        d = x._data
        out = d.copy()
        v = arr(value)
        if hasattr(v, "dtype") and v.dtype != d.dtype:
            v = v.astype(d.dtype)
        if hasattr(v, "ndim") and type(v) is not type(d) and not np.isscalar(v):
            raise RuntimeError("setitem: value is on a different device than the tensor; "
                               "move it with .to(tensor.device)")
        try:
            out[index] = v
        except ValueError as e:
            raise RuntimeError(f"shape mismatch in assignment: value of shape "
                               f"{list(np.shape(v))} cannot be broadcast to the indexed shape "
                               f"of a tensor of shape {list(d.shape)} ({e})") from None
        ctx.index = index
        ctx.vshape = tuple(v.shape) if hasattr(v, "shape") else ()
        return make(out)

    @staticmethod
    def backward(ctx, g):
        nx, nv = ctx.needs_input_grad[:2]
        gx = Overwrite.apply(g, 0.0, ctx.index) if nx else None
        gv = unbroadcast(GetItem.apply(g, ctx.index), ctx.vshape) if nv else None
        return gx, gv, None


def _along_dim_index(idx, dim):
    """Full advanced-index tuple addressing positions idx along dim (for add_at)."""
    xp = array_module(idx)
    nd = idx.ndim  # open grids built by hand: CuPy's `indices` has no `sparse=`
    grids = [xp.arange(n).reshape((1,) * i + (n,) + (1,) * (nd - i - 1))
             for i, n in enumerate(idx.shape)]
    grids[dim] = idx
    return tuple(grids)


def _check_index_tensor(name, index, input_ndim):
    if index._data.dtype.kind not in "iu":
        raise RuntimeError(f"{name}(): Expected dtype int64 for index (got {index.dtype})")
    if index.ndim != input_ndim and index.numel() > 0:
        raise RuntimeError(f"{name}(): Index tensor must have the same number of dimensions "
                           f"as input tensor ({index.ndim} vs {input_ndim})")


def _check_gather_bounds(idx, size, dim):
    high, low = int(idx.max()), int(idx.min())
    if high >= size or low < -size:
        raise IndexError(f"gather(): index {high if high >= size else low} is out of bounds for "
                         f"dimension {dim} with size {size}")


class Gather(Function):
    """x's entries at `index` along `dim`; `keepdim=False` drops `dim` (of size 1) from the
    result, so that sort-style ops that pick one value (kthvalue, median, mode) are one node,
    as in PyTorch."""
    graph_inputs = (0,)       # the index is not an input of PyTorch's node

    @staticmethod
    def forward(ctx, x, dim, index, keepdim=True):
        d = x._data
        _check_index_tensor("gather", index, d.ndim)
        dim = normalize_dim(dim, d.ndim)
        idx = index._data
        sl = tuple(slice(0, idx.shape[i]) if i != dim else slice(None) for i in range(d.ndim))
        xp = array_module(d)
        if idx.size and can_check(idx) and not on_host(idx):    # a GPU does not check them
            _check_gather_bounds(idx, d.shape[dim], dim)
        ctx.shape, ctx.dim, ctx.index, ctx.keepdim = d.shape, dim, index, keepdim
        try:
            out = xp.take_along_axis(d[sl], idx, axis=dim)
            return make(out if keepdim else out.squeeze(dim))
        except IndexError:      # NumPy's check: say it in PyTorch's words
            _check_gather_bounds(idx, d.shape[dim], dim)
            raise

    @staticmethod
    def backward(ctx, g):
        # one index per row along dim (a log_prob's pick) cannot land twice: a plain scatter
        scatter = "scatter" if ctx.index.shape[ctx.dim] == 1 else "scatter_add"
        if not ctx.keepdim:
            g = g.unsqueeze(ctx.dim)
        return getattr(g.new_zeros(ctx.shape), scatter)(ctx.dim, ctx.index, g), None, None, None


class Scatter(Function):
    graph_inputs = (0, 3)     # self and src

    @staticmethod
    def forward(ctx, x, dim, index, src, accumulate=False):
        d = x._data
        _check_index_tensor("scatter", index, d.ndim)
        dim = normalize_dim(dim, d.ndim)
        idx = index._data
        xp = array_module(d)
        s = arr(src)
        if hasattr(s, "shape") and s.ndim:
            s = s[tuple(slice(0, n) for n in idx.shape)]
        else:
            s = xp.full(idx.shape, s, d.dtype)
        out = d.copy()
        full = _along_dim_index(idx, dim)
        if accumulate:
            add_at(xp, out, full, s.astype(d.dtype, copy=False))
        else:
            out[full] = s
        ctx.dim, ctx.index, ctx.accumulate = dim, index, accumulate
        if accumulate:
            ctx.node_name = "ScatterAdd"
        ctx.src_shape = tuple(src.shape) if isinstance(src, Tensor) else None
        return make(out)

    @staticmethod
    def backward(ctx, g):
        nx, _, _, ns = ctx.needs_input_grad[:4]
        gx = gs = None
        if nx:
            gx = g if ctx.accumulate else g.scatter(ctx.dim, ctx.index, 0.0)
        if ns:
            gs = g.gather(ctx.dim, ctx.index)
            if tuple(gs.shape) != ctx.src_shape:  # src larger than index: zero the rest
                gs = pad_to(gs, ctx.src_shape)
        return gx, None, None, gs, None


def pad_to(t, shape):
    out = t.new_zeros(shape)
    return Overwrite.apply(out, t, tuple(slice(0, n) for n in t.shape))


# ---- functional API ------------------------------------------------------------------------
def getitem(input, idx):
    return GetItem.apply(input, idx)


def gather(input, dim, index):
    return Gather.apply(input, dim, index)


def scatter(input, dim, index, src=None, value=None):
    return Scatter.apply(input, dim, index, src if src is not None else value, False)


def scatter_add(input, dim, index, src):
    return Scatter.apply(input, dim, index, src, True)


def index_select(input, dim, index):
    if index.ndim > 1:
        raise IndexError(f"index_select(): Index is supposed to be a vector, got shape "
                         f"{list(index.shape)}")
    dim = normalize_dim(dim, input.ndim)
    return named(GetItem.apply(input, (slice(None),) * dim + (index.reshape(-1),)), GetItem,
                 "IndexSelect")


def take_along_dim(input, indices, dim):
    return gather(input, dim, indices)


def _check_mask(mask, name):
    if mask.dtype.is_floating_point or mask.dtype.is_complex or mask._data.dtype.kind != "b":
        raise RuntimeError(f"{name} only supports boolean masks, but got mask with dtype "
                           f"{mask.dtype}")


def masked_fill(input, mask, value):
    from .elementwise import Where, where
    _check_mask(mask, "masked_fill_")
    if isinstance(value, Tensor) and value.ndim:
        raise RuntimeError(f"masked_fill only supports a 0-dimensional value tensor, but got "
                           f"tensor with {value.ndim} dimension(s).")
    name, inputs = "MaskedFillBackward1", (2, 1)     # masked_fill.Tensor: self and value
    if not isinstance(value, Tensor):
        value = make(array_module(input._data).asarray(value).astype(input._data.dtype))
        name, inputs = "MaskedFill", (2,)
    out = where(mask, value.to(input.dtype) if value.dtype != input.dtype else value, input)
    return named(out, Where, name, inputs)


def masked_select(input, mask):
    if mask._data.dtype.kind != "b":
        raise RuntimeError("masked_select: expected BoolTensor for mask")
    return GetItem.apply(input.expand(*np.broadcast_shapes(tuple(input.shape),
                                                           tuple(mask.shape))),
                         mask.expand(*np.broadcast_shapes(tuple(input.shape),
                                                          tuple(mask.shape))))


def nonzero(input, *, as_tuple=False):
    d = input._data
    xp = array_module(d)
    nz = xp.nonzero(d if d.ndim else d.reshape(1))
    if as_tuple:
        return tuple(make(i.astype(np.int64)) for i in nz)
    return make(xp.stack(nz, axis=1).astype(np.int64) if nz else xp.zeros((0, 0), np.int64))


def argwhere(input):
    return nonzero(input)


def one_hot(tensor, num_classes=-1):
    d = tensor._data
    if d.dtype.kind not in "iu":
        raise RuntimeError(f"one_hot is only applicable to index tensor (got {tensor.dtype})")
    xp = array_module(d)
    n = int(d.max()) + 1 if num_classes < 0 else num_classes
    if d.size and can_check(d) and (int(d.min()) < 0 or int(d.max()) >= n):
        raise RuntimeError(f"one_hot: class values must be in [0, {n}); got min {int(d.min())}"
                           f", max {int(d.max())}")
    return make((d[..., None] == xp.arange(n)).astype(np.int64))
