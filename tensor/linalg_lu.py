"""LU and LDL factorisations of `phalanx.linalg`, and the `_ex` variants that report failure
in an `info` tensor instead of raising (PyTorch's torch.linalg.lu_factor, lu_factor_ex, lu,
lu_solve, solve_ex, inv_ex, cholesky_ex, ldl_factor, ldl_factor_ex, ldl_solve and
torch.lu_unpack).

LAPACK's conventions throughout, as PyTorch's: `pivots` are getrf's 1-based row swaps
(int32), `info` is 0 on success and the 1-based index of the first zero pivot (getrf) or of
the first leading minor that is not positive-definite (potrf) otherwise, one per matrix.

Backward formulas (A = P L U, k = min(m, n), L1/U1 the k x k blocks, L2/U2 the rest,
gX = gradient of an output, ^H the conjugate transpose):
    lu / lu_factor  M  = tril(L1^H gL1 - gU2 U2^H, -1) + triu(gU1 U1^H - L2^H gL2)
                    gA = P L1^-H [M U1^-H, gU2]     (m <= n)
                    gA = P [L1^-H M; gL2] U1^-H     (m >= n)
    lu_solve        gB = lu_solve(LU, pivots, gX) with the adjoint system; gA = -gB X^H (for
                    A X = B; the other three systems alike), then, as A = P L U,
                    gLU = tril(P^T gA U^H, -1) + triu(L^H P^T gA)
    solve_ex, inv_ex, cholesky_ex: the backward of solve, inv and cholesky.
Every triangular solve is a LuSolve (a triangular matrix is its own LU factorisation) and
lu_solve's backward calls lu_solve, so the backwards are made of differentiable ops: double
backward works, for complex inputs too. solve_ex, inv_ex and cholesky_ex reuse the real-input
backward of linalg's Solve, Inv and Cholesky (complex gradients raise). LDL has no gradient, as
in PyTorch.

Kernels: SciPy's LAPACK on the CPU and CuPy's port of scipy.linalg (cuSOLVER) on a GPU, one
matrix at a time (neither batches getrf). LDL has no CuPy kernel: it raises for CuPy inputs.
"""
import math
import warnings

import numpy as np

from ..autograd import Function
from .backend import array_module, to_host
from .return_types import return_type
from .linalg import Cholesky, Inv, LinAlgError, Solve, _mH, _mT
from .ops._util import make, unbroadcast
from .ops.shape import cat

LuFactorResult = return_type("linalg_lu_factor", ["LU", "pivots"])
LuFactorExResult = return_type("linalg_lu_factor_ex", ["LU", "pivots", "info"])
LuResult = return_type("linalg_lu", ["P", "L", "U"])
LuUnpackResult = return_type("lu_unpack", ["P", "L", "U"])
SolveExResult = return_type("linalg_solve_ex", ["result", "info"])
InvExResult = return_type("linalg_inv_ex", ["inverse", "info"])
CholeskyExResult = return_type("linalg_cholesky_ex", ["L", "info"])
LdlFactorResult = return_type("linalg_ldl_factor", ["LD", "pivots"])
LdlFactorExResult = return_type("linalg_ldl_factor_ex", ["LD", "pivots", "info"])

# PyTorch's names of scalar types, which its messages print
_TYPE_NAMES = {"float64": "Double", "float32": "Float", "float16": "Half",
               "bfloat16": "BFloat16", "complex64": "ComplexFloat",
               "complex128": "ComplexDouble", "int64": "Long", "int32": "Int",
               "int16": "Short", "int8": "Char", "uint8": "Byte", "bool": "Bool"}


def type_name(t):
    name = str(t.dtype).split(".")[-1]
    return _TYPE_NAMES.get(name, name)


# ---- argument checks --------------------------------------------------------------------------
def _no_out(out, name):
    if out is not None:
        raise NotImplementedError(f"{name}: out= is not supported; assign the result "
                                  f"instead")


def _matrices(name, a, kernel):
    """A is a batch of matrices of a dtype LAPACK takes (float32/64, complex64/128)."""
    if a.ndim < 2:
        raise RuntimeError(f"linalg.{name}: Expected tensor with 2 or more dimensions. Got "
                           f"size: {list(a.shape)} instead")
    if a._data.dtype.char not in "fdFD":
        raise NotImplementedError(f"\"{kernel}\" not implemented for '{type_name(a)}': "
                                  f"linalg.{name} takes float32, float64, complex64 or "
                                  f"complex128 inputs; convert with A.double()")


def _square_matrices(name, a, kernel):
    _matrices(name, a, kernel)
    if a.shape[-1] != a.shape[-2]:
        raise RuntimeError(f"linalg.{name}: A must be batches of square matrices, but they "
                           f"are {a.shape[-2]} by {a.shape[-1]} matrices")


def _same_dtype(name, a, b, names=("A", "B")):
    if a.dtype != b.dtype:
        raise RuntimeError(f"linalg.{name}: Expected {names[0]} and {names[1]} to have the same "
                           f"dtype, but found {names[0]} of type {type_name(a)} and "
                           f"{names[1]} of type {type_name(b)} instead")


def _square_float(name, a):
    """PyTorch's checks of solve, inv, cholesky and ldl_factor: square, float or complex."""
    if a.ndim < 2 or a.shape[-1] != a.shape[-2]:
        raise RuntimeError(f"linalg.{name}: A must be batches of square matrices, but they "
                           f"are {' by '.join(str(s) for s in a.shape[-2:])} matrices")
    if a._data.dtype.char not in "fdFD":
        raise RuntimeError(f"linalg.{name}: Expected a floating point or complex tensor as "
                           f"input. Got {type_name(a)}")


def _check_pivot_flag(a, pivot):
    if not pivot and array_module(a._data) is np:
        raise RuntimeError("linalg.lu_factor: LU without pivoting is not implemented on the CPU")


# ---- info -> errors ---------------------------------------------------------------------------
def _first_failure(info):
    """(flat batch index, info value) of the first matrix whose info is not 0, or None."""
    flat = to_host(info).reshape(-1)
    bad = np.flatnonzero(flat)
    return (int(bad[0]), int(flat[bad[0]])) if bad.size else None


def _raise_for_info(info, api, batched, error=LinAlgError):
    """PyTorch's _linalg_check_errors: the message of the first failing matrix."""
    found = _first_failure(info._data)
    if found is None:
        return
    index, code = found
    where = f"(Batch element {index}): " if batched else ""
    if api.startswith("linalg.lu_factor"):
        what = (f"U[{code},{code}] is zero and using it on lu_solve would result in a division "
                f"by zero. If you still want to perform the factorization, consider calling "
                f"linalg.lu(A, pivot) or linalg.lu_factor_ex(A, pivot)")
    elif api.startswith("linalg.inv"):
        what = (f"The diagonal element {code} is zero, the inversion could not be completed "
                f"because the input matrix is singular.")
    elif api.startswith("linalg.solve"):
        what = "The solver failed because the input matrix is singular."
    elif api.startswith("linalg.cholesky"):
        what = (f"The factorization could not be completed because the input is not "
                f"positive-definite (the leading minor of order {code} is not "
                f"positive-definite).")
    else:   # ldl: sytrf completed, but D has a zero pivot
        what = (f"The factorization could not be completed because the input is singular: "
                f"D[{code},{code}] is exactly zero, and solving with it would divide by zero.")
    raise error(f"{api}: {where}{what}")


# ---- kernels (arrays) -------------------------------------------------------------------------
def _scipy_linalg(xp):
    """scipy.linalg for NumPy arrays, CuPy's port of it for CuPy's: lu_factor and lu_solve
    take the same arguments in both."""
    if xp is np:
        import scipy.linalg
        return scipy.linalg
    import cupyx.scipy.linalg
    return cupyx.scipy.linalg


def _first_zero(diag):
    """getrf's info from U's diagonal (..., k): the 1-based index of its first exact zero, or
    0. Read from the factor, it means the same on both backends."""
    xp = array_module(diag)
    if diag.shape[-1] == 0:
        return xp.zeros(diag.shape[:-1], np.int32)
    zero = diag == 0
    return xp.where(zero.any(-1), zero.argmax(-1) + 1, 0).astype(np.int32)


def _getrf(d, pivot):
    """(LU, pivots, info) of each matrix of d (..., m, n)."""
    xp = array_module(d)
    batch, (m, n) = d.shape[:-2], d.shape[-2:]
    k = min(m, n)
    if not pivot:
        lu = _getrf_unpivoted(d)
        piv = xp.broadcast_to(xp.arange(1, k + 1, dtype=np.int32), batch + (k,)).copy()
    else:
        lu = d.copy()
        piv = xp.empty(batch + (k,), np.int32)
        if k and math.prod(batch):
            sl = _scipy_linalg(xp)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")   # a singular matrix warns: info says it
                for i in np.ndindex(*batch):
                    lu[i], p = sl.lu_factor(d[i], check_finite=False)
                    piv[i] = p + 1
    return lu, piv, _first_zero(xp.diagonal(lu, 0, -2, -1))


def _getrf_unpivoted(d):
    """LU without pivoting (cuSOLVER's getrf without pivots, which CuPy does not wrap): one
    rank-1 update per column, the whole batch at once. A zero pivot gives inf/NaN below it,
    as PyTorch documents."""
    lu = d.copy()
    m, n = d.shape[-2:]
    with np.errstate(divide="ignore", invalid="ignore"):
        for j in range(min(m, n)):
            lu[..., j + 1:, j:j + 1] /= lu[..., j:j + 1, j:j + 1]
            lu[..., j + 1:, j + 1:] -= lu[..., j + 1:, j:j + 1] @ lu[..., j:j + 1, j + 1:]
    return lu


def _getrs(lu, piv, b, trans):
    """X with op(A) X = B for each matrix of the broadcast batch; op by trans: 0 A, 1 A^T,
    2 A^H."""
    xp = array_module(b)
    batch = np.broadcast_shapes(lu.shape[:-2], b.shape[:-2])
    lu = xp.broadcast_to(lu, batch + lu.shape[-2:])
    piv = xp.broadcast_to(piv, batch + piv.shape[-1:])
    b = xp.broadcast_to(b, batch + b.shape[-2:])
    out = xp.empty(b.shape, b.dtype)
    if out.size:
        sl = _scipy_linalg(xp)
        for i in np.ndindex(*batch):
            out[i] = sl.lu_solve((lu[i], piv[i] - 1), b[i], trans=trans, check_finite=False)
    return out


def _lu_solve_arrays(lu, piv, b, left, adjoint):
    """op(A) X = B (left) or X op(A) = B (right), op(A) = A^H with `adjoint`."""
    xp = array_module(b)
    if left:
        return _getrs(lu, piv, b, 2 if adjoint else 0)
    bt = xp.swapaxes(b, -1, -2)
    if adjoint:   # X A^H = B  <=>  A X^H = B^H
        return xp.swapaxes(_getrs(lu, piv, bt.conj(), 0), -1, -2).conj()
    return xp.swapaxes(_getrs(lu, piv, bt, 1), -1, -2)   # X A = B  <=>  A^T X^T = B^T


def _permutation(piv, m, dtype):
    """P (..., m, m) with A = P L U for getrf's pivots: row i was swapped with row
    pivots[i] - 1, in order, so P^T A = A[perm] and P[perm[c], c] = 1."""
    xp = array_module(piv)
    batch, k = piv.shape[:-1], piv.shape[-1]
    count = math.prod(batch)
    perm = xp.broadcast_to(xp.arange(m), (count, m)).copy()
    swaps = piv.reshape(count, k).astype(np.int64) - 1
    rows = xp.arange(count)
    for i in range(k if count else 0):
        j = swaps[:, i]
        here, there = perm[:, i].copy(), perm[rows, j]
        perm[:, i] = there
        perm[rows, j] = here
    perm = perm.reshape(batch + (m,))
    return (perm[..., None, :] == xp.arange(m)[:, None]).astype(dtype)


# ---- differentiable pieces (tensors) ----------------------------------------------------------
def _unpack_data(LU):
    """L (m x k, unit lower) and U (k x n, upper) of the packed LU; differentiable."""
    m, n = LU.shape[-2:]
    k = min(m, n)
    eye = make(array_module(LU._data).eye(m, k, dtype=LU._data.dtype))
    return LU[..., :, :k].tril(-1) + eye, LU[..., :k, :].triu()


def _tri_solve(T, B, *, upper, left=True, adjoint=False):
    """op(T)^-1 B (B op(T)^-1 with left=False; op(T) = T^H with `adjoint`) for an upper T or
    a unit-lower T (its diagonal unread), through LuSolve: an upper T is its own LU
    factorisation (L = I), a unit-lower one is L (U = I). So the solve is complex-correct and
    differentiable as LuSolve is."""
    n = T.shape[-1]
    xp = array_module(T._data)
    packed = T.triu() if upper else T.tril(-1) + make(xp.eye(n, dtype=T._data.dtype))
    pivots = make(xp.broadcast_to(xp.arange(1, n + 1, dtype=np.int32), T.shape[:-1]).copy())
    return LuSolve.apply(packed, pivots, B, left, adjoint)


def _lu_grad(L, U, P, gL, gU):
    """dLoss/dA of A = P L U from the gradients of L and U (P None: no pivoting)."""
    m, n = L.shape[-2], U.shape[-1]
    k = min(m, n)
    L1, U1 = L[..., :k, :], U[..., :, :k]
    lower = _mH(L1) @ gL[..., :k, :]
    upper = gU[..., :, :k] @ _mH(U1)
    if n > k:
        gU2 = gU[..., :, k:]
        lower = lower - gU2 @ _mH(U[..., :, k:])
    if m > k:
        gL2 = gL[..., k:, :]
        upper = upper - _mH(L[..., k:, :]) @ gL2
    M = lower.tril(-1) + upper.triu()
    if n > k:   # P L1^-H [M U1^-H, gU2]
        right = cat([_tri_solve(U1, M, upper=True, left=False, adjoint=True), gU2], -1)
        ga = _tri_solve(L1, right, upper=False, adjoint=True)
    else:       # P [L1^-H M; gL2] U1^-H
        left = _tri_solve(L1, M, upper=False, adjoint=True)
        if m > k:
            left = cat([left, gL2], -2)
        ga = _tri_solve(U1, left, upper=True, left=False, adjoint=True)
    return ga if P is None else P @ ga


def _p_of(LU, pivots):
    return make(_permutation(pivots._data, LU.shape[-2], LU._data.dtype))


class LuFactor(Function):
    """(LU, pivots, info) of A (..., m, n), with partial pivoting or (a GPU only) without."""

    @staticmethod
    def forward(ctx, a, pivot):
        lu, piv, info = _getrf(a._data, pivot)
        LU, pivots = make(lu), make(piv)
        ctx.save_for_backward(LU, pivots)
        ctx.pivot = pivot
        return LU, pivots, make(info)

    @staticmethod
    def backward(ctx, g, g_pivots=None, g_info=None):
        LU, pivots = ctx.saved_tensors
        k = min(LU.shape[-2:])
        L, U = _unpack_data(LU)
        P = _p_of(LU, pivots) if ctx.pivot else None
        return _lu_grad(L, U, P, g[..., :, :k].tril(-1), g[..., :k, :].triu()), None


class LuSolve(Function):
    """X with op(A) X = B (left) or X op(A) = B, A = P L U given packed; B broadcasts."""

    @staticmethod
    def forward(ctx, LU, pivots, b, left, adjoint):
        x = make(_lu_solve_arrays(LU._data, pivots._data, b._data, left, adjoint))
        ctx.save_for_backward(LU, pivots, x)
        ctx.system = (left, adjoint)
        ctx.shapes = (LU.shape, b.shape)
        return x

    @staticmethod
    def backward(ctx, g):
        LU, pivots, x = ctx.saved_tensors
        left, adjoint = ctx.system
        need_lu, _, need_b = ctx.needs_input_grad[:3]
        gb = LuSolve.apply(LU, pivots, g, left, not adjoint)
        ga_lu = None
        if need_lu:
            if left:
                ga = -(x @ _mH(gb)) if adjoint else -(gb @ _mH(x))
            else:
                ga = -(_mH(gb) @ x) if adjoint else -(_mH(x) @ gb)
            L, U = _unpack_data(LU)
            ptg = _mT(_p_of(LU, pivots)) @ ga
            ga_lu = unbroadcast((ptg @ _mH(U)).tril(-1) + (_mH(L) @ ptg).triu(), ctx.shapes[0])
        return ga_lu, None, (unbroadcast(gb, ctx.shapes[1]) if need_b else None), None, None


# ---- LU: functional API -----------------------------------------------------------------------
def lu_factor_ex(A, *, pivot=True, check_errors=False, out=None):
    """(LU, pivots, info); no error for a singular A unless `check_errors`."""
    _no_out(out, "linalg.lu_factor_ex")
    _matrices("lu_factor_ex", A, "lu")
    _check_pivot_flag(A, pivot)
    result = LuFactorExResult(*LuFactor.apply(A, bool(pivot)))
    if check_errors:
        _raise_for_info(result.info, "linalg.lu_factor_ex", A.ndim > 2, RuntimeError)
    return result


def lu_factor(A, *, pivot=True, out=None):
    """(LU, pivots); raises when U has a zero on its diagonal (lu_solve would divide by it)."""
    _no_out(out, "linalg.lu_factor")
    _matrices("lu_factor", A, "lu")
    _check_pivot_flag(A, pivot)
    LU, pivots, info = LuFactor.apply(A, bool(pivot))
    _raise_for_info(info, "linalg.lu_factor", A.ndim > 2, RuntimeError)
    return LuFactorResult(LU, pivots)


def lu(A, *, pivot=True, out=None):
    """(P, L, U) with A = P L U (P empty with pivot=False, which only a GPU has)."""
    _no_out(out, "linalg.lu")
    _matrices("lu", A, "lu")
    _check_pivot_flag(A, pivot)
    LU, pivots, _ = LuFactor.apply(A, bool(pivot))
    return LuResult(*_unpack(LU, pivots, True, bool(pivot)))


def _unpack(LU, pivots, unpack_data, unpack_pivots):
    d = LU._data
    empty = make(array_module(d).zeros((0,), d.dtype))
    P = _p_of(LU, pivots) if unpack_pivots else empty
    if not unpack_data:
        return P, empty, empty
    L, U = _unpack_data(LU)
    return P, L, U


def lu_unpack(LU_data, LU_pivots, unpack_data=True, unpack_pivots=True):
    """torch.lu_unpack: (P, L, U) from lu_factor's output; the parts not asked for are
    empty."""
    if LU_data.ndim < 2:
        raise RuntimeError(f"lu_unpack: Expected tensor with 2 or more dimensions. Got size: "
                           f"{list(LU_data.shape)} instead")
    if str(LU_pivots.dtype).split(".")[-1] != "int32":
        raise RuntimeError("lu_unpack: LU_pivots is expected to be a contiguous tensor of "
                           "phalanx.int32 dtype.\nNote: this function is intended to be used "
                           "with the output produced by linalg.lu_factor")
    m, n = LU_data.shape[-2:]
    if unpack_pivots:
        p = LU_pivots._data
        if p.shape[-1:] != (min(m, n),) or (p.size and not bool(((p >= 1) & (p <= m)).all())):
            raise RuntimeError("pivots passed to lu_unpack must be between 1 and LU.size(-2) "
                               "inclusive.Did you properly pass the result of lu_factor?")
    return LuUnpackResult(*_unpack(LU_data, LU_pivots, unpack_data, unpack_pivots))


def lu_solve(LU, pivots, B, *, left=True, adjoint=False, out=None):
    """X with A X = B (A^H X = B with `adjoint`; X A = B, X A^H = B with left=False), A given
    by lu_factor; batches broadcast."""
    _no_out(out, "linalg.lu_solve")
    _square_matrices("lu_solve", LU, "lu_solve")
    if B.ndim < 2:
        raise RuntimeError("linalg.lu_solve: The input tensor B must have at least 2 "
                           "dimensions.")
    _same_dtype("lu_solve", LU, B, ("LU", "B"))
    if str(pivots.dtype).split(".")[-1] != "int32":
        raise RuntimeError("linalg.lu_solve: pivots should be a Tensor of scalar type "
                           "phalanx.int32")
    n = LU.shape[-1]
    if (B.shape[-2] if left else B.shape[-1]) != n:
        raise RuntimeError(f"linalg.lu_solve: Incompatible shapes of A and B for the equation "
                           f"{'AX = B' if left else 'XA = B'} ({n}x{n} and "
                           f"{B.shape[-2]}x{B.shape[-1]})")
    if pivots.ndim == 0 or pivots.shape[-1] != n:
        raise RuntimeError("linalg.lu_solve: Number of pivots per batch should be same as the "
                           "dimension of the matrix")
    if tuple(pivots.shape) != tuple(LU.shape[:-1]):
        raise RuntimeError(f"linalg.lu_solve: Expected LU.shape[:-1] and pivots.shape to be "
                           f"the same, but got pivots with shape {list(pivots.shape)} instead")
    return LuSolve.apply(LU, pivots, B, bool(left), bool(adjoint))


# ---- the older top-level spellings (torch.lu, torch.lu_solve; Tensor.lu, Tensor.lu_solve) ----
LuWithInfoResult = return_type("_lu_with_info", ["LU", "pivots", "info"])


def legacy_lu(A, pivot=True, get_infos=False, out=None):
    """torch.lu (deprecated there for linalg.lu_factor_ex): (LU, pivots), and info with
    `get_infos`; a singular A is no error either way, as in PyTorch."""
    _no_out(out, "lu")
    LU, pivots, info = lu_factor_ex(A, pivot=pivot)
    return LuWithInfoResult(LU, pivots, info) if get_infos else (LU, pivots)


def legacy_lu_solve(b, LU_data, LU_pivots, *, out=None):
    """torch.lu_solve (deprecated there): linalg.lu_solve with the right-hand side first."""
    _no_out(out, "lu_solve")
    return lu_solve(LU_data, LU_pivots, b)


# ---- solve_ex, inv_ex, cholesky_ex ------------------------------------------------------------
def _real_only(g, name):
    if g._data.dtype.kind == "c":
        raise NotImplementedError(f"the gradient of linalg.{name} for complex inputs is not "
                                  f"implemented: it reuses the backward of linalg's real "
                                  f"solve/inv/cholesky; for solve_ex and inv_ex, differentiate "
                                  f"linalg.lu_solve(*linalg.lu_factor(A), B) instead")


class SolveEx(Function):
    """(X, info) of A X = B: getrf and getrs, so that a singular matrix gives info (and inf/NaN
    in X, as PyTorch) instead of an error; the backward is solve's."""

    @staticmethod
    def forward(ctx, a, b):
        da, db = a._data, b._data
        lu, piv, info = _getrf(da, True)
        x = make(_getrs(lu, piv, db, 0))
        ctx.save_for_backward(a, x)
        ctx.shapes = (da.shape, db.shape)
        return x, make(info)

    @staticmethod
    def backward(ctx, g, g_info=None):
        _real_only(g, "solve_ex")
        return Solve.backward(ctx, g)


class InvEx(Function):
    """(A^-1, info): getrs against the identity (PyTorch's inv_ex); the backward is inv's."""

    @staticmethod
    def forward(ctx, a):
        d = a._data
        lu, piv, info = _getrf(d, True)
        eye = array_module(d).eye(d.shape[-1], dtype=d.dtype)
        x = make(_getrs(lu, piv, eye, 0))
        ctx.save_for_backward(x)
        return x, make(info)

    @staticmethod
    def backward(ctx, g, g_info=None):
        _real_only(g, "inv_ex")
        return Inv.backward(ctx, g)


class CholeskyEx(Function):
    """(L, info) with A = L L^H; LAPACK's potrf per matrix on the CPU, so a matrix that is
    not positive-definite gives its info (and potrf's partial factor); the backward is
    cholesky's."""

    @staticmethod
    def forward(ctx, a):
        L, info = _potrf(a._data)
        out = make(L)
        ctx.save_for_backward(out)
        return out, make(info)

    @staticmethod
    def backward(ctx, g, g_info=None):
        _real_only(g, "cholesky_ex")
        return Cholesky.backward(ctx, g)


def _potrf(d):
    xp = array_module(d)
    if xp is not np:
        # CuPy's cholesky reports no info (and raises only under cupyx.errstate): read it
        # from the factor, where cuSOLVER stops at the first diagonal that is not positive
        L = xp.tril(xp.linalg.cholesky(d))
        positive = xp.diagonal(L, 0, -2, -1).real > 0
        return L, _first_zero(positive.astype(np.int32))
    from scipy.linalg.lapack import get_lapack_funcs
    L = np.zeros_like(d)
    info = np.zeros(d.shape[:-2], np.int32)
    if d.shape[-1]:
        potrf, = get_lapack_funcs(("potrf",), (d,))
        for i in np.ndindex(*d.shape[:-2]):
            L[i], code = potrf(d[i], lower=1, clean=1)
            info[i] = max(code, 0)
    return L, info


def _rhs_is_vector(A, B):
    return B.ndim == 1 or (B.ndim == A.ndim - 1 and tuple(B.shape) == tuple(A.shape[:-1]))


def solve_ex(A, B, *, left=True, check_errors=False, out=None):
    """(result, info): solve without raising for a singular A (info > 0, result inf/NaN)
    unless `check_errors`."""
    _no_out(out, "linalg.solve_ex")
    _square_float("solve", A)
    _same_dtype("solve", A, B)
    vector = _rhs_is_vector(A, B)
    if vector and not left:
        raise RuntimeError(f"linalg.solve: Incompatible shapes of A and B for the equation "
                           f"XA = B ({A.shape[-2]}x{A.shape[-1]} and {B.shape[-1]}x1)")
    b = B.unsqueeze(-1) if vector else (B if left else _mT(B))
    a = A if left else _mT(A)
    if b.shape[-2] != a.shape[-1]:
        raise RuntimeError(f"linalg.solve: Incompatible shapes of A and B for the equation "
                           f"{'AX = B' if left else 'XA = B'} ({A.shape[-2]}x{A.shape[-1]} "
                           f"and {B.shape[-2] if B.ndim > 1 else B.shape[-1]}x"
                           f"{B.shape[-1] if B.ndim > 1 else 1})")
    x, info = SolveEx.apply(a, b)
    if check_errors:
        _raise_for_info(info, "linalg.solve_ex", A.ndim > 2)
    x = x.squeeze(-1) if vector else (x if left else _mT(x))
    return SolveExResult(x, info)


def inv_ex(A, *, check_errors=False, out=None):
    """(inverse, info): inv without raising for a singular A unless `check_errors`."""
    _no_out(out, "linalg.inv_ex")
    _square_float("inv", A)
    inverse, info = InvEx.apply(A)
    if check_errors:
        _raise_for_info(info, "linalg.inv_ex", A.ndim > 2)
    return InvExResult(inverse, info)


def cholesky_ex(A, *, upper=False, check_errors=False, out=None):
    """(L, info): cholesky without raising for a matrix that is not positive-definite unless
    `check_errors`; `upper` returns U = L^H."""
    _no_out(out, "linalg.cholesky_ex")
    _square_float("cholesky", A)
    L, info = CholeskyEx.apply(A)
    if check_errors:
        _raise_for_info(info, "linalg.cholesky_ex", A.ndim > 2)
    return CholeskyExResult(_mH(L) if upper else L, info)


# ---- LDL (Bunch-Kaufman; LAPACK's sytrf/hetrf, no CuPy kernel) --------------------------------
def _cpu_arrays(name, *tensors):
    """The NumPy arrays of `tensors`, for LAPACK's sytrf/sytrs through SciPy: cuSOLVER's
    sytrf has no CuPy wrapper, so a GPU tensor is refused."""
    if any(array_module(t._data) is not np for t in tensors):
        raise NotImplementedError(f"linalg.{name} runs on the CPU only (LAPACK's sytrf through "
                                  f"SciPy; CuPy has no LDL kernel): move the inputs with .cpu()")
    return [t._data for t in tensors]


class LdlFactor(Function):
    """(LD, pivots, info): sytrf (hetrf for a Hermitian complex A) on the lower triangle."""

    @staticmethod
    def forward(ctx, a, hermitian):
        from scipy.linalg.lapack import get_lapack_funcs
        d, = _cpu_arrays("ldl_factor", a)
        kind = "hetrf" if hermitian and d.dtype.kind == "c" else "sytrf"
        ld = np.zeros_like(d)
        piv = np.zeros(d.shape[:-1], np.int32)
        info = np.zeros(d.shape[:-2], np.int32)
        if d.shape[-1]:
            trf, = get_lapack_funcs((kind,), (d,))
            for i in np.ndindex(*d.shape[:-2]):
                out, piv[i], code = trf(d[i], lower=1)
                ld[i], info[i] = np.tril(out), max(code, 0)
        return make(ld), make(piv), make(info)

    @staticmethod
    def backward(ctx, *grads):
        raise NotImplementedError("the derivative for linalg.ldl_factor is not implemented "
                                  "(nor in PyTorch); detach the input, or differentiate "
                                  "through linalg.solve instead")


class LdlSolve(Function):
    @staticmethod
    def forward(ctx, ld, pivots, b, hermitian):
        from scipy.linalg.lapack import get_lapack_funcs
        dl, dp, db = _cpu_arrays("ldl_solve", ld, pivots, b)
        kind = "hetrs" if hermitian and dl.dtype.kind == "c" else "sytrs"
        batch = np.broadcast_shapes(dl.shape[:-2], db.shape[:-2])
        dl = np.broadcast_to(dl, batch + dl.shape[-2:])
        dp = np.broadcast_to(dp, batch + dp.shape[-1:])
        db = np.broadcast_to(db, batch + db.shape[-2:])
        x = np.empty(db.shape, db.dtype)
        if x.size:
            trs, = get_lapack_funcs((kind,), (dl,))
            dp = dp.astype(np.int32, copy=False)
            for i in np.ndindex(*batch):
                x[i], _ = trs(dl[i], dp[i], db[i], lower=1)
        return make(x)

    @staticmethod
    def backward(ctx, g):
        raise NotImplementedError("the derivative for linalg.ldl_solve is not implemented "
                                  "(nor in PyTorch); use linalg.solve to differentiate")


def ldl_factor_ex(A, *, hermitian=False, check_errors=False, out=None):
    """(LD, pivots, info): the compact Bunch-Kaufman factorisation A = L D L^T (L D L^H with
    `hermitian`) of the lower triangle of A; pivots as LAPACK's sytrf (negative for 2 x 2
    blocks)."""
    _no_out(out, "linalg.ldl_factor_ex")
    _square_float("ldl_factor_ex", A)
    result = LdlFactorExResult(*LdlFactor.apply(A, bool(hermitian)))
    if check_errors:
        _raise_for_info(result.info, "linalg.ldl_factor_ex", A.ndim > 2)
    return result


def ldl_factor(A, *, hermitian=False, out=None):
    """(LD, pivots); raises when D is singular."""
    _no_out(out, "linalg.ldl_factor")
    LD, pivots, info = ldl_factor_ex(A, hermitian=hermitian)
    _raise_for_info(info, "linalg.ldl_factor", A.ndim > 2)
    return LdlFactorResult(LD, pivots)


def ldl_solve(LD, pivots, B, *, hermitian=False, out=None):
    """X with A X = B for A given by ldl_factor; batches broadcast."""
    _no_out(out, "linalg.ldl_solve")
    _square_matrices("ldl_solve", LD, "ldl_solve")
    if B.ndim < 2:
        raise RuntimeError("linalg.ldl_solve: The input tensor B must have at least 2 "
                           "dimensions.")
    if LD.dtype != B.dtype:
        raise RuntimeError(f"Expected b and A to have the same dtype, but found b of type "
                           f"{type_name(B)} and A of type {type_name(LD)} instead.")
    if pivots._data.dtype.kind not in "iu":
        raise RuntimeError(f"linalg.ldl_solve: Expected pivots to be integers. Got "
                           f"{type_name(pivots)}")
    if tuple(pivots.shape) != tuple(LD.shape[:-1]):
        raise RuntimeError(f"linalg.ldl_solve: Expected LD.shape[:-1] and pivots.shape to be "
                           f"the same, but got pivots with shape {list(pivots.shape)} instead")
    n = LD.shape[-1]
    if B.shape[-2] != n:
        raise RuntimeError(f"Incompatible matrix sizes for linalg.ldl_solve: each A matrix is "
                           f"{n} by {n} but each b matrix is {B.shape[-2]} by {B.shape[-1]}")
    return LdlSolve.apply(LD, pivots, B, bool(hermitian))
