"""Ordering ops: sort, topk, kthvalue, median, mode, quantile, cumulative max/min/product,
searchsorted/bucketize, unique, bincount, histc, NaN-ignoring reductions, diff.

The order (indices) is computed on the raw array; values are gathered from the input with the
differentiable `gather`, so every op here that returns values has PyTorch's gradient (it flows
to the chosen positions) with no backward of its own.
"""

import numpy as np

from ...autograd import Function
from ..backend import array_module
from .. import dtypes
from ..return_types import return_type
from ..tensor import Tensor
from . import elementwise as ew, reduction as red, shape
from ._util import make, named, normalize_dim
from .complex import reject_complex
from .indexing import Gather, gather

SortResult = return_type("sort", ["values", "indices"])
TopkResult = return_type("topk", ["values", "indices"])
KthvalueResult = return_type("kthvalue", ["values", "indices"])
MedianResult = return_type("median", ["values", "indices"])
ModeResult = return_type("mode", ["values", "indices"])
AminmaxResult = return_type("aminmax", ["min", "max"])


def _argsort(d, axis, descending):
    """Stable order along `axis`; NaN sorts as the largest value, as in PyTorch."""
    xp = array_module(d)
    if d.ndim == 0:
        return xp.zeros((), np.int64)
    if not descending:
        return xp.argsort(d, axis=axis, kind="stable").astype(np.int64)
    # reversed stable ascending order of the reversed input: descending, ties kept in order
    n = d.shape[axis]
    rev = xp.flip(d, axis)
    return (n - 1 - xp.flip(xp.argsort(rev, axis=axis, kind="stable"), axis)).astype(np.int64)


def sort(input, dim=-1, descending=False, stable=False):
    reject_complex("sort", input)
    dim = normalize_dim(dim, input.ndim)
    if input.ndim == 0:
        return SortResult(input.clone(), make(array_module(input._data).zeros((), np.int64)))
    idx = make(_argsort(input._data, dim, descending))
    return SortResult(_picked(input, dim, idx, "Sort"), idx)


def _picked(input, dim, idx, name, keepdim=True):
    """input's values at idx along dim, as the node of PyTorch's op `name`."""
    return named(Gather.apply(input, dim, idx, keepdim), Gather, name)


def argsort(input, dim=-1, descending=False, stable=False):
    return sort(input, dim, descending, stable).indices


def msort(input):
    return sort(input, 0).values


def topk(input, k, dim=-1, largest=True, sorted=True):
    reject_complex("topk", input)
    dim = normalize_dim(dim, input.ndim)
    n = input.shape[dim] if input.ndim else 1
    if not 0 <= k <= n:
        raise RuntimeError(f"topk: k ({k}) is out of range for dimension {dim} of size {n} "
                           f"(shape {list(input.shape)})")
    if input.ndim == 0:
        return TopkResult(input.clone(), make(_argsort(input._data, 0, largest)))
    idx = make(_first_k(input._data, dim, k, largest))
    return TopkResult(_picked(input, dim, idx, "Topk"), idx)


def _first_k(d, axis, k, largest):
    """The positions of the k largest (or smallest) entries along `axis`, in sorted order,
    ties in their original order: a partition, then a sort of those k only (O(n + k log k)
    where a full sort is O(n log n)); NaN counts as the largest value, as in PyTorch."""
    xp = array_module(d)
    n = d.shape[axis]
    if k == 0 or 4 * k >= n:
        return _argsort(d, axis, largest)[(slice(None),) * axis + (slice(0, k),)]
    cut = (slice(None),) * axis
    part = xp.argpartition(d, n - k if largest else k - 1, axis=axis)
    part = xp.sort(part[cut + ((slice(n - k, n),) if largest else (slice(0, k),))], axis=axis)
    order = _argsort(xp.take_along_axis(d, part, axis), axis, largest)
    return xp.take_along_axis(part, order, axis).astype(np.int64)


def kthvalue(input, k, dim=-1, keepdim=False):
    reject_complex("kthvalue", input)
    dim = normalize_dim(dim, input.ndim)
    n = input.shape[dim] if input.ndim else 1
    if not 1 <= k <= n:
        raise RuntimeError(f"kthvalue(): selected number k ({k}) out of range for dimension "
                           f"{dim} of size {n}")
    return _select_rank(input, dim, k - 1, keepdim, KthvalueResult, "Kthvalue")


def _select_rank(input, dim, r, keepdim, result, name):
    if input.ndim == 0:
        return result(input.clone(), make(array_module(input._data).zeros((), np.int64)))
    d = input._data
    if r < d.shape[dim] - 1:        # the (r+1)-th smallest: a partition, no sort
        part = array_module(d).argpartition(d, r, axis=dim)
        idx = make(part[(slice(None),) * dim + (slice(r, r + 1),)].astype(np.int64))
    else:
        idx = make(_first_k(d, dim, 1, True))
    values = _picked(input, dim, idx, name, keepdim)
    return result(values, idx if keepdim else idx.squeeze(dim))


def median(input, dim=None, keepdim=False):
    """The lower median; NaN if the slice holds a NaN (as in PyTorch)."""
    reject_complex("median", input)
    if dim is None:
        flat = input.reshape(-1)
        if flat.shape[0] == 0:
            return make(array_module(input._data).asarray(np.nan, input._data.dtype))
        return _select_rank(flat, 0, _nan_rank(flat, 0, nan_median=True), False,
                            MedianResult, "Median").values
    return _median_dim(input, normalize_dim(dim, input.ndim), keepdim, nan_median=True)


def nanmedian(input, dim=None, keepdim=False):
    """The lower median of the non-NaN values."""
    if dim is None:
        flat = input.reshape(-1)
        return _median_dim(flat, 0, False, nan_median=False).values
    return _median_dim(input, normalize_dim(dim, input.ndim), keepdim, nan_median=False)


def _nan_rank(flat, dim, nan_median):
    d = flat._data
    n = d.shape[dim]
    nans = int(array_module(d).isnan(d).sum()) if d.dtype.kind == "f" else 0
    if nan_median:
        return n - 1 if nans else (n - 1) // 2
    return max((n - nans - 1) // 2, 0)


def _median_dim(input, dim, keepdim, nan_median):
    if input.ndim == 0:
        return MedianResult(input.clone(), make(array_module(input._data).zeros((), np.int64)))
    d = input._data
    xp = array_module(d)
    n = d.shape[dim]
    nans = xp.isnan(d).sum(axis=dim, keepdims=True) if d.dtype.kind == "f" else \
        xp.zeros(d.shape[:dim] + (1,) + d.shape[dim + 1:], np.int64)
    if nan_median:
        rank = xp.where(nans > 0, n - 1, (n - 1) // 2)
    else:
        rank = xp.maximum((n - nans - 1) // 2, 0)
    if nan_median or not bool(nans.any()):
        # the ranks wanted are (n - 1) // 2 and n - 1 only: a partition at both (NaNs last)
        order = xp.argpartition(d, sorted({(n - 1) // 2, n - 1}), axis=dim)
    else:
        order = _argsort(d, dim, False)
    idx = make(xp.take_along_axis(order, rank.astype(np.int64), axis=dim).astype(np.int64))
    values = _picked(input, dim, idx, "MedianBackward1" if nan_median else "NanmedianBackward1",
                     keepdim)
    return MedianResult(values, idx if keepdim else idx.squeeze(dim))


def mode(input, dim=-1, keepdim=False):
    """The most frequent value along `dim` (the smallest among equally frequent ones) and the
    index of its last occurrence, as PyTorch on the CPU."""
    dim = normalize_dim(dim, input.ndim)
    if input.ndim == 0:
        return ModeResult(input.clone(), make(array_module(input._data).zeros((), np.int64)))
    d = np.moveaxis(_host(input._data), dim, -1)
    rows = d.reshape(-1, d.shape[-1])
    best = np.empty(rows.shape[0], np.int64)
    for r, row in enumerate(rows):
        vals, counts = np.unique(row, return_counts=True)
        v = vals[np.argmax(counts)]
        best[r] = np.nonzero(row == v)[0][-1]
    xp = array_module(input._data)
    idx = make(xp.asarray(np.moveaxis(best.reshape(d.shape[:-1] + (1,)), -1, dim)))
    values = _picked(input, dim, idx, "Mode", keepdim)
    return ModeResult(values, idx if keepdim else idx.squeeze(dim))


def _host(a):
    return a.get() if hasattr(a, "get") else a


_INTERPOLATIONS = ("linear", "lower", "higher", "midpoint", "nearest")


def quantile(input, q, dim=None, keepdim=False, *, interpolation="linear"):
    return _quantile(input, q, dim, keepdim, interpolation, ignore_nan=False)


def nanquantile(input, q, dim=None, keepdim=False, *, interpolation="linear"):
    return _quantile(input, q, dim, keepdim, interpolation, ignore_nan=True)


def _quantile(input, q, dim, keepdim, interpolation, ignore_nan):
    """Sort, then interpolate between the two neighbouring order statistics (differentiable
    through the sort's gather). A tensor q puts its dimension first, as in PyTorch."""
    if interpolation not in _INTERPOLATIONS:
        raise ValueError(f"quantile() interpolation must be one of {_INTERPOLATIONS}, got "
                         f"{interpolation!r}")
    if not input.is_floating_point():
        raise RuntimeError(f"quantile() input tensor must be either float or double dtype "
                           f"(got {input.dtype})")
    xp = array_module(input._data)
    scalar_q = not isinstance(q, Tensor)
    qs = np.atleast_1d(np.asarray(_host(q._data) if not scalar_q else q, np.float64))
    if qs.ndim > 1 or ((qs < 0) | (qs > 1)).any():
        raise RuntimeError(f"quantile() q must be a scalar or 1D tensor with values in "
                           f"[0, 1], got {qs.tolist()}")
    if dim is None:
        x, dim_n = input.reshape(-1), 0
    else:
        x, dim_n = input, normalize_dim(dim, input.ndim)
    if x.ndim == 0:
        x, dim_n = x.reshape(1), 0
    x = shape.movedim(x, dim_n, -1)
    srt = sort(x, -1).values
    n = srt.shape[-1]
    d = srt._data
    nans = xp.isnan(d).sum(axis=-1, keepdims=True)
    valid = (n - nans) if ignore_nan else xp.full_like(nans, n)
    outs = []
    for qv in qs:
        pos = qv * (valid - 1).astype(d.dtype)
        lo = xp.clip(xp.floor(pos), 0, n - 1).astype(np.int64)
        hi = xp.clip(xp.ceil(pos), 0, n - 1).astype(np.int64)
        frac = pos - xp.floor(pos)
        if interpolation == "lower":
            hi, frac = lo, frac * 0
        elif interpolation == "higher":
            lo, frac = hi, frac * 0
        elif interpolation == "nearest":
            near = xp.where(frac > 0.5, hi, xp.where(frac < 0.5, lo,
                                                     xp.where(lo % 2 == 0, lo, hi)))
            lo = hi = near
            frac = frac * 0
        elif interpolation == "midpoint":
            frac = xp.where(hi > lo, 0.5, 0.0).astype(d.dtype)
        a = gather(srt, -1, make(lo))
        b = gather(srt, -1, make(hi))
        val = a + (b - a) * make(frac.astype(d.dtype))
        # a NaN anywhere (quantile) or an all-NaN slice (nanquantile) gives NaN
        bad = (nans > 0) if not ignore_nan else (valid == 0)
        val = ew.where(make(bad), float("nan"), val)
        outs.append(val.squeeze(-1))
    if keepdim:
        if dim is None:
            outs = [o.reshape((1,) * input.ndim) for o in outs]
        else:
            outs = [o.unsqueeze(dim_n) for o in outs]
    if scalar_q:
        return outs[0]
    return shape.stack(outs, 0)


# ---- cumulative ----------------------------------------------------------------------------
def _cum_extreme(input, dim, largest, name):
    dim = normalize_dim(dim, input.ndim)
    if input.ndim == 0:
        return return_type(name, ["values", "indices"])(
            input.clone(), make(array_module(input._data).zeros((), np.int64)))
    m = np.moveaxis(_host(input._data), dim, -1)
    # the running extreme is attained where it last changed: idx_j = max{k <= j : x_k = M_k}
    # (ties move to the later index); after a NaN the value stays NaN and the index is the
    # latest NaN's, as in PyTorch
    running = (np.maximum if largest else np.minimum).accumulate(m, axis=-1)
    steps = np.arange(m.shape[-1])
    idx = np.maximum.accumulate(np.where(m == running, steps, 0), axis=-1)
    nans = np.isnan(m) if m.dtype.kind == "f" else None
    if nans is not None and nans.any():
        last_nan = np.maximum.accumulate(np.where(nans, steps, -1), axis=-1)
        idx = np.where(last_nan >= 0, last_nan, idx)
    xp = array_module(input._data)
    index = make(xp.asarray(np.moveaxis(idx, -1, dim)))
    return return_type(name, ["values", "indices"])(
        _picked(input, dim, index, name.capitalize()), index)


def cummax(input, dim):
    reject_complex("cummax", input)
    return _cum_extreme(input, dim, True, "cummax")


def cummin(input, dim):
    reject_complex("cummin", input)
    return _cum_extreme(input, dim, False, "cummin")


def cumprod(input, dim, *, dtype=None):
    """Running product as a chain of multiplications: exact gradients even at zeros."""
    if dtype is not None:
        input = input.to(dtype)
    elif input._data.dtype.kind in "biu":
        input = input.to(dtypes.int64)
    if input.ndim == 0 or input.numel() == 0:
        return input.clone()
    return CumProd.apply(input, normalize_dim(dim, input.ndim))


class CumProd(Function):
    """The running product; its gradient is reverse_cumsum(g * out) / x without zeros in the
    input, and that of the chain of multiplications with them (exact at zeros)."""
    node_name = "Cumprod"
    graph_inputs = (0,)

    @staticmethod
    def forward(ctx, x, dim):
        d = x._data
        out = make(array_module(d).cumprod(d, axis=dim))
        ctx.save_for_backward(x, out)
        ctx.dim = dim
        return out

    @staticmethod
    def backward(ctx, g):
        x, out = ctx.saved_tensors
        dim = ctx.dim
        if not bool((x._data == 0).any()):
            return (g * out).flip(dim).cumsum(dim).flip(dim) / x, None
        from ...autograd import grad
        from ...autograd.grad_mode import enable_grad, is_grad_enabled
        create = is_grad_enabled()
        with enable_grad():
            leaf = x if create else x.detach().requires_grad_()
            parts = shape.unbind(leaf, dim)
            chain = [parts[0]]
            for p in parts[1:]:
                chain.append(chain[-1] * p)
            return grad(shape.stack(chain, dim), leaf, g, create_graph=create)[0], None


def logcumsumexp(input, dim):
    dim = normalize_dim(dim, input.ndim) if input.ndim else 0
    if input.ndim == 0:
        return input.clone()
    m = red.amax(input, dim, keepdim=True).detach()
    m = ew.where(ew.isinf(m), 0.0, m)
    return ew.log(red.cumsum(ew.exp(input - m), dim)) + m


# ---- searching and counting (no gradients) -------------------------------------------------
def searchsorted(sorted_sequence, input, *, out_int32=False, right=False, side=None,
                 sorter=None):
    if side is not None:
        if side not in ("left", "right"):
            raise ValueError(f"side must be 'left' or 'right', got {side!r}")
        if right and side == "left":
            raise RuntimeError("searchsorted(): side and right can't be set to opposites")
        right = side == "right"
    seq = sorted_sequence._data
    xp = array_module(seq)
    scalar = not isinstance(input, Tensor)
    vals = xp.asarray(input) if scalar else input._data
    srt = sorter._data if sorter is not None else None
    how = "right" if right else "left"
    if seq.ndim <= 1:
        s = seq if srt is None else seq[srt]
        out = xp.searchsorted(s, vals, side=how)
    else:
        if seq.shape[:-1] != vals.shape[:-1]:
            raise RuntimeError(f"searchsorted(): boundaries tensor should be 1 dimension or the "
                               f"first N-1 dimensions of boundaries tensor and input value "
                               f"tensor must match, but we got boundaries tensor "
                               f"{list(seq.shape)} and input value tensor {list(vals.shape)}")
        s2 = seq.reshape(-1, seq.shape[-1])
        if srt is not None:
            s2 = xp.take_along_axis(s2, srt.reshape(s2.shape), axis=-1)
        v2 = vals.reshape(-1, vals.shape[-1])
        out = xp.stack([xp.searchsorted(s2[i], v2[i], side=how) for i in range(s2.shape[0])])
        out = out.reshape(vals.shape)
    return make(xp.asarray(out).astype(np.int32 if out_int32 else np.int64))


def bucketize(input, boundaries, *, out_int32=False, right=False):
    if boundaries.ndim != 1:
        raise RuntimeError(f"bucketize(): boundaries tensor must be 1 dimension, but got dim("
                           f"{boundaries.ndim})")
    return searchsorted(boundaries, input, out_int32=out_int32, right=right)


def unique(input, sorted=True, return_inverse=False, return_counts=False, dim=None):
    d = input._data
    xp = array_module(d)
    if dim is None:
        vals, inv, counts = xp.unique(d.reshape(-1), return_inverse=True, return_counts=True)
        inv = inv.reshape(d.shape)
    else:
        dim = normalize_dim(dim, input.ndim)
        vals, inv, counts = np.unique(_host(d), return_inverse=True, return_counts=True,
                                      axis=dim)
        vals, inv, counts = xp.asarray(vals), xp.asarray(inv.reshape(-1)), xp.asarray(counts)
    out = [make(vals)]
    if return_inverse:
        out.append(make(inv.astype(np.int64)))
    if return_counts:
        out.append(make(counts.astype(np.int64)))
    return out[0] if len(out) == 1 else tuple(out)


def unique_consecutive(input, return_inverse=False, return_counts=False, dim=None):
    d = input._data
    xp = array_module(d)
    if dim is None:
        flat = d.reshape(-1)
        if flat.size == 0:
            starts = xp.zeros(0, bool)
        else:
            starts = xp.concatenate([xp.ones(1, bool), flat[1:] != flat[:-1]])
        vals = flat[starts]
        group = xp.cumsum(starts) - 1
        inv = group.reshape(d.shape)
    else:
        dim = normalize_dim(dim, input.ndim)
        m = xp.moveaxis(d, dim, 0).reshape(d.shape[dim], -1)
        change = (m[1:] != m[:-1]).any(axis=1) if m.shape[0] else xp.zeros(0, bool)
        starts = xp.concatenate([xp.ones(min(1, m.shape[0]), bool), change])
        vals = xp.compress(starts, d, axis=dim)
        inv = xp.cumsum(starts) - 1
    counts = xp.diff(xp.concatenate([xp.nonzero(starts)[0], xp.asarray([starts.shape[0]])]))
    out = [make(vals)]
    if return_inverse:
        out.append(make(inv.astype(np.int64)))
    if return_counts:
        out.append(make(counts.astype(np.int64)))
    return out[0] if len(out) == 1 else tuple(out)


def bincount(input, weights=None, minlength=0):
    d = input._data
    if d.ndim != 1 or d.dtype.kind not in "iu":
        raise RuntimeError(f"bincount only supports 1-d non-negative integral inputs (got shape "
                           f"{list(d.shape)}, dtype {input.dtype})")
    if d.size and int(d.min()) < 0:
        raise RuntimeError(f"bincount only supports 1-d non-negative integral inputs (found "
                           f"{int(d.min())})")
    xp = array_module(d)
    if weights is None:
        return make(xp.bincount(d, minlength=minlength).astype(np.int64))
    n = max(int(d.max()) + 1 if d.size else 0, minlength)
    w = weights if weights.is_floating_point() else weights.to(dtypes.float64)
    from .indexing import Scatter
    return Scatter.apply(w.new_zeros(n), 0, input, w, True)


def histc(input, bins=100, min=0, max=0):
    d = input._data
    xp = array_module(d)
    lo, hi = float(min), float(max)
    if lo == hi and d.size:
        lo, hi = float(d.min()), float(d.max())
    if lo == hi:
        lo, hi = lo - 1, hi + 1
    if lo > hi:
        raise RuntimeError(f"histc: max must be larger than min (got min {min}, max {max})")
    counts, _ = xp.histogram(d.reshape(-1), bins=bins, range=(lo, hi))
    return make(counts.astype(d.dtype))


# ---- NaN-ignoring and paired reductions -----------------------------------------------------
def nansum(input, dim=None, keepdim=False, *, dtype=None):
    return red.sum(ew.where(ew.isnan(input), 0.0, input) if input.is_floating_point() else input,
                   dim, keepdim, dtype=dtype)


def nanmean(input, dim=None, keepdim=False, *, dtype=None):
    if not input.is_floating_point():
        raise RuntimeError(f"nanmean(): expected input to have floating point dtype but got "
                           f"{input.dtype}")
    keep = ~ew.isnan(input)
    total = red.sum(ew.where(keep, input, 0.0), dim, keepdim, dtype=dtype)
    return total / red.sum(keep.to(total.dtype), dim, keepdim)


def aminmax(input, *, dim=None, keepdim=False):
    d = () if dim is None else dim
    if dim is None and keepdim:
        return AminmaxResult(red.amin(input, d).reshape((1,) * input.ndim),
                             red.amax(input, d).reshape((1,) * input.ndim))
    return AminmaxResult(red.amin(input, d, keepdim), red.amax(input, d, keepdim))


def diff(input, n=1, dim=-1, prepend=None, append=None):
    dim = normalize_dim(dim, input.ndim)
    x = input
    if prepend is not None or append is not None:
        x = shape.cat([t for t in (prepend, x, append) if t is not None], dim)
    for _ in range(n):
        m = x.shape[dim]
        hi = x[(slice(None),) * dim + (slice(1, m),)]
        lo = x[(slice(None),) * dim + (slice(0, m - 1),)]
        x = (hi != lo) if x.dtype.name == "bool" else hi - lo
    return x


HistogramResult = return_type("histogram", ["hist", "bin_edges"])


def histogram(input, bins=100, *, range=None, weight=None, density=False):
    """Counts (or weight sums, or a density) in `bins` equal bins over `range` (default: the
    input's min and max) or between the given edges; returns (hist, bin_edges)."""
    d = input._data
    if d.dtype.kind != "f":
        raise RuntimeError(f"torch.histogram: input tensor and bins tensors should have the "
                           f"same dtype, and a floating one (got {input.dtype})")
    xp = array_module(d)
    edges = bins._data if isinstance(bins, Tensor) else int(bins)
    w = weight._data.reshape(-1) if weight is not None else None
    lo_hi = None
    if range is not None:
        lo_hi = (float(range[0]), float(range[1]))
        if lo_hi[0] > lo_hi[1]:
            raise RuntimeError(f"torch.histogram: min should not exceed max, got min "
                               f"{lo_hi[0]} max {lo_hi[1]}")
    hist, bin_edges = xp.histogram(d.reshape(-1), bins=edges, range=lo_hi, weights=w,
                                   density=density)
    return HistogramResult(make(hist.astype(d.dtype)), make(bin_edges.astype(d.dtype)))


def nonzero_static(input, *, size, fill_value=-1):
    """nonzero() padded with fill_value (or cut) to exactly `size` rows."""
    from .indexing import nonzero
    nz = nonzero(input)._data
    xp = array_module(nz)
    out = xp.full((size, max(input.ndim, 1) if input.ndim else 0), fill_value, np.int64)
    k = min(size, nz.shape[0])
    out[:k] = nz[:k]
    return make(out)
