"""`phalanx.linalg`: PyTorch's `torch.linalg` (real inputs). Factorisations are `Function`s
whose backward is written with tensor ops (so double backward works); norms and the rest are
composed from them.

Backward formulas (A = input, g* = gradient of an output, E_jk = w_k - w_j, skew(X) = X - X^T):
    inv      gA = -X^T gX X^T                 (X = A^-1)
    det      gA = g det(A) A^-T
    slogdet  gA = g_logabsdet A^-T
    solve    gB = A^-T gX,  gA = -gB X^T
    cholesky gA = sym(L^-T Phi(L^T gL) L^-1)   (Phi: lower triangle, halved diagonal)
    eigh     gA = V (diag(gw) + ((V^T gV - (V^T gV)^T) / 2) / E) V^T
    svd      gA = U (skew(U^T gU) S + S skew(V^T gV)) / (S_k^2 - S_j^2) + diag(gS)) V^T
             + the terms for the parts of gU / gV outside span(U) / span(V)
    qr       gA = (gQ + Q copyltu(R gR^T - gQ^T Q)) R^-T   (m >= n, reduced)
"""

import numpy as np

from ..autograd import Function
from .backend import array_module
from .return_types import return_type
from .tensor import Tensor
from .ops import elementwise as ew, reduction as red
from .ops._util import make, named, unbroadcast
from .ops.products import cross as _cross, diagonal as _diagonal, matrix_power, vdot  # noqa
from .ops.linalg import matmul as _matmul
from .ops.shape import cat

class LinAlgError(RuntimeError):
    """A matrix that the factorisation or solve cannot handle (singular, not positive-
    definite); a RuntimeError, as PyTorch's torch.linalg.LinAlgError is."""


SlogdetResult = return_type("linalg_slogdet", ["sign", "logabsdet"])
EighResult = return_type("linalg_eigh", ["eigenvalues", "eigenvectors"])
SvdResult = return_type("linalg_svd", ["U", "S", "Vh"])
LegacySvdResult = return_type("svd", ["U", "S", "V"])
QrResult = return_type("linalg_qr", ["Q", "R"])


def _mT(t):
    return t.transpose(-2, -1)


def _mH(t):
    return _mT(t).conj() if t.is_complex() else _mT(t)


def _square(name, a):
    if a.ndim < 2 or a.shape[-1] != a.shape[-2]:
        raise RuntimeError(f"linalg.{name}: A must be batches of square matrices, but they are "
                           f"{' by '.join(str(s) for s in a.shape[-2:])} matrices "
                           f"(shape {list(a.shape)})")
    if not a.is_floating_point():
        raise RuntimeError(f"linalg.{name}: Expected a floating point tensor as input. Got "
                           f"{a.dtype}")


def _xp_linalg(d):
    return array_module(d).linalg


class Inv(Function):
    node_name = "LinalgInvEx"      # PyTorch's inv is its inv_ex

    @staticmethod
    def forward(ctx, a):
        d = a._data
        try:
            out = make(_xp_linalg(d).inv(d))
        except np.linalg.LinAlgError:
            raise LinAlgError(f"linalg.inv: The diagonal element of the LU factorisation is "
                               f"zero: the input (shape {list(a.shape)}) is singular; use "
                               f"linalg.pinv for a least-squares inverse") from None
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, g):
        x, = ctx.saved_tensors
        xt = _mT(x)
        return -(xt @ g @ xt)


class Det(Function):
    node_name = "LinalgDet"

    @staticmethod
    def forward(ctx, a):
        d = a._data
        out = make(array_module(d).asarray(_xp_linalg(d).det(d)))
        ctx.save_for_backward(a, out)
        return out

    @staticmethod
    def backward(ctx, g):
        a, out = ctx.saved_tensors
        return (g * out).unsqueeze(-1).unsqueeze(-1) * _mT(inv(a))


class Slogdet(Function):
    @staticmethod
    def forward(ctx, a):
        d = a._data
        xp = array_module(d)
        sign, logabs = _xp_linalg(d).slogdet(d)
        ctx.save_for_backward(a)
        s, la = make(xp.asarray(sign, d.dtype)), make(xp.asarray(logabs, d.dtype))
        ctx.mark_non_differentiable(s)
        return s, la

    @staticmethod
    def backward(ctx, g_sign, g_logabs):
        a, = ctx.saved_tensors
        return g_logabs.unsqueeze(-1).unsqueeze(-1) * _mT(inv(a))


class Solve(Function):
    """X with A X = B; B is a batch of matrices (a vector is made a column by `solve`)."""

    @staticmethod
    def forward(ctx, a, b):
        da, db = a._data, b._data
        dt = np.result_type(da.dtype, db.dtype)
        try:
            out = make(_xp_linalg(da).solve(da.astype(dt, copy=False), db.astype(dt, copy=False)))
        except np.linalg.LinAlgError:
            raise LinAlgError(f"linalg.solve: The solver failed because the input matrix "
                               f"(shape {list(a.shape)}) is singular.") from None
        ctx.save_for_backward(a, out)
        ctx.shapes = (da.shape, db.shape)
        return out

    @staticmethod
    def backward(ctx, g):
        a, x = ctx.saved_tensors
        na, nb = ctx.needs_input_grad
        sa, sb = ctx.shapes
        gb = Solve.apply(_mT(a), g)  # batch dims broadcast: sum them back to each operand
        ga = unbroadcast(-(gb @ _mT(x)), sa) if na else None
        return ga, (unbroadcast(gb, sb) if nb else None)


class Cholesky(Function):
    node_name = "LinalgCholeskyEx"     # PyTorch's linalg.cholesky is its cholesky_ex

    @staticmethod
    def forward(ctx, a):
        d = a._data
        try:
            out = make(_xp_linalg(d).cholesky(d))
        except np.linalg.LinAlgError:
            raise LinAlgError(f"linalg.cholesky: The factorization could not be completed "
                               f"because the input (shape {list(a.shape)}) is not positive-"
                               f"definite.") from None
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, g):
        L, = ctx.saved_tensors
        phi = (_mT(L) @ g).tril()
        phi = phi - 0.5 * _diag_matrix(phi)
        linv = inv(L)
        ga = _mT(linv) @ phi @ linv
        return 0.5 * (ga + _mT(ga))


def _diag_matrix(m):
    """The matrix with m's diagonal and zeros elsewhere."""
    n = m.shape[-1]
    eye = make(array_module(m._data).eye(n, dtype=m._data.dtype))
    return m * eye


def _eye_like(m):
    return make(array_module(m._data).eye(m.shape[-1], dtype=m._data.dtype))


class Eigh(Function):
    @staticmethod
    def forward(ctx, a, uplo="L"):
        d = a._data
        w, v = _xp_linalg(d).eigh(d, UPLO=uplo)
        w, v = make(w), make(v)
        ctx.save_for_backward(w, v)
        return w, v

    @staticmethod
    def backward(ctx, gw, gv):
        w, v = ctx.saved_tensors
        e = w.unsqueeze(-2) - w.unsqueeze(-1)
        eye = _eye_like(e)
        inner = None
        if gv is not None:
            vgv = _mT(v) @ gv
            inner = (0.5 * (vgv - _mT(vgv))) / (e + eye) * (1 - eye)
        if gw is not None:
            dg = gw.unsqueeze(-1) * eye
            inner = dg if inner is None else inner + dg
        return v @ inner @ _mT(v), None


class Svd(Function):
    """The SVD, reduced or full; as PyTorch, the gradient ignores the columns of U and rows
    of Vh past min(m, n) that the full one adds."""

    @staticmethod
    def forward(ctx, a, full_matrices):
        d = a._data
        u, s, vh = _xp_linalg(d).svd(d, full_matrices=full_matrices)
        k = s.shape[-1]
        ctx.save_for_backward(make(u[..., :, :k]), make(s), make(vh[..., :k, :]))
        ctx.full = full_matrices and u.shape[-1] != vh.shape[-2]
        return make(u), make(s), make(vh)

    @staticmethod
    def backward(ctx, gu, gs, gvh):
        u, s, vh = ctx.saved_tensors
        if ctx.full:
            k = s.shape[-1]
            gu = None if gu is None else gu[..., :, :k]
            gvh = None if gvh is None else gvh[..., :k, :]
        return Svd._reduced_grad(u, s, vh, gu, gs, gvh), None

    @staticmethod
    def _reduced_grad(u, s, vh, gu, gs, gvh):
        m, n, k = u.shape[-2], vh.shape[-1], s.shape[-1]
        if gu is None and gvh is None:
            return (u * gs.unsqueeze(-2)) @ vh
        v = _mT(vh)
        gv = _mT(gvh) if gvh is not None else None
        s2 = s * s
        eye = _eye_like(u[..., :k, :k] if m >= k else vh[..., :k, :k])
        e = s2.unsqueeze(-2) - s2.unsqueeze(-1) + eye
        inner = None
        if gu is not None:
            uhgu = _mT(u) @ gu
            inner = (uhgu - _mT(uhgu)) * s.unsqueeze(-2)
        if gv is not None:
            vhgv = _mT(v) @ gv
            term = s.unsqueeze(-1) * (vhgv - _mT(vhgv))
            inner = term if inner is None else inner + term
        inner = inner / e * (1 - eye)
        if gs is not None:
            inner = inner + gs.unsqueeze(-1) * eye
        ga = u @ inner
        if m > k and gu is not None:
            ga = ga + (gu - u @ uhgu) / s.unsqueeze(-2)
        ga = ga @ vh
        if n > k and gv is not None:
            ga = ga + (u / s.unsqueeze(-2)) @ _mT(gv - v @ vhgv)
        return ga


class Qr(Function):
    """QR of a matrix of any shape ('reduced' or 'complete'). Its gradient is the square
    case's formula; a wide A = [X Y] (m < n) has X = Q U, Y = Q V, so the square formula runs
    on X with the gradient of Q raised by Y's share (Y gV^T), and gY = Q gV."""

    @staticmethod
    def forward(ctx, a, mode):
        d = a._data
        q, r = _xp_linalg(d).qr(d, mode=mode)
        q, r = make(q), make(r)
        ctx.save_for_backward(q, r)
        ctx.mode = mode
        return q, r

    @staticmethod
    def backward(ctx, gq, gr):
        q, r = ctx.saved_tensors
        m, n = q.shape[-2], r.shape[-1]
        if ctx.mode == "complete" and m > n:
            raise RuntimeError("The QR decomposition is not differentiable when mode='complete' "
                               "and nrows > ncols.")
        k = min(m, n)
        if n <= k:
            return _qr_grad(q, r, gq, gr), None
        u, v = r[..., :k], r[..., k:]
        gu, gv = (None, None) if gr is None else (gr[..., :k], gr[..., k:])
        if gv is not None:
            share = (q @ v) @ _mT(gv)
            gq = share if gq is None else gq + share
        gy = q @ gv if gv is not None else v * 0
        return cat([_qr_grad(q, u, gq, gu), gy], -1), None


def _qr_grad(q, r, gq, gr):
    """dL/dA of A = Q R with R square: (gQ + Q copyltu(M)) R^-T, M = R gR^T - gQ^T Q."""
    m = 0
    if gr is not None:
        m = r @ _mT(gr)
    if gq is not None:
        m = m - _mT(gq) @ q
    low = m.tril(-1) if isinstance(m, Tensor) else None
    copyltu = low + _mT(low) + _diag_matrix(m)
    b = q @ copyltu if gq is None else gq + q @ copyltu
    return b @ _mT(inv(r))


# ---- functional API --------------------------------------------------------------------------
def inv(A):
    _square("inv", A)
    return Inv.apply(A)


def det(A):
    _square("det", A)
    return Det.apply(A)


def slogdet(A):
    _square("slogdet", A)
    return SlogdetResult(*Slogdet.apply(A))


def logdet(A):
    sign, logabs = slogdet(A)
    return ew.where(sign < 0, float("nan"), ew.where(sign == 0, float("-inf"), logabs))


def solve(A, B, *, left=True):
    _square("solve", A)
    if not left:
        return _mT(solve(_mT(A), _mT(B)))
    vector = B.ndim == 1 or (B.ndim == A.ndim - 1 and tuple(B.shape) == tuple(A.shape[:-1]))
    if vector:
        return Solve.apply(A, B.unsqueeze(-1)).squeeze(-1)
    return Solve.apply(A, B)


def cholesky(A, *, upper=False):
    _square("cholesky", A)
    L = Cholesky.apply(A)
    return _mT(L) if upper else L


def eigh(A, UPLO="L"):
    _square("eigh", A)
    return EighResult(*Eigh.apply(A, UPLO))


def eigvalsh(A, UPLO="L"):
    return eigh(A, UPLO).eigenvalues


def svd(A, full_matrices=True, *, driver=None):
    if driver is not None:
        raise NotImplementedError("linalg.svd(driver=...) is a cuSOLVER option; leave it None")
    return SvdResult(*Svd.apply(A, bool(full_matrices)))


def svdvals(A, *, driver=None):
    return svd(A, full_matrices=False, driver=driver).S


def qr(A, mode="reduced"):
    """Q, R of A of any shape: 'reduced' (Q m x k, R k x n), 'complete' (Q m x m, R m x n),
    or 'r' (R only; Q is empty and nothing is differentiable, as in PyTorch)."""
    if mode not in ("reduced", "complete", "r"):
        raise RuntimeError(f"qr received unrecognized mode '{mode}' but expected one of "
                           f"'reduced' (default), 'r', or 'complete'")
    if mode == "r":
        r = make(_xp_linalg(A._data).qr(A._data, mode="r"))
        return QrResult(make(array_module(A._data).zeros((0,), A._data.dtype)), r)
    return QrResult(*Qr.apply(A, mode))


def pinv(A, *, atol=None, rtol=None, hermitian=False):
    """Pseudo-inverse through the SVD (through eigh with `hermitian=True`, which reads only
    the lower triangle, as PyTorch does): singular values at or below the tolerance count as
    0."""
    if hermitian:
        L, Q = eigh(A)
        U, S, Vh = Q * L.sign().unsqueeze(-2), L.abs(), _mH(Q)
    else:
        U, S, Vh = svd(A, full_matrices=False)
    smax = S.amax(-1, keepdim=True).detach()
    if rtol is None:
        rtol = (max(A.shape[-2:]) * np.finfo(A._data.dtype).eps) if atol is None else 0.0
    tol = smax * rtol
    if atol is not None:
        tol = ew.maximum(tol, atol if isinstance(atol, Tensor) else smax * 0 + atol)
    keep = S > tol
    sinv = ew.where(keep, 1 / ew.where(keep, S, 1.0), 0.0)
    return _mH(Vh) @ (sinv.unsqueeze(-1) * _mH(U))


def matrix_rank(A, *, atol=None, rtol=None, hermitian=False):
    # a Hermitian matrix's singular values are its eigenvalues' magnitudes (lower triangle read)
    S = eigvalsh(A).abs().detach() if hermitian else svdvals(A).detach()
    if rtol is None:
        rtol = (max(A.shape[-2:]) * np.finfo(A._data.dtype).eps) if atol is None else 0.0
    tol = S.amax(-1, keepdim=True) * rtol
    if atol is not None:
        tol = ew.maximum(tol, S * 0 + atol)
    return (S > tol).sum(-1)


def vector_norm(x, ord=2, dim=None, keepdim=False, *, dtype=None):
    if dtype is not None:
        x = x.to(dtype)
    if not (x.is_floating_point() or x.is_complex()):
        raise RuntimeError(f"linalg.vector_norm: Expected a floating point or complex tensor "
                           f"as input. Got {x.dtype}")
    return red.norm(x, ord, dim, keepdim)


def matrix_norm(A, ord="fro", dim=(-2, -1), keepdim=False, *, dtype=None):
    if dtype is not None:
        A = A.to(dtype)
    d0, d1 = (d % A.ndim for d in dim)
    if ord == "fro":
        return red.norm(A, 2, (d0, d1), keepdim)
    x = A.movedim((d0, d1), (-2, -1))
    if ord in ("nuc", 2, -2):
        s = svdvals(x)
        out = s.sum(-1) if ord == "nuc" else (s.amax(-1) if ord == 2 else s.amin(-1))
    elif ord in (1, -1):
        col = x.abs().sum(-2)
        out = col.amax(-1) if ord == 1 else col.amin(-1)
    elif ord in (float("inf"), float("-inf")):
        row = x.abs().sum(-1)
        out = row.amax(-1) if ord > 0 else row.amin(-1)
    else:
        raise RuntimeError(f"linalg.matrix_norm: Order {ord} not supported.")
    if keepdim:
        for d in sorted((d0, d1)):
            out = out.unsqueeze(d)
    return out


def norm(A, ord=None, dim=None, keepdim=False, *, dtype=None):
    """Vector norm for 1 dim (or a flattened input when ord is None), matrix norm for 2."""
    if isinstance(dim, int):
        dim = (dim,)
    if ord is None:
        if dim is not None and len(dim) == 2:
            return matrix_norm(A, "fro", dim, keepdim, dtype=dtype)
        return vector_norm(A, 2, dim, keepdim, dtype=dtype)
    if dim is None:
        if A.ndim == 2:
            return matrix_norm(A, ord, (-2, -1), keepdim, dtype=dtype)
        if A.ndim == 1:
            return vector_norm(A, ord, None, keepdim, dtype=dtype)
        raise RuntimeError(f"linalg.norm: If dim is not specified but ord is, the input must "
                           f"be 1D or 2D. Got {A.ndim}D.")
    if len(dim) == 2:
        return matrix_norm(A, ord, dim, keepdim, dtype=dtype)
    return vector_norm(A, ord, dim, keepdim, dtype=dtype)


def cross(input, other, *, dim=-1):
    return _cross(input, other, dim)


def matmul(input, other):
    return _matmul(input, other)


def diagonal(A, *, offset=0, dim1=-2, dim2=-1):
    return _diagonal(A, offset, dim1, dim2)


# ---- the older top-level spellings (torch.svd, torch.qr, torch.inverse, ...) ----------------
def legacy_svd(input, some=True, compute_uv=True):
    """torch.svd: returns V (not Vh); `some=False` asks for the full factorisation."""
    U, S, Vh = svd(input, full_matrices=not some)
    if not compute_uv:
        return LegacySvdResult(U.detach() * 0, S, _mT(Vh).detach() * 0)
    return LegacySvdResult(U, S, _mT(Vh))


def legacy_qr(input, some=True):
    """torch.qr: `some=False` is mode='complete'."""
    return return_type("qr", ["Q", "R"])(*qr(input, "reduced" if some else "complete"))


def legacy_cholesky(input, upper=False):
    _square("cholesky", input)       # torch.cholesky: a node of its own, CholeskyBackward0
    L = named(Cholesky.apply(input), Cholesky, "Cholesky")
    return _mT(L) if upper else L


def inverse(input):
    return inv(input)


def pinverse(input, rcond=1e-15):
    return pinv(input, rtol=rcond)


class MatrixExp(Function):
    """exp(A); its adjoint is the upper-right block of exp([[A^T, G], [0, A^T]]) (Najfeld and
    Havel), computed by this same Function, so higher derivatives come for free."""

    @staticmethod
    def forward(ctx, a):
        d = a._data
        ctx.save_for_backward(a)
        return make(_expm(d))

    @staticmethod
    def backward(ctx, g):
        a, = ctx.saved_tensors
        n = a.shape[-1]
        at = _mT(a)
        block = cat([cat([at, g], -1), cat([g * 0, at], -1)], -2)
        return MatrixExp.apply(block)[..., :n, n:]


def _expm(d):
    """exp of each matrix of a batch (scipy's Pade approximation on the CPU; CuPy's own
    scaling-and-squaring on a GPU)."""
    xp = array_module(d)
    if xp is np:
        from scipy.linalg import expm
        return expm(d) if d.ndim == 2 else \
            np.stack([expm(m) for m in d.reshape(-1, *d.shape[-2:])]).reshape(d.shape)
    from cupyx.scipy.linalg import expm
    return expm(d)


def matrix_exp(A):
    _square("matrix_exp", A)
    return MatrixExp.apply(A)


def solve_triangular(A, B, *, upper, left=True, unitriangular=False):
    """Composed from solve on the triangle of A (the other triangle is ignored, as in
    PyTorch)."""
    tri = A.triu() if upper else A.tril()
    if unitriangular:
        eye = _eye_like(A)
        tri = tri * (1 - eye) + eye
    return solve(tri, B, left=left)


def cholesky_solve(B, L, upper=False):
    """X with (L L^T) X = B for a Cholesky factor L (U^T U with upper=True)."""
    low = _mT(L) if upper else L
    y = solve_triangular(low, B, upper=False)
    return solve_triangular(_mT(low), y, upper=True)


def cholesky_inverse(L, upper=False):
    eye = _eye_like(L).expand(*L.shape) if L.ndim > 2 else _eye_like(L)
    return cholesky_solve(eye, L, upper)


_LSTSQ_DRIVERS = ("gelsy", "gelsd", "gelss", "gels")


def lstsq(A, B, rcond=None, *, driver=None):
    """Least squares by PyTorch's drivers (LAPACK's, through scipy, on the CPU; 'gelsy' by
    default, 'gels' on a GPU, as PyTorch): `rank` from gelsy/gelsd/gelss, `singular_values`
    from gelsd/gelss, `residuals` when A is tall and of full rank (any driver but gelsy).
    The gradient is that of the pseudo-inverse solution pinv(A) @ B, as PyTorch's."""
    if driver not in (None,) + _LSTSQ_DRIVERS:
        raise ValueError(f"linalg.lstsq: driver must be one of gels, gelsy, gelsd, gelss; got "
                         f"{driver!r}")
    on_gpu = array_module(A._data) is not np
    if on_gpu and driver not in (None, "gels"):
        raise RuntimeError(f"linalg.lstsq: `driver` other than `gels` is not supported on "
                           f"CUDA (got {driver!r})")
    driver = driver or ("gels" if on_gpu else "gelsy")
    if A.ndim < 2 or not 0 <= A.ndim - B.ndim <= 1:
        raise RuntimeError(f"linalg.lstsq: A ({list(A.shape)}) must be a matrix or a batch of "
                           f"them, and B ({list(B.shape)}) have as many dims, or one fewer "
                           f"for vectors")
    vector = B.ndim == A.ndim - 1
    b = B.unsqueeze(-1) if vector else B
    x, rank, s = Lstsq.apply(A, b, rcond, driver)
    (m, n), xp = A.shape[-2:], array_module(A._data)
    real = A._data.real.dtype if A._data.dtype.kind == "c" else A._data.dtype
    empty = make(xp.zeros((0,), real))
    full_rank = driver == "gels" or bool((rank._data == n).all())
    residuals = ((A @ x - b).abs() ** 2).sum(-2) if driver != "gelsy" and m > n and \
        full_rank else empty
    res = return_type("linalg_lstsq", ["solution", "residuals", "rank", "singular_values"])
    return res(x.squeeze(-1) if vector else x, residuals,
               rank if driver != "gels" else make(xp.zeros((0,), np.int64)),
               s if driver in ("gelsd", "gelss") else empty)


class Lstsq(Function):
    """(solution, rank, singular values) of min |A X - B| by one LAPACK driver per matrix;
    backward differentiates the pseudo-inverse solution."""

    @staticmethod
    def forward(ctx, A, B, rcond, driver):
        a, b = A._data, B._data
        batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
        a = np.broadcast_to(a, batch + a.shape[-2:])
        b = np.broadcast_to(b, batch + b.shape[-2:])
        (m, n), k = a.shape[-2:], b.shape[-1]
        ctx.save_for_backward(A, B)
        ctx.rcond = rcond
        if array_module(a) is not np:   # a GPU: the minimum-norm solution through the SVD
            s = svdvals(make(a))._data
            x = (pinv(make(a), rtol=rcond) @ make(b))._data
            rank = (s > s.max(-1, keepdims=True) * _rtol(rcond, a)).sum(-1)
            return make(x), make(rank.astype(np.int64)), make(s)
        import scipy.linalg
        x = np.empty(batch + (n, k), np.result_type(a, b))
        rank = np.zeros(batch, np.int64)
        s = np.zeros(batch + (min(m, n),), a.real.dtype if a.dtype.kind == "c" else a.dtype)
        lapack = "gelsy" if driver == "gels" else driver   # gels: QR, as gelsy's
        for i in np.ndindex(*batch):
            x[i], _, rank[i], sv = scipy.linalg.lstsq(
                a[i], b[i], cond=_rtol(rcond, a), lapack_driver=lapack, check_finite=False)
            if sv is not None:
                s[i] = sv
        # rank and singular values are A's: one per matrix of A's own batch
        own = A._data.shape[:-2]
        lead = len(batch) - len(own)
        pick = tuple(0 if d < lead else (slice(0, 1) if own[d - lead] == 1 else slice(None))
                     for d in range(len(batch)))
        rank, s = rank[pick].reshape(own), s[pick].reshape(own + s.shape[-1:])
        ctx.mark_non_differentiable(*(out := (make(x), make(rank), make(s)))[1:])
        return out

    @staticmethod
    def backward(ctx, g, g_rank=None, g_s=None):
        from ..autograd import grad
        from ..autograd.grad_mode import enable_grad, is_grad_enabled
        A, B = ctx.saved_tensors
        needs = ctx.needs_input_grad[:2]
        create = is_grad_enabled()
        with enable_grad():
            a, b = (A, B) if create else (A.detach().requires_grad_(needs[0]),
                                          B.detach().requires_grad_(needs[1]))
            x = pinv(a, rtol=ctx.rcond) @ b
            wanted = [t for t, need in zip((a, b), needs) if need]
            found = iter(grad(x, wanted, g, create_graph=create, allow_unused=True))
        return (next(found) if needs[0] else None, next(found) if needs[1] else None,
                None, None)


def _rtol(rcond, a):
    """PyTorch's default cutoff: eps of the dtype times the larger matrix dim."""
    return rcond if rcond is not None else np.finfo(a.dtype).eps * max(a.shape[-2:])


def multi_dot(tensors):
    out = tensors[0]
    if out.ndim == 1:
        out = out.unsqueeze(0)
    last = tensors[-1]
    mats = [out] + list(tensors[1:-1]) + [last.unsqueeze(-1) if last.ndim == 1 else last]
    res = mats[0]
    for m in mats[1:]:
        res = res @ m
    if tensors[0].ndim == 1:
        res = res.squeeze(0)
    if last.ndim == 1:
        res = res.squeeze(-1)
    return res


def vecdot(x, y, *, dim=-1):
    return (x * y).sum(dim)


def cond(A, p=None):
    if p is None or p == 2:
        s = svdvals(A)
        return s.amax(-1) / s.amin(-1)
    return matrix_norm(A, p) * matrix_norm(inv(A), p)



def triangular_solve(b, A, upper=True, transpose=False, unitriangular=False):
    """torch.triangular_solve (deprecated there): X with op(A) X = b, op(A) = A or A^T;
    returns (solution, cloned_coefficient)."""
    tri = _mT(A) if transpose else A
    x = solve_triangular(tri, b, upper=upper != transpose, unitriangular=unitriangular)
    return return_type("triangular_solve", ["solution", "cloned_coefficient"])(x, A.clone())
from .linalg_more import tensorinv, tensorsolve, vander  # noqa: E402  (composites of the above)
from .linalg_lu import (cholesky_ex, inv_ex, ldl_factor, ldl_factor_ex, ldl_solve,  # noqa: E402
                        lu, lu_factor, lu_factor_ex, lu_solve, lu_unpack, solve_ex)
from .linalg_eig import eig, eigvals, householder_product  # noqa: E402
