"""Sparse COO tensors (`layout=phalanx.sparse_coo`), as graph networks use them.

A sparse tensor is its indices (an int64 array, sparse_dim x nnz, never differentiated) and
its values (a dense Tensor, nnz x the dense dims). Every operation is written on the values
with the dense ops, so gradients reach the values, and whatever they were computed from,
without sparse gradient tensors: a sparse leaf's `.grad` is `sparse(indices, values.grad)`,
the leaf's own pattern (the rule of `torch.sparse.mm`; PyTorch's `torch.mm` gives a dense
gradient instead). Products with dense matrices run on scipy.sparse or cupyx.scipy.sparse
(compiled COO kernels), chosen by the array module like every other kernel.

Dense ops do not take sparse tensors: the array a sparse tensor holds in `_data` refuses every
array operation with a message naming it and the fix (`.to_dense()`), instead of being misread.
"""
import functools
import math

import numpy as np

from ..autograd import Function
from .backend import array_module, device_of, ufunc_at
from .dtypes import get_default_dtype, int64
from .extra_methods import layout
from .memory_formats import check_memory_format
from .ops._util import normalize_dim
from .ops.indexing import GetItem, IndexAdd
from .tensor import Tensor, as_device, to_arguments

sparse_coo = layout("sparse_coo")
make = Tensor._make

_OFFERED = "phalanx.sparse offers mm, addmm, sum, softmax and log_softmax"


def _refuse(what):
    raise NotImplementedError(
        f"{what} is not supported for sparse COO tensors (layout=phalanx.sparse_coo): convert "
        f"with .to_dense() first; {_OFFERED}, and sparse tensors add, multiply, transpose and "
        f"coalesce")


class SparseArray:
    """What a sparse tensor holds as its `_data`: the shape and dtype every tensor reports,
    and a clear refusal from every array operation a dense op would try on it."""

    __slots__ = ("shape", "dtype")

    def __init__(self, shape, dtype):
        self.shape, self.dtype = tuple(shape), dtype

    ndim = property(lambda self: len(self.shape))
    size = property(lambda self: math.prod(self.shape))
    itemsize = property(lambda self: self.dtype.itemsize)

    def __array_ufunc__(self, ufunc, method, *args, **kwargs):
        _refuse(f"'{ufunc.__name__}'")

    def __array_function__(self, func, types, args, kwargs):
        _refuse(f"'{func.__name__}'")

    def __array__(self, *args, **kwargs):
        _refuse("conversion to an array")

    def __getattr__(self, name):
        if name.startswith("__"):   # protocol probes (__array_interface__, ...): absent
            raise AttributeError(name)
        _refuse(f"'{name}'")

    def _refused(self, *args):
        _refuse("this operation")

    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = __truediv__ = \
        __rtruediv__ = __matmul__ = __rmatmul__ = __neg__ = __pow__ = __getitem__ = \
        __setitem__ = __iter__ = __float__ = __int__ = _refused


class SparseTensor(Tensor):
    """A sparse COO tensor: a `Tensor` for `isinstance`, with sparse methods of its own."""

    __slots__ = ("_idx", "_vals", "_coalesced")

    def __init__(self, *args, **kwargs):
        raise TypeError("make sparse tensors with phalanx.sparse_coo_tensor(indices, values, "
                        "size) or dense.to_sparse()")

    @classmethod
    def _of(cls, idx, vals, shape, coalesced=False):
        """Wrap an index array and a values Tensor (package-internal, no checks)."""
        t = Tensor.__new__(cls)
        t._idx, t._vals, t._coalesced = idx, vals, coalesced
        t._data = SparseArray(shape, vals._data.dtype)
        t._view, t._output_nr, t._version = None, 0, [0]
        t._hooks = t._post_hooks = None
        return t

    def _like(self, vals, coalesced=None):
        """This pattern with other values."""
        return SparseTensor._of(self._idx, vals, self.shape,
                                self._coalesced if coalesced is None else coalesced)

    # ---- autograd: the values' ---------------------------------------------------------
    @property
    def requires_grad(self):
        return self._vals.requires_grad

    @requires_grad.setter
    def requires_grad(self, flag):
        self._vals.requires_grad = flag

    @property
    def grad_fn(self):
        return self._vals.grad_fn

    @property
    def grad(self):
        """The gradient by entry, as PyTorch's: every stored duplicate of an entry gets the
        entry's gradient, so an uncoalesced leaf's is read at each entry's first copy."""
        g = self._vals.grad
        if g is None or self._coalesced:
            return None if g is None else self._like(g)
        xp = array_module(self._idx)
        _, first = xp.unique(_linear(self._idx, tuple(self.shape[:self.sparse_dim()])),
                             return_index=True)
        return SparseTensor._of(self._idx[:, first], GetItem.apply(g, (first,)), self.shape,
                                True)

    @grad.setter
    def grad(self, g):
        if g is not None and not (type(g) is SparseTensor and g._idx is self._idx):
            raise RuntimeError("a sparse tensor's .grad can only be None or a sparse tensor "
                               "of its own pattern")
        self._vals.grad = None if g is None else g._vals

    def register_hook(self, hook):
        """`hook(grad)` with the gradient as a sparse tensor of this pattern; a returned one
        replaces it."""
        def on_values(g):
            replaced = hook(self._like(g))
            return None if replaced is None else replaced._values()
        return self._vals.register_hook(on_values)

    # ---- what it is --------------------------------------------------------------------
    layout = sparse_coo
    is_sparse = True

    @property
    def device(self):
        return device_of(self._vals._data)

    def sparse_dim(self):
        return self._idx.shape[0]

    def dense_dim(self):
        return self._vals.ndim - 1

    def _nnz(self):
        return self._idx.shape[1]

    def is_coalesced(self):
        return self._coalesced

    def _indices(self):
        return make(self._idx)

    def _values(self):
        return self._vals

    def indices(self):
        self._require_coalesced("indices")
        return make(self._idx)

    def values(self):
        self._require_coalesced("values")
        return self._vals

    def _require_coalesced(self, what):
        if not self._coalesced:
            raise RuntimeError(f"Cannot get {what} on an uncoalesced tensor, please call "
                               f".coalesce() first")

    def numpy(self, *, force=False):
        raise TypeError("can't convert Sparse layout tensor to numpy. Use Tensor.to_dense() "
                        "first.")

    def __repr__(self):
        from .printing import tensor_repr

        def field(name, t):
            text = tensor_repr(t, show_dtype=False).replace("\n", "\n" + " " * (len(name) + 8))
            return f"{name}={text}"
        tail = f"size={tuple(self.shape)}, nnz={self._nnz()}"
        if self.dtype not in (get_default_dtype(), int64):
            tail += f", dtype={self.dtype}"
        tail += ", layout=phalanx.sparse_coo"
        if self.grad_fn is not None:
            tail += f", grad_fn=<{self.grad_fn.name()}>"
        elif self.requires_grad:
            tail += ",\n       requires_grad=True"
        return (f"tensor({field('indices', make(self._idx))},\n"
                f"       {field('values', self._vals.detach())},\n       {tail})")

    # ---- conversions -------------------------------------------------------------------
    def coalesce(self):
        """Duplicates summed, entries in row-major order."""
        if self._coalesced:
            return self
        idx, xp = self._idx, array_module(self._idx)
        sparse_shape = tuple(self.shape[:self.sparse_dim()])
        if self._nnz() == 0:
            return self._like(self._vals, True)
        unique, inverse = xp.unique(_linear(idx, sparse_shape), return_inverse=True)
        new_idx = xp.stack(xp.unravel_index(unique, sparse_shape)).astype(np.int64) \
            if sparse_shape else xp.zeros((0, 1), np.int64)
        vals = IndexAdd.apply(self._vals, (len(unique),) + tuple(self._vals.shape[1:]),
                              (inverse.reshape(-1),), False)
        return SparseTensor._of(new_idx, vals, self.shape, True)

    def to_dense(self, dtype=None, *, masked_grad=None):
        """The dense tensor; its gradient reaches the values, so it is masked to the pattern
        (PyTorch's default, masked_grad=True)."""
        if masked_grad is False:
            raise NotImplementedError("to_dense(masked_grad=False): a sparse tensor's gradient "
                                      "in Phalanx is always its pattern's (masked_grad=True)")
        sd = self.sparse_dim()
        sparse_shape = tuple(self.shape[:sd])
        flat = IndexAdd.apply(self._vals, (math.prod(sparse_shape),) + tuple(self.shape[sd:]),
                              (_linear(self._idx, sparse_shape),), False)
        dense = flat.reshape(tuple(self.shape))
        return dense if dtype is None else dense.to(dtype)

    def to_sparse(self, sparse_dim=None, *, layout=None, blocksize=None, dense_dim=None):
        if sparse_dim not in (None, self.sparse_dim()) or layout not in (None, sparse_coo) or \
                blocksize is not None or dense_dim is not None:
            _refuse(f"to_sparse(sparse_dim={sparse_dim}, layout={layout}, "
                    f"blocksize={blocksize}, dense_dim={dense_dim}) of a sparse tensor")
        return self

    def to_sparse_coo(self):
        return self

    def to(self, *args, dtype=None, device=None, copy=False, non_blocking=False,
           memory_format=None):
        check_memory_format(memory_format, "to")
        dtype, device = to_arguments(args, dtype, device)
        vals = self._vals.to(dtype=dtype, device=device, copy=copy, non_blocking=non_blocking)
        idx = self._idx
        if device is not None:
            idx = make(idx).to(as_device(device))._data
        return self if vals is self._vals and idx is self._idx else \
            SparseTensor._of(idx, vals, self.shape, self._coalesced)

    def __deepcopy__(self, memo):
        vals = self._vals.__deepcopy__(memo)    # refuses a non-leaf, as a dense tensor's
        copied = SparseTensor._of(self._idx.copy(), vals, self.shape, self._coalesced)
        memo[id(self)] = copied
        return copied

    def contiguous(self, memory_format=None):
        check_memory_format(memory_format, "contiguous")
        return self

    def is_contiguous(self, memory_format=None):
        check_memory_format(memory_format, "is_contiguous")
        return True

    def clone(self, *, memory_format=None):
        check_memory_format(memory_format, "clone")
        return self._like(self._vals.clone())

    def detach(self):
        return self._like(self._vals.detach())

    # ---- arithmetic --------------------------------------------------------------------
    def add(self, other, *, alpha=1):
        return add(self, other, alpha=alpha)

    def sub(self, other, *, alpha=1):
        return add(self, other, alpha=-alpha)

    def mul(self, other):
        return mul(self, other)

    def div(self, other):
        if isinstance(other, Tensor) and other.ndim:
            _refuse("division by a tensor")
        return self._like(self._vals / other)

    true_divide = __truediv__ = div

    def neg(self):
        return self._like(-self._vals)

    __neg__ = negative = neg

    def pow(self, exponent):
        if isinstance(exponent, Tensor) or exponent <= 0:
            _refuse("pow with a tensor or a non-positive exponent (zeros would not stay zero)")
        return self._pointwise(lambda v: v ** exponent)

    __pow__ = pow

    def __add__(self, other):
        return add(self, other)

    def __radd__(self, other):
        return add(other, self)

    def __sub__(self, other):
        return add(self, other, alpha=-1)

    def __rsub__(self, other):
        return add(other, self, alpha=-1)

    __mul__ = __rmul__ = mul

    def _pointwise(self, fn):
        """fn on the values, which is fn on the tensor when fn(0) == 0 (duplicates summed
        first: fn need not be linear)."""
        s = self.coalesce()
        return s._like(fn(s._vals))

    # ---- products ----------------------------------------------------------------------
    def mm(self, mat2):
        return mm(self, mat2)

    def matmul(self, other):
        return matmul(self, other)

    __matmul__ = matmul

    def __rmatmul__(self, other):
        return matmul(other, self)

    # ---- shape and reductions ----------------------------------------------------------
    def transpose(self, dim0, dim1):
        sd, n = self.sparse_dim(), self.ndim
        d0, d1 = normalize_dim(dim0, n), normalize_dim(dim1, n)
        if d0 == d1:
            return self
        shape = list(self.shape)
        shape[d0], shape[d1] = shape[d1], shape[d0]
        if d0 < sd and d1 < sd:
            order = list(range(sd))
            order[d0], order[d1] = d1, d0
            return SparseTensor._of(self._idx[order], self._vals, tuple(shape), False)
        if d0 >= sd and d1 >= sd:
            return SparseTensor._of(self._idx, self._vals.transpose(d0 - sd + 1, d1 - sd + 1),
                                    tuple(shape), self._coalesced)
        _refuse("transposing a sparse dim with a dense dim")

    def t(self):
        if self.ndim > 2:
            raise RuntimeError(f"t() expects a tensor with <= 2 dimensions, but self is "
                               f"{self.ndim}D")
        return self.transpose(0, 1) if self.ndim == 2 else self

    T = property(t)

    def sum(self, dim=None, keepdim=False, *, dtype=None):
        if keepdim:
            _refuse("sum(keepdim=True)")
        return sparse_sum(self, dim, dtype=dtype)


def _zero_preserving(name):
    def op(self):
        return self._pointwise(lambda v: getattr(v, name)())
    op.__name__ = name
    return op


# elementwise functions with f(0) == 0, as PyTorch runs them on COO tensors
ZERO_PRESERVING = ("abs", "sqrt", "square", "sin", "sinh", "tan", "tanh", "asin", "asinh",
                   "atan", "atanh", "expm1", "log1p", "sign", "sgn", "floor", "ceil", "round",
                   "trunc", "relu", "erf", "deg2rad", "rad2deg", "nan_to_num")
for _name in ZERO_PRESERVING:
    setattr(SparseTensor, _name, _zero_preserving(_name))
SparseTensor.__abs__ = SparseTensor.abs
SparseTensor.absolute = SparseTensor.abs


def _linear(idx, shape):
    """Each column of `idx` as a row-major position in `shape`."""
    xp = array_module(idx)
    if not shape:
        return xp.zeros(idx.shape[1], np.int64)
    return xp.ravel_multi_index(tuple(idx), shape).astype(np.int64, copy=False)


# ---- construction ----------------------------------------------------------------------------
def sparse_coo_tensor(indices, values, size=None, *, dtype=None, device=None, pin_memory=False,
                      requires_grad=False, check_invariants=None, is_coalesced=None):
    """A sparse COO tensor of `values` (nnz x dense dims) at `indices` (sparse_dim x nnz); the
    size is inferred from the indices when not given. Gradients reach `values` when it
    requires grad."""
    from .creation import tensor as new_tensor
    if pin_memory:
        raise NotImplementedError("sparse_coo_tensor: pin_memory=True is not supported")
    if not isinstance(values, Tensor):
        values = new_tensor(values, device=device)
    if not isinstance(indices, Tensor):
        indices = new_tensor(indices, device=values.device)
    if indices.ndim != 2:
        raise RuntimeError(f"indices must be sparse_dim x nnz, but got: {list(indices.shape)}")
    if dtype is not None:
        values = values.to(dtype)
    if device is not None:
        values = values.to(as_device(device))
    idx = make(indices._data).to(values.device)._data.astype(np.int64, copy=False)
    sd, nnz = idx.shape
    if values.ndim == 0 or values.shape[0] != nnz:
        raise RuntimeError(f"indices and values must have same nnz, but got nnz from indices: "
                           f"{nnz}, nnz from values: {values.shape[0] if values.ndim else 0}")
    dense_shape = tuple(values.shape[1:])
    if size is None:
        sparse_shape = tuple(int(m) + 1 for m in idx.max(axis=1)) if nnz else (0,) * sd
        size = sparse_shape + dense_shape
    size = tuple(int(s) for s in size)
    if len(size) != sd + len(dense_shape) or tuple(size[sd:]) != dense_shape:
        raise RuntimeError(f"'len(size) == sparse_dim + dense_dim' is not satisfied: len(size) "
                           f"= {len(size)}, sparse_dim = {sd}, dense_dim = {len(dense_shape)} "
                           f"(values of shape {list(values.shape)} need size[{sd}:] == "
                           f"{list(dense_shape)})")
    # always checked (O(nnz)): PyTorch's check_invariants=False only skips checks whose
    # failure is undefined behaviour there
    _check_indices(idx, size, bool(is_coalesced))
    if requires_grad:
        values = values.detach().requires_grad_()
    return SparseTensor._of(idx, values, size, bool(is_coalesced) or nnz <= 1)


def _check_indices(idx, size, coalesced):
    """PyTorch's invariants: indices within the size, and sorted without repeats when the
    tensor is said to be coalesced."""
    if idx.shape[1] == 0:
        return
    lows, highs = idx.min(axis=1).tolist(), idx.max(axis=1).tolist()
    for d, (low, high) in enumerate(zip(lows, highs)):
        if low < 0:
            raise RuntimeError(f"found negative index {low} for dim {d}")
        if high >= size[d]:
            raise RuntimeError(f"size is inconsistent with indices: for dim {d}, size is "
                               f"{size[d]} but found index {high}")
    if coalesced and idx.shape[1] > 1 and \
            not bool((array_module(idx).diff(_linear(idx, size[:idx.shape[0]])) > 0).all()):
        raise RuntimeError("sparse_coo_tensor(is_coalesced=True): the indices are not sorted "
                           "without repeats; leave is_coalesced out and call .coalesce()")


_invariants_checked = [False]


class check_sparse_tensor_invariants:
    """`torch.sparse`'s context manager and switch for checking sparse tensors as they are
    made. Phalanx always checks them (the switch is kept for code that sets or reads it)."""

    def __init__(self, enable=True):
        self.state, self.saved = bool(enable), None

    @staticmethod
    def is_enabled():
        return _invariants_checked[0]

    @staticmethod
    def enable():
        _invariants_checked[0] = True

    @staticmethod
    def disable():
        _invariants_checked[0] = False

    def __enter__(self):
        self.saved, _invariants_checked[0] = _invariants_checked[0], self.state
        return self

    def __exit__(self, *exc):
        _invariants_checked[0] = self.saved

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapped(*args, **kwargs):
            with check_sparse_tensor_invariants(self.state):
                return fn(*args, **kwargs)
        return wrapped


def to_sparse(self, sparse_dim=None, *, layout=None, blocksize=None, dense_dim=None):
    """Tensor.to_sparse: the nonzero entries (rows with any nonzero, for sparse_dim below
    ndim), coalesced."""
    if layout not in (None, sparse_coo) or blocksize is not None or dense_dim is not None:
        raise NotImplementedError(f"to_sparse: only the COO layout is supported (got "
                                  f"layout={layout}, blocksize={blocksize}, "
                                  f"dense_dim={dense_dim})")
    d, xp = self._data, array_module(self._data)
    sd = self.ndim if sparse_dim is None else int(sparse_dim)
    if not 0 <= sd <= self.ndim:
        raise RuntimeError(f"to_sparse: sparse_dim must be in [0, {self.ndim}], got {sd}")
    nonzero = d != 0
    if sd < self.ndim:
        nonzero = nonzero.reshape(d.shape[:sd] + (-1,)).any(axis=-1)
    if sd == 0:
        return SparseTensor._of(xp.zeros((0, 1), np.int64), self.unsqueeze(0), self.shape, True)
    idx = xp.stack(xp.nonzero(nonzero)).astype(np.int64)
    return SparseTensor._of(idx, GetItem.apply(self, tuple(idx)), self.shape, True)


def to_sparse_coo(self):
    return to_sparse(self)


def sparse_mask(self, mask):
    """This dense tensor's entries at the (coalesced) pattern of the sparse `mask`."""
    if type(mask) is not SparseTensor:
        raise RuntimeError("sparse_mask: mask must be a sparse COO tensor")
    if tuple(self.shape) != tuple(mask.shape):
        raise RuntimeError(f"sparse_mask(): operands have incompatible sizes; self has size "
                           f"{list(self.shape)} but mask has size {list(mask.shape)}")
    mask = mask.coalesce()
    return mask._like(GetItem.apply(self, tuple(mask._idx)))


# ---- arithmetic ------------------------------------------------------------------------------
def add(input, other, *, alpha=1):
    """sparse + sparse (sparse), dense + sparse (dense); sparse + dense is PyTorch's error."""
    if type(input) is SparseTensor:
        if type(other) is not SparseTensor:
            raise RuntimeError("add(sparse, dense) is not supported. Use add(dense, sparse) "
                               "instead.")
        if tuple(input.shape) != tuple(other.shape):
            raise RuntimeError(f"add: expected sizes of 'self' and 'other' to match, but "
                               f"{list(input.shape)} != {list(other.shape)}")
        if input.sparse_dim() != other.sparse_dim():
            _refuse("adding sparse tensors of different sparse_dim")
        vals = other._vals if alpha == 1 else other._vals * alpha
        dt = np.result_type(input._vals._data.dtype, vals._data.dtype)
        xp = array_module(input._idx)
        from .ops.shape import cat
        return SparseTensor._of(xp.concatenate([input._idx, other._idx], axis=1),
                                cat([input._vals.to(dt), vals.to(dt)]), input.shape)
    if not isinstance(input, Tensor):
        raise RuntimeError("add(sparse, dense) is not supported. Use add(dense, sparse) "
                           "instead.")
    if tuple(input.shape) != tuple(other.shape):
        raise RuntimeError(f"add: expected 'self' and 'other' to have same size, but self has "
                           f"size {list(input.shape)} while other has size "
                           f"{list(other.shape)} (FYI: dense-sparse addition does not "
                           f"currently support broadcasting)")
    dense = other.to_dense()
    return input + (dense if alpha == 1 else dense * alpha)


def mul(input, other):
    """sparse * number, sparse * dense (broadcast to the sparse shape) and sparse * sparse
    (the common entries): sparse results."""
    if type(input) is not SparseTensor:
        input, other = other, input
    if not isinstance(other, Tensor) or (other.ndim == 0 and type(other) is not SparseTensor):
        return input._like(input._vals * other)
    a = input.coalesce()
    if type(other) is not SparseTensor:
        full = other.expand(*a.shape) if tuple(other.shape) != tuple(a.shape) else other
        return a._like(a._vals * GetItem.apply(full, tuple(a._idx)))
    if tuple(a.shape) != tuple(other.shape) or a.sparse_dim() != other.sparse_dim():
        raise RuntimeError(f"mul: sparse operands must have the same size and sparse_dim, got "
                           f"{list(a.shape)} and {list(other.shape)}")
    b = other.coalesce()
    xp = array_module(a._idx)
    sparse_shape = tuple(a.shape[:a.sparse_dim()])
    la, lb = _linear(a._idx, sparse_shape), _linear(b._idx, sparse_shape)
    at = xp.searchsorted(lb, la)
    hit = at < len(lb)
    hit[hit] = lb[at[hit]] == la[hit]
    where_a, where_b = xp.nonzero(hit)[0], at[hit]
    vals = GetItem.apply(a._vals, (where_a,)) * GetItem.apply(b._vals, (where_b,))
    return SparseTensor._of(a._idx[:, where_a], vals, a.shape, True)


# ---- products --------------------------------------------------------------------------------
def _scipy_sparse(xp):
    """scipy.sparse for NumPy arrays, cupyx.scipy.sparse for CuPy arrays."""
    if xp is np:
        import scipy.sparse as sp
        return sp
    import cupyx.scipy.sparse as csp
    return csp


_KERNEL_DTYPES = frozenset(np.dtype(t) for t in (np.float32, np.float64, np.complex64,
                                                 np.complex128, np.int32, np.int64))


def _coo_times(vals, rows, cols, shape, dense):
    """The (shape) COO matrix of vals at (rows, cols) times a dense array, compiled; dtypes
    the kernels lack (half, bfloat16, small ints) run in float32 and come back."""
    xp = array_module(dense)
    dt = dense.dtype
    run = dt if dt in _KERNEL_DTYPES else np.dtype(np.float32)
    m = _scipy_sparse(xp).coo_matrix((vals.astype(run, copy=False), (rows, cols)), shape=shape)
    return xp.asarray(m @ dense.astype(run, copy=False)).astype(dt, copy=False)


class SparseDenseMM(Function):
    """S @ D for a 2-D sparse S (its values at rows, cols) and a dense matrix D."""

    @staticmethod
    def forward(ctx, vals, dense, rows, cols, m):
        ctx.save_for_backward(vals, dense)
        ctx.rows, ctx.cols = rows, cols
        return make(_coo_times(vals._data, rows, cols, (m, dense.shape[0]), dense._data))

    @staticmethod
    def backward(ctx, g):
        vals, dense = ctx.saved_tensors
        rows, cols = ctx.rows, ctx.cols
        g_vals = g_dense = None
        if ctx.needs_input_grad[0]:     # d(S @ D)[r] / dS[r, c] = D[c]
            g_vals = (GetItem.apply(g, (rows,)) * GetItem.apply(dense, (cols,))).sum(-1)
        if ctx.needs_input_grad[1]:     # S^T @ g
            g_dense = SparseDenseMM.apply(vals, g, cols, rows, dense.shape[0])
        return g_vals, g_dense, None, None, None


def mm(input, mat2):
    """sparse @ dense (dense), dense @ sparse (dense), sparse @ sparse (sparse)."""
    if type(input) is not SparseTensor:
        return mm(mat2.t(), input.t()).t()
    if input.ndim != 2 or input.dense_dim() or mat2.ndim != 2:
        raise RuntimeError(f"mm: expected a 2-D sparse matrix (no dense dims) and a 2-D "
                           f"matrix, got sizes {list(input.shape)} (sparse_dim "
                           f"{input.sparse_dim()}) and {list(mat2.shape)}")
    (m, k), (k2, n) = input.shape, mat2.shape
    if k != k2:
        raise RuntimeError(f"mat1 and mat2 shapes cannot be multiplied ({m}x{k} and {k2}x{n})")
    if type(mat2) is SparseTensor:
        return mm(input, mat2.to_dense()).to_sparse()
    if input.dtype != mat2.dtype:
        raise RuntimeError(f"mm: expected mat1 and mat2 to have the same dtype, but got "
                           f"{input.dtype} and {mat2.dtype}; convert one, e.g. "
                           f"mat2.to({input.dtype})")
    if input.device != mat2.device:
        raise RuntimeError(f"Expected all tensors to be on the same device, but found at least "
                           f"two devices, {input.device} and {mat2.device}! Move them with "
                           f".to(device) first.")
    return SparseDenseMM.apply(input._vals, mat2, input._idx[0], input._idx[1], m)


def matmul(input, other):
    if type(input) is SparseTensor and other.ndim == 1:
        return mm(input, other.unsqueeze(1)).squeeze(1)
    if type(other) is SparseTensor and input.ndim == 1:
        return mm(input.unsqueeze(0), other).squeeze(0)
    return mm(input, other)


def addmm(input, mat1, mat2, *, beta=1, alpha=1):
    """beta * input + alpha * (mat1 @ mat2), mat1 sparse."""
    product = mm(mat1, mat2)
    if type(product) is SparseTensor:
        product = product.to_dense()
    if alpha != 1:
        product = product * alpha
    if beta == 0:
        return product + input.to_dense() * 0 if type(input) is SparseTensor else \
            product + input * 0
    dense_in = input.to_dense() if type(input) is SparseTensor else input
    return product + (dense_in if beta == 1 else dense_in * beta)


# ---- reductions and softmax ------------------------------------------------------------------
def sparse_sum(input, dim=None, dtype=None):
    """torch.sparse.sum: a dense result when every sparse dim is summed, else sparse."""
    vals = input._vals if dtype is None else input._vals.to(dtype)
    if dim is None:
        return vals.sum()
    dims = normalize_dim(tuple(dim) if isinstance(dim, (tuple, list)) else (dim,), input.ndim)
    sd = input.sparse_dim()
    dense_dims = tuple(d - sd + 1 for d in dims if d >= sd)
    if dense_dims:
        vals = vals.sum(dim=dense_dims)
    kept = [d for d in range(sd) if d not in dims]
    if not kept:
        return vals.sum(0)
    shape = tuple(s for d, s in enumerate(input.shape) if d not in dims)
    return SparseTensor._of(input._idx[kept], vals, shape).coalesce()


def _lines(s, dim):
    """For a coalesced s and a sparse dim: which line along `dim` each entry is on (0..L-1),
    and L."""
    xp = array_module(s._idx)
    others = [d for d in range(s.sparse_dim()) if d != dim]
    if not others:
        return xp.zeros(s._nnz(), np.int64), 1
    key = _linear(s._idx[others], tuple(s.shape[d] for d in others))
    unique, line = xp.unique(key, return_inverse=True)
    return line.reshape(-1), len(unique)


def _softmax(input, dim, dtype, log):
    s = input.coalesce()
    if dtype is not None:
        s = s._like(s._vals.to(dtype))
    dim = normalize_dim(dim, s.ndim)
    sd = s.sparse_dim()
    if dim >= sd:       # along a dense dim every entry is there: the values' own softmax
        vals = s._vals.log_softmax(dim - sd + 1) if log else s._vals.softmax(dim - sd + 1)
        return s._like(vals)
    line, n_lines = _lines(s, dim)
    v = s._vals._data
    xp = array_module(v)
    peak = xp.full((n_lines,) + v.shape[1:], -np.inf, v.dtype)
    ufunc_at(xp, "maximum", peak, line, v)      # a constant shift, for the exponent's range
    shifted = s._vals - make(peak[line])
    e = shifted.exp()
    total = IndexAdd.apply(e, (n_lines,) + v.shape[1:], (line,), False)
    per_entry = GetItem.apply(total, (line,))
    return s._like(shifted - per_entry.log() if log else e / per_entry)


def softmax(input, dim, *, dtype=None):
    """Softmax along `dim` over the specified entries only (the others count as -inf)."""
    return _softmax(input, dim, dtype, False)


def log_softmax(input, dim, *, dtype=None):
    return _softmax(input, dim, dtype, True)


# ---- the torch-level functions that take sparse tensors -------------------------------------
_SPARSE_VERSIONS = {"add": add, "mul": mul, "mm": mm, "matmul": matmul, "addmm": addmm,
                    "sub": lambda input, other, *, alpha=1: add(input, other, alpha=-alpha)}


def sparse_aware(name, dense_fn):
    """`phalanx.<name>`: `dense_fn`, or its sparse version when a sparse tensor is among the
    leading arguments (the methods of sparse tensors handle `S.op(...)` and operators)."""
    sparse_fn = _SPARSE_VERSIONS.get(name) or \
        (lambda input, *args, **kwargs: getattr(input, name)(*args, **kwargs))

    @functools.wraps(dense_fn)
    def fn(*args, **kwargs):
        for a in args[:3]:
            if type(a) is SparseTensor:
                return sparse_fn(*args, **kwargs)
        return dense_fn(*args, **kwargs)
    return fn


TOP_LEVEL = ("add", "sub", "mul", "mm", "matmul", "addmm", "sum", "t", "transpose", "neg",
             "negative", "div", "true_divide", "pow") + ZERO_PRESERVING


def spmm(input, mat2):
    """sparse @ dense (torch.spmm)."""
    return mm(input, mat2)


def _not_sparse(name):
    def refuse(self, *args, **kwargs):
        raise RuntimeError(f"{name} expected sparse coordinate tensor layout but got Strided "
                           f"(a dense tensor; make a sparse one with .to_sparse())")
    refuse.__name__ = name
    return refuse


def _no_sparse_dims(self):
    return 0


def _all_dims_dense(self):
    return self.ndim


def _bind():
    Tensor.to_sparse = to_sparse
    Tensor.to_sparse_coo = to_sparse_coo
    Tensor.sparse_mask = sparse_mask
    Tensor.sparse_dim = _no_sparse_dims
    Tensor.dense_dim = _all_dims_dense
    for name in ("indices", "values", "coalesce", "is_coalesced", "_indices", "_values",
                 "_nnz"):
        setattr(Tensor, name, _not_sparse(name))


_bind()
