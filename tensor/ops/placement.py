"""Index-placement ops (index_add, index_copy, index_fill, masked_scatter, take, put,
index_put, select/slice scatter) and layout helpers (rot90, fliplr, tensor_split, atleast_nd,
column_stack, ...), composed from the differentiable indexing primitives: `GetItem`,
`IndexAdd` (its adjoint) and `Overwrite`.
"""
import numpy as np

from ..backend import array_module
from ..tensor import Tensor
from . import shape
from ._util import make, normalize_dim
from .indexing import GetItem, IndexAdd, Overwrite
from .sorting import diff


def _dim_index(input, dim, index):
    if index.ndim > 1:
        raise IndexError(f"index is supposed to be a vector, got shape {list(index.shape)}")
    if index._data.dtype.kind not in "iu":
        raise IndexError(f"index_*(): Expected dtype int32/int64 for index (got "
                         f"{index.dtype})")
    dim = normalize_dim(dim, input.ndim) if input.ndim else 0
    return (slice(None),) * dim + (index._data.reshape(-1),)


def _same_dtype(src, like):
    if isinstance(src, Tensor) and src.dtype != like.dtype:
        return src.to(like.dtype)
    return src


def index_add(input, dim, index, source, *, alpha=1):
    idx = _dim_index(input, dim, index)
    src = _same_dtype(source if alpha == 1 else source * alpha, input)
    return input + IndexAdd.apply(src, tuple(input.shape), idx, False)


def index_copy(input, dim, index, source):
    return Overwrite.apply(input, _same_dtype(source, input), _dim_index(input, dim, index))


def index_fill(input, dim, index, value):
    if isinstance(value, Tensor) and value.ndim:
        raise RuntimeError(f"index_fill_ only supports a 0-dimensional value tensor, but got "
                           f"tensor with {value.ndim} dimension(s).")
    return Overwrite.apply(input, _same_dtype(value, input), _dim_index(input, dim, index))


def masked_scatter(input, mask, source):
    """Copy source's leading elements, in row-major order, to where mask is True."""
    common = np.broadcast_shapes(tuple(input.shape), tuple(mask.shape))
    m = mask._data
    if m.dtype.kind != "b":
        raise RuntimeError(f"masked_scatter_ only supports boolean masks, but got mask with "
                           f"dtype {mask.dtype}")
    xp = array_module(m)
    m = xp.broadcast_to(m, common)
    count = int(m.sum())
    if source.numel() < count:
        raise RuntimeError(f"masked_scatter: expected source to have at least {count} elements "
                           f"(the mask's True count), got {source.numel()}")
    values = source.reshape(-1)[:count]
    base = input.expand(*common) if tuple(input.shape) != common else input
    return Overwrite.apply(base, _same_dtype(values, input), (m,))


def take(input, index):
    return GetItem.apply(input.reshape(-1), (index,))


def put(input, index, source, accumulate=False):
    flat = input.reshape(-1)
    idx = (index._data.reshape(-1),)
    src = _same_dtype(source.reshape(-1), input)
    if accumulate:
        out = flat + IndexAdd.apply(src, tuple(flat.shape), idx, False)
    else:
        out = Overwrite.apply(flat, src, idx)
    return out.reshape(tuple(input.shape))


def index_put(input, indices, values, accumulate=False):
    idx = tuple(i._data if isinstance(i, Tensor) else i for i in indices)
    values = _same_dtype(values, input)
    if accumulate:
        full = tuple(idx) + (Ellipsis,)
        vshape = GetItem.apply(input.detach(), full).shape
        v = values.broadcast_to(tuple(vshape)) if isinstance(values, Tensor) else \
            make(array_module(input._data).full(tuple(vshape), values, input._data.dtype))
        return input + IndexAdd.apply(v, tuple(input.shape), full, False)
    return Overwrite.apply(input, values, idx)


def select(input, dim, index):
    dim = normalize_dim(dim, input.ndim)
    return input[(slice(None),) * dim + (int(index),)]


def select_scatter(input, src, dim, index):
    dim = normalize_dim(dim, input.ndim)
    return Overwrite.apply(input, _same_dtype(src, input), (slice(None),) * dim + (int(index),))


def slice_scatter(input, src, dim=0, start=None, end=None, step=1):
    dim = normalize_dim(dim, input.ndim)
    return Overwrite.apply(input, _same_dtype(src, input),
                           (slice(None),) * dim + (slice(start, end, step),))


# ---- layout ----------------------------------------------------------------------------------
def rot90(input, k=1, dims=(0, 1)):
    if len(dims) != 2:
        raise RuntimeError(f"expected total rotation dims == 2, but got dims = {len(dims)}")
    d0, d1 = (normalize_dim(d, input.ndim) for d in dims)
    if d0 == d1:
        raise RuntimeError(f"expected rotation dims to be different, but got dim0 = {d0} and "
                           f"dim1 = {d1}")
    k %= 4
    if k == 1:
        return shape.flip(input, d1).transpose(d0, d1)
    if k == 2:
        return shape.flip(input, (d0, d1))
    if k == 3:
        return shape.flip(input, d0).transpose(d0, d1)
    return input.clone()


def fliplr(input):
    if input.ndim < 2:
        raise RuntimeError(f"Input must be >= 2-d (got {input.ndim}-d)")
    return shape.flip(input, 1)


def flipud(input):
    if input.ndim < 1:
        raise RuntimeError("Input must be >= 1-d (got a 0-d tensor)")
    return shape.flip(input, 0)


def tensor_split(input, indices_or_sections, dim=0):
    dim = normalize_dim(dim, input.ndim)
    n = input.shape[dim]
    ios = indices_or_sections
    if isinstance(ios, Tensor):
        ios = ios.tolist()
    if isinstance(ios, int):
        if ios <= 0:
            raise RuntimeError(f"number of sections must be larger than 0, got {ios}")
        q, r = divmod(n, ios)
        sizes = [q + 1] * r + [q] * (ios - r)
        bounds = list(np.cumsum([0] + sizes))
    else:
        bounds = [0] + [min(max(int(i), 0), n) for i in ios] + [n]
    return tuple(input[(slice(None),) * dim + (slice(a, max(a, b)),)]
                 for a, b in zip(bounds[:-1], bounds[1:]))


def _split_along(name, input, ios, dim, min_ndim):
    if input.ndim < min_ndim:
        raise RuntimeError(f"torch.{name} requires a tensor with at least {min_ndim} "
                           f"dimension(s), but got a tensor with {input.ndim} dimensions!")
    if isinstance(ios, int) and input.shape[dim] % ios:
        raise RuntimeError(f"torch.{name} attempted to split along dimension {dim}, but the "
                           f"size of the dimension {input.shape[dim]} is not divisible by the "
                           f"split_size {ios}!")
    return tensor_split(input, ios, dim)


def hsplit(input, indices_or_sections):
    return _split_along("hsplit", input, indices_or_sections, 1 if input.ndim > 1 else 0, 1)


def vsplit(input, indices_or_sections):
    return _split_along("vsplit", input, indices_or_sections, 0, 2)


def dsplit(input, indices_or_sections):
    return _split_along("dsplit", input, indices_or_sections, 2, 3)


def split_with_sizes(input, split_sizes, dim=0):
    return shape.split(input, list(split_sizes), dim)


def atleast_1d(*tensors):
    return _atleast(tensors, lambda t: t.reshape(1) if t.ndim == 0 else t)


def atleast_2d(*tensors):
    return _atleast(tensors, lambda t: t.reshape(1, 1) if t.ndim == 0 else
                    (t.unsqueeze(0) if t.ndim == 1 else t))


def atleast_3d(*tensors):
    def up(t):
        if t.ndim == 0:
            return t.reshape(1, 1, 1)
        if t.ndim == 1:
            return t.reshape(1, -1, 1)
        if t.ndim == 2:
            return t.unsqueeze(-1)
        return t
    return _atleast(tensors, up)


def _atleast(tensors, up):
    if len(tensors) == 1 and isinstance(tensors[0], (list, tuple)):
        return tuple(up(t) for t in tensors[0])
    if len(tensors) == 1:
        return up(tensors[0])
    return tuple(up(t) for t in tensors)


def column_stack(tensors):
    return shape.cat([t.reshape(-1, 1) if t.ndim <= 1 else t for t in tensors], 1)


def dstack(tensors):
    return shape.cat(list(atleast_3d(list(tensors))), 2)


row_stack = shape.vstack


def ravel(input):
    return input.reshape(-1)


def swapdims(input, dim0, dim1):
    return shape.transpose(input, dim0, dim1)


moveaxis = shape.movedim


def unravel_index(indices, shape):
    d = indices._data if isinstance(indices, Tensor) else np.asarray(indices)
    if d.dtype.kind not in "iu":
        raise TypeError(f"expected 'indices' to be integer dtype, but got {d.dtype}")
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    total = int(np.prod(shape))
    if d.size and (int(d.min()) < -total or int(d.max()) >= total):
        raise RuntimeError(f"unravel_index: indices must be in [{-total}, {total - 1}] for "
                           f"shape {list(shape)}")
    xp = array_module(d)
    out = xp.unravel_index(d % total, shape)
    return tuple(make(xp.asarray(o).astype(np.int64)) for o in out)


def vander(x, N=None, increasing=False):
    n = x.shape[0] if N is None else N
    powers = [x ** i if i else x.new_ones(x.shape) for i in range(n)]
    out = shape.stack(powers, 1) if powers else x.new_zeros((x.shape[0], 0))
    return out if increasing else shape.flip(out, 1)


def trapezoid(y, x=None, *, dx=None, dim=-1):
    dim = normalize_dim(dim, y.ndim)
    n = y.shape[dim]
    lo = y[(slice(None),) * dim + (slice(0, n - 1),)]
    hi = y[(slice(None),) * dim + (slice(1, n),)]
    if x is None:
        return ((lo + hi) * (0.5 * (1.0 if dx is None else dx))).sum(dim)
    spacing = diff(x, dim=dim if x.ndim == y.ndim else -1)
    if spacing.ndim == 1 and y.ndim > 1:
        spacing = spacing.reshape((-1,) + (1,) * (y.ndim - 1 - dim))
    return ((lo + hi) * spacing * 0.5).sum(dim)


trapz = trapezoid


def cumulative_trapezoid(y, x=None, *, dx=None, dim=-1):
    dim = normalize_dim(dim, y.ndim)
    n = y.shape[dim]
    lo = y[(slice(None),) * dim + (slice(0, n - 1),)]
    hi = y[(slice(None),) * dim + (slice(1, n),)]
    if x is None:
        return ((lo + hi) * (0.5 * (1.0 if dx is None else dx))).cumsum(dim)
    spacing = diff(x, dim=dim if x.ndim == y.ndim else -1)
    if spacing.ndim == 1 and y.ndim > 1:
        spacing = spacing.reshape((-1,) + (1,) * (y.ndim - 1 - dim))
    return ((lo + hi) * spacing * 0.5).cumsum(dim)


def unfold(input, dimension, size, step):
    """Tensor.unfold: every window of `size` elements along `dimension`, `step` apart, as a new
    last dimension (a gather, so gradients of overlapping windows add up)."""
    if input.ndim == 0:
        return input.reshape(1) if size == 1 else input.reshape(1)[:0]
    dim = normalize_dim(dimension, input.ndim)
    n = input.shape[dim]
    if size > n:
        raise RuntimeError(f"maximum size for tensor at dimension {dim} is {n} but size is "
                           f"{size}")
    if step <= 0:
        raise RuntimeError(f"step is {step} but must be > 0")
    xp = array_module(input._data)
    count = (n - size) // step + 1
    windows = xp.arange(count)[:, None] * step + xp.arange(size)[None, :]
    moved = shape.movedim(input, dim, -1)
    return shape.movedim(moved[(Ellipsis, make(windows))], -2, dim)


def as_strided(input, size, stride, storage_offset=None):
    """Tensor.as_strided: the elements at `storage_offset + sum(i_k * stride[k])` of the
    tensor's memory, in the shape `size`. Read from a contiguous tensor's own elements, as a
    gather: the result is a copy (writes to it do not reach the input) and gradients add up
    where positions repeat (overlapping windows)."""
    return input.reshape(-1)[make(_strided_positions(input, size, stride, storage_offset))]


def as_strided_scatter(input, src, size, stride, storage_offset=None):
    """A copy of `input` with `src` written at the positions `as_strided` would read."""
    where = _strided_positions(input, size, stride, storage_offset)
    if tuple(src.shape) != tuple(where.shape):
        raise RuntimeError(f"as_strided_scatter: expected src to have a size equal to the "
                           f"slice of self. src size = {list(src.shape)}, slice size = "
                           f"{list(where.shape)}")
    flat = Overwrite.apply(input.reshape(-1), src.reshape(-1), make(where.reshape(-1)))
    return flat.reshape(input.shape)


def _strided_positions(input, size, stride, storage_offset):
    """The flat positions, within `input`'s own elements, that as_strided reads."""
    size, stride = tuple(int(n) for n in size), tuple(int(s) for s in stride)
    if len(size) != len(stride):
        raise RuntimeError(f"mismatch in length of strides and shape: {len(size)} sizes, "
                           f"{len(stride)} strides")
    if not input.is_contiguous():
        raise NotImplementedError(
            "as_strided of a non-contiguous tensor reads the memory under the view it is, "
            "which Phalanx does not expose; call .contiguous() first and index that")
    own = input.storage_offset()
    offset = own if storage_offset is None else int(storage_offset)
    xp = array_module(input._data)
    where = xp.full(size, offset - own, dtype=np.int64)
    for k, (n, step) in enumerate(zip(size, stride)):
        where = where + (xp.arange(n) * step).reshape((n,) + (1,) * (len(size) - k - 1))
    if where.size and (int(where.min()) < 0 or int(where.max()) >= input.numel()):
        raise RuntimeError(
            f"as_strided: sizes {list(size)}, strides {list(stride)} and storage offset "
            f"{offset} reach outside the tensor's {input.numel()} elements (from storage "
            f"offset {own})")
    return where


def sum_to_size(input, *size):
    from ._util import unbroadcast
    size = tuple(size[0]) if len(size) == 1 and isinstance(size[0], (tuple, list)) else size
    try:
        np.broadcast_shapes(tuple(size), tuple(input.shape))
        ok = np.broadcast_shapes(tuple(size), tuple(input.shape)) == tuple(input.shape)
    except ValueError:
        ok = False
    if not ok:
        raise RuntimeError(f"size {list(size)} is not expandable to size "
                           f"{list(input.shape)}")
    return unbroadcast(input, tuple(size))


def diagonal_scatter(input, src, offset=0, dim1=0, dim2=1):
    d1, d2 = normalize_dim(dim1, input.ndim), normalize_dim(dim2, input.ndim)
    moved = shape.movedim(input, (d1, d2), (-2, -1))
    n, m = moved.shape[-2], moved.shape[-1]
    length = max(0, min(n, m - offset) if offset >= 0 else min(n + offset, m))
    xp = array_module(input._data)
    i = xp.arange(length) + max(-offset, 0)
    j = xp.arange(length) + max(offset, 0)
    out = Overwrite.apply(moved, _same_dtype(src, input), (Ellipsis, i, j))
    return shape.movedim(out, (-2, -1), (d1, d2))


def fill_diagonal(input, fill_value, wrap=False):
    """The out-of-place form of Tensor.fill_diagonal_: the main diagonal set to fill_value
    (all dims equal beyond 2-D; a tall matrix restarts it every N + 1 rows when `wrap`)."""
    if input.ndim < 2:
        raise RuntimeError(f"dimensions must larger than 1 (got shape {list(input.shape)})")
    xp = array_module(input._data)
    if input.ndim > 2:
        if len(set(input.shape)) != 1:
            raise RuntimeError(f"all dimensions of input must be of equal length (got shape "
                               f"{list(input.shape)})")
        i = xp.arange(input.shape[0])
        return Overwrite.apply(input, fill_value, (i,) * input.ndim)
    n, m = input.shape
    positions = xp.arange(0, n * m, m + 1)
    if not wrap:
        positions = positions[:min(n, m)]
    rows, cols = positions // m, positions % m
    return Overwrite.apply(input, fill_value, (rows, cols))
