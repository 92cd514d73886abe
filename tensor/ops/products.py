"""Matrix and vector products beyond matmul (addmm, baddbmm, mv, kron, tensordot, ...),
diagonals, distances and index grids — each composed from differentiable primitives.
"""
import functools
import itertools

import numpy as np

from ...autograd import Function, dispatch
from ..backend import array_module
from .. import dtypes
from ..tensor import Tensor
from ..user_warnings import warn_user
from . import elementwise as ew, reduction as red, shape
from ._util import make, named, normalize_dim, unbroadcast
from .complex import conj
from .indexing import GetItem, IndexAdd
from .linalg import matmul


def _scaled(t, s):
    return t if s == 1 else t * s


def _affine(input, product, beta, alpha):
    """beta * input + alpha * product; beta == 0 ignores input (NaN included), as in PyTorch."""
    if beta == 0:
        return _scaled(product, alpha).expand(*np.broadcast_shapes(tuple(input.shape),
                                                                   tuple(product.shape)))
    return _scaled(input, beta) + _scaled(product, alpha)


def _check_ndim(name, t, n, what):
    if t.ndim != n:
        raise RuntimeError(f"{name}: {what} must be a {n}-D tensor, got shape {list(t.shape)}")


def addmm(input, mat1, mat2, *, beta=1, alpha=1):
    _check_ndim("addmm", mat1, 2, "mat1")
    _check_ndim("addmm", mat2, 2, "mat2")
    return _affine(input, matmul(mat1, mat2), beta, alpha)


def addmv(input, mat, vec, *, beta=1, alpha=1):
    return _affine(input, mv(mat, vec), beta, alpha)


def addbmm(input, batch1, batch2, *, beta=1, alpha=1):
    return _affine(input, bmm_checked(batch1, batch2).sum(0), beta, alpha)


def baddbmm(input, batch1, batch2, *, beta=1, alpha=1):
    return _affine(input, bmm_checked(batch1, batch2), beta, alpha)


def addr(input, vec1, vec2, *, beta=1, alpha=1):
    return _affine(input, outer(vec1, vec2), beta, alpha)


def bmm_checked(b1, b2):
    _check_ndim("bmm", b1, 3, "batch1")
    _check_ndim("bmm", b2, 3, "batch2")
    return matmul(b1, b2)


def mv(input, vec):
    _check_ndim("mv", input, 2, "input")
    _check_ndim("mv", vec, 1, "vec")
    return matmul(input, vec)


def outer(input, vec2):
    return input.unsqueeze(-1) * vec2


ger = outer


def inner(input, other):
    if input.ndim == 0 or other.ndim == 0:
        return input * other
    return matmul(input, other.movedim(-1, 0) if other.ndim > 1 else other) \
        if other.ndim <= 2 else tensordot(input, other, ([-1], [-1]))


def vdot(input, other):
    _check_ndim("vdot", input, 1, "input")
    _check_ndim("vdot", other, 1, "other")
    return (conj(input) * other).sum()  # the first vector conjugated, as PyTorch's


def kron(input, other):
    nd = max(input.ndim, other.ndim)
    a = input.reshape((1,) * (nd - input.ndim) + tuple(input.shape))
    b = other.reshape((1,) * (nd - other.ndim) + tuple(other.shape))
    # a[i0, 1, i1, 1, ...] * b[1, j0, 1, j1, ...] -> shape (i0*j0, i1*j1, ...)
    ai = a.reshape(tuple(itertools.chain.from_iterable((s, 1) for s in a.shape)))
    bi = b.reshape(tuple(itertools.chain.from_iterable((1, s) for s in b.shape)))
    return (ai * bi).reshape(tuple(x * y for x, y in zip(a.shape, b.shape)))


def tensordot(a, b, dims=2, out=None):
    if out is not None:
        raise NotImplementedError("tensordot(out=...) is not supported; assign the result")
    if isinstance(dims, Tensor):
        dims = dims.tolist()
    if isinstance(dims, int):
        da, db = list(range(a.ndim - dims, a.ndim)), list(range(dims))
    else:
        da, db = dims
        da = [da] if isinstance(da, int) else list(da)
        db = [db] if isinstance(db, int) else list(db)
    da = [normalize_dim(d, a.ndim) for d in da]
    db = [normalize_dim(d, b.ndim) for d in db]
    for i, j in zip(da, db):
        if a.shape[i] != b.shape[j]:
            raise RuntimeError(f"contracted dimensions need to match, but first has size "
                               f"{a.shape[i]} in dim {i} and second has size {b.shape[j]} in "
                               f"dim {j}")
    free_a = [d for d in range(a.ndim) if d not in da]
    free_b = [d for d in range(b.ndim) if d not in db]
    k = int(np.prod([a.shape[d] for d in da]))
    am = a.permute(free_a + da).reshape(-1, k)
    bm = b.permute(db + free_b).reshape(k, -1)
    return matmul(am, bm).reshape(tuple(a.shape[d] for d in free_a) +
                                  tuple(b.shape[d] for d in free_b))


def chain_matmul(*matrices):
    out = matrices[0]
    for m in matrices[1:]:
        out = matmul(out, m)
    return out


def matrix_power(input, n):
    if n < 0:
        from ..linalg import inv
        return matrix_power(inv(input), -n)
    if n == 0:
        eye = make(array_module(input._data).eye(input.shape[-1], dtype=input._data.dtype))
        return eye.expand(*input.shape)
    out = input
    for _ in range(n - 1):
        out = matmul(out, input)
    return out


# ---- diagonals -----------------------------------------------------------------------------
def diagonal(input, offset=0, dim1=0, dim2=1):
    """The diagonal of the (dim1, dim2) planes as the last dimension: a view, as PyTorch's
    (`x.diagonal().fill_(0)` writes into x), whose gradient lands on the diagonal."""
    d1, d2 = normalize_dim(dim1, input.ndim), normalize_dim(dim2, input.ndim)
    if d1 == d2:
        raise RuntimeError(f"diagonal dimensions cannot be identical {dim1}, {dim2}")
    x = input if (d1, d2) == (input.ndim - 2, input.ndim - 1) else \
        shape.movedim(input, (d1, d2), (-2, -1))
    length = _diagonal_length(x.shape[-2], x.shape[-1], offset)
    if type(x._data).__module__.split(".")[0] in ("numpy", "cupy") and \
            not dispatch.watching(Diagonal):
        return Diagonal.apply(x, offset, length)
    # meta arrays, and observers (ONNX export), get the diagonal as a gather of its elements
    return _gathered_diagonal(x, offset, length, "Diagonal")


def _diagonal_length(n, m, offset):
    return max(0, min(n, m - offset) if offset >= 0 else min(n + offset, m))


def _gathered_diagonal(x, offset, length, name):
    """A copy of the diagonal of x's last two axes, as a gather (node `name`)."""
    xp = array_module(x._data)
    i = xp.arange(length) + (max(-offset, 0))
    j = xp.arange(length) + (max(offset, 0))
    return named(GetItem.apply(x, (Ellipsis, make(i), make(j))), GetItem, name)


class Diagonal(Function):
    """The diagonal of x's last two axes (`offset` above the main one, below if negative) as
    a strided view of x's array; an in-place op on it under autograd gives x the matching
    new value (a diagonal_scatter)."""
    graph_inputs = (0,)

    @staticmethod
    def forward(ctx, x, offset, length):
        d = x._data
        corner = d[..., max(-offset, 0):, max(offset, 0):]
        view = array_module(d).lib.stride_tricks.as_strided(
            corner, corner.shape[:-2] + (length,),
            corner.strides[:-2] + (corner.strides[-2] + corner.strides[-1],))
        ctx.offset, ctx.shape = offset, tuple(x.shape)
        return x._view_of(view, "rebuild", functools.partial(_with_diagonal, offset=offset))

    @staticmethod
    def backward(ctx, g):
        zeros = make(array_module(g._data).zeros(ctx.shape, g._data.dtype))
        return _with_diagonal(zeros, g, ctx.offset), None, None


def _with_diagonal(base, new, offset):
    """`base` with `new` on the diagonal of its last two axes (differentiable in both)."""
    from .placement import diagonal_scatter
    return diagonal_scatter(base, new, offset, -2, -1)


def trace(input):
    _check_ndim("trace", input, 2, "input")
    return diagonal(input).sum()


def diag_embed(input, offset=0, dim1=-2, dim2=-1):
    n = input.shape[-1] + abs(offset)
    xp = array_module(input._data)
    k = input.shape[-1]
    i = xp.arange(k) + max(-offset, 0)
    j = xp.arange(k) + max(offset, 0)
    # out[..., i, j] = input: the adjoint of the diagonal's gather
    out = IndexAdd.apply(input, tuple(input.shape[:-1]) + (n, n), (Ellipsis, i, j), False)
    nd = out.ndim
    d1, d2 = normalize_dim(dim1, nd), normalize_dim(dim2, nd)
    return shape.movedim(out, (nd - 2, nd - 1), (d1, d2))


def diag(input, diagonal=0):
    if input.ndim == 1:
        return diag_embed(input, diagonal)
    if input.ndim == 2:         # a copy, unlike Tensor.diagonal (PyTorch's diagonal_copy)
        return _gathered_diagonal(input, diagonal, _diagonal_length(*input.shape, diagonal),
                                  "DiagonalBackward0_copy")
    raise RuntimeError(f"diag(): Supports 1D or 2D tensors. Got {input.ndim}D")


def diagflat(input, offset=0):
    return diag_embed(input.reshape(-1), offset)


def block_diag(*tensors):
    mats = [t.reshape(1, -1) if t.ndim <= 1 and t.numel() else
            (t.reshape(0, 0) if t.ndim <= 1 else t) for t in tensors]
    for t in mats:
        if t.ndim != 2:
            raise RuntimeError(f"torch.block_diag: Input tensors must have 2 or fewer "
                               f"dimensions. Input has {t.ndim} dimensions")
    rows = sum(t.shape[0] for t in mats)
    cols = sum(t.shape[1] for t in mats)
    dt = np.result_type(*[t._data.dtype for t in mats]) if mats else np.float32
    parts, c = [], 0
    for t in mats:
        left = make(array_module(t._data).zeros((t.shape[0], c), dt))
        right = make(array_module(t._data).zeros((t.shape[0], cols - c - t.shape[1]), dt))
        parts.append(shape.cat([left, t.to(dt) if t._data.dtype != dt else t, right], 1))
        c += t.shape[1]
    if not parts:
        return make(np.zeros((rows, cols), dt))
    return shape.cat(parts, 0)


def cartesian_prod(*tensors):
    grids = meshgrid(*tensors, indexing="ij")
    if len(tensors) == 1:
        return tensors[0]
    return shape.stack([g.reshape(-1) for g in grids], 1)


def combinations(input, r=2, with_replacement=False):
    _check_ndim("combinations", input, 1, "input")
    n = input.shape[0]
    pick = itertools.combinations_with_replacement if with_replacement else \
        itertools.combinations
    idx = np.array(list(pick(range(n), r)), np.int64).reshape(-1, r)
    if idx.shape[0] == 0:
        return input[make(array_module(input._data).zeros(0, np.int64))] if r <= 1 else \
            make(array_module(input._data).zeros((0, r), input._data.dtype))
    out = input[make(array_module(input._data).asarray(idx.reshape(-1)))].reshape(-1, r)
    return out.reshape(-1) if r == 1 else out


def meshgrid(*tensors, indexing=None):
    if len(tensors) == 1 and isinstance(tensors[0], (list, tuple)):
        tensors = tuple(tensors[0])
    if indexing is None:
        indexing = "ij"  # PyTorch's default (it warns that it will change; it has not)
    if indexing not in ("ij", "xy"):
        raise ValueError(f"torch.meshgrid: indexing must be one of 'xy' or 'ij', but received: "
                         f"{indexing}")
    ts = list(tensors)
    swap = indexing == "xy" and len(ts) >= 2
    if swap:
        ts[0], ts[1] = ts[1], ts[0]
    sizes = tuple(t.numel() for t in ts)
    out = []
    for i, t in enumerate(ts):
        view = [1] * len(ts)
        view[i] = -1
        out.append(t.reshape(view).expand(*sizes))
    if swap:  # 'xy' is 'ij' with the first two inputs (and outputs) exchanged
        out[0], out[1] = out[1], out[0]
    return tuple(out)


def tril_indices(row, col, offset=0, *, dtype=None, device=None, layout=None):
    return _tri_indices(row, col, offset, np.tril_indices, dtype, device, layout)


def triu_indices(row, col, offset=0, *, dtype=None, device=None, layout=None):
    return _tri_indices(row, col, offset, np.triu_indices, dtype, device, layout)


def _tri_indices(row, col, offset, fn, dtype, device, layout):
    if layout is not None and str(layout) != "torch.strided":
        raise NotImplementedError(f"layout={layout} is not supported (only strided tensors)")
    from ..creation import tensor
    i, j = fn(row, offset, col)
    return tensor(np.stack([i, j]).astype(np.int64), dtype=dtype or "int64", device=device)


# ---- distances -----------------------------------------------------------------------------
def cdist(x1, x2, p=2.0, compute_mode="use_mm_for_euclid_dist_if_necessary"):
    """Pairwise p-norm distances between the rows of x1 (..., P, M) and x2 (..., R, M)."""
    if x1.shape[-1] != x2.shape[-1]:
        raise RuntimeError(f"X1 and X2 must have the same number of columns. X1: "
                           f"{x1.shape[-1]} X2: {x2.shape[-1]}")
    if compute_mode not in ("use_mm_for_euclid_dist_if_necessary", "use_mm_for_euclid_dist",
                            "donot_use_mm_for_euclid_dist"):
        raise ValueError(f"{compute_mode} is not a valid value for compute_mode")
    by_products = p == 2 and (compute_mode == "use_mm_for_euclid_dist" or (
        compute_mode == "use_mm_for_euclid_dist_if_necessary" and
        (x1.shape[-2] > 25 or x2.shape[-2] > 25)))
    if by_products:
        return EuclideanDistances.apply(x1, x2)
    return red.norm(x1.unsqueeze(-2) - x2.unsqueeze(-3), p, dim=-1)


class EuclideanDistances(Function):
    """cdist for p = 2 as PyTorch's matrix-product form: sqrt(|a|^2 - 2 a.b + |b|^2), one
    GEMM instead of a (P, R, M) difference; a zero distance gets a zero gradient."""

    @staticmethod
    def forward(ctx, x1, x2):
        a, b = x1._data, x2._data
        xp = array_module(a)
        squares = (a * a).sum(-1)[..., :, None] + (b * b).sum(-1)[..., None, :]
        d = squares - 2 * (a @ b.swapaxes(-1, -2))
        xp.sqrt(xp.maximum(d, 0, out=d), out=d)
        out = make(d)
        ctx.save_for_backward(x1, x2, out)
        return out

    @staticmethod
    def backward(ctx, g):
        x1, x2, dist = ctx.saved_tensors
        zero = dist == 0
        ratio = (g / dist.masked_fill(zero, 1.0)).masked_fill(zero, 0.0)
        g1 = g2 = None
        if ctx.needs_input_grad[0]:
            g1 = unbroadcast(x1 * ratio.sum(-1, keepdim=True) - matmul(ratio, x2),
                             tuple(x1.shape))
        if ctx.needs_input_grad[1]:
            g2 = unbroadcast(x2 * ratio.sum(-2).unsqueeze(-1) -
                             matmul(ratio.transpose(-1, -2), x1), tuple(x2.shape))
        return g1, g2


def dist(input, other, p=2):
    return red.norm(input - other, p)


def cross(input, other, dim=None):
    if dim is None:
        warn_user("Using torch.cross without specifying the dim arg is deprecated.\nPlease "
                  "either pass the dim explicitly or simply use torch.linalg.cross.\nThe "
                  "default value of dim will change to agree with that of linalg.cross in a "
                  "future release.")
        dim = next((i for i, s in enumerate(np.broadcast_shapes(tuple(input.shape),
                                                                tuple(other.shape))) if s == 3),
                   None)
        if dim is None:
            raise RuntimeError("no dimension of size 3 in input")
    common = np.broadcast_shapes(tuple(input.shape), tuple(other.shape))
    a, b = input.broadcast_to(common), other.broadcast_to(common)
    dim = normalize_dim(dim, a.ndim)
    if a.shape[dim] != 3:
        raise RuntimeError(f"linalg.cross: inputs dimension {dim} must have length 3. Got "
                           f"{a.shape[dim]} and {b.shape[dim]}")
    a0, a1, a2 = shape.unbind(a, dim)
    b0, b1, b2 = shape.unbind(b, dim)
    return shape.stack([a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0], dim)


def cov(input, *, correction=1, fweights=None, aweights=None):
    if fweights is not None or aweights is not None:
        raise NotImplementedError("cov(fweights=..., aweights=...) is not supported")
    x = input if input.ndim == 2 else input.reshape(1, -1)
    if not x.is_floating_point():
        x = x.to(dtypes.float32)
    n = x.shape[1]
    xc = x - x.mean(1, keepdim=True)
    c = matmul(xc, xc.transpose(0, 1)) / max(n - correction, 0)
    return c.reshape(()) if input.ndim < 2 else c


def corrcoef(input):
    c = cov(input)
    if c.ndim == 0:
        return c / c
    d = ew.sqrt(diagonal(c))
    return ew.clamp(c / d.unsqueeze(1) / d.unsqueeze(0), -1, 1)


def renorm(input, p, dim, maxnorm):
    """Each slice along `dim` whose p-norm exceeds maxnorm is scaled down to norm maxnorm."""
    if maxnorm < 0:
        raise RuntimeError(f"renorm: expected maxnorm to be >= 0 but got {maxnorm}")
    dim = normalize_dim(dim, input.ndim)
    others = tuple(d for d in range(input.ndim) if d != dim)
    norms = red.norm(input, p, others, keepdim=True) if others else input.abs()
    factor = ew.where(norms > maxnorm, maxnorm / (norms + 1e-7), 1.0)
    return input * factor
