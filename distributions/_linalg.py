"""Cholesky factorisation and triangular solves, the two matrix primitives MultivariateNormal
needs, each a Function whose backward is written with these same Functions (so double
backward works). They belong with the other matrix ops in tensor/ops/linalg.py; they live
here until that module grows a `linalg` namespace.

    cholesky(A) = L            gA = sym(L^-T Phi(L^T gL) L^-1),  Phi: lower half, diagonal / 2
    solve_triangular(A, B) = X gB = A^-T gX,  gA = -tri(gB X^T)
"""
import numpy as np

from ..autograd import Function
from ..tensor import Tensor
from ..tensor.backend import array_module


def _tri_mask(xp, n, upper, dtype):
    mask = xp.tri(n, dtype=dtype)
    return mask.T if upper else mask


class Cholesky(Function):
    @staticmethod
    def forward(ctx, a):
        x = a._data
        xp = array_module(x)
        try:
            out = xp.linalg.cholesky(x)
        except np.linalg.LinAlgError:
            raise RuntimeError(f"linalg.cholesky: the factorization could not be completed "
                               f"because the input (shape {list(x.shape)}) is not "
                               f"positive-definite") from None
        if not bool(xp.isfinite(out).all()):  # CuPy returns nan instead of raising
            raise RuntimeError(f"linalg.cholesky: the input (shape {list(x.shape)}) is not "
                               f"positive-definite")
        result = Tensor._make(out)
        ctx.save_for_backward(result)
        return result

    @staticmethod
    def backward(ctx, g):
        low, = ctx.saved_tensors
        n = low.shape[-1]
        xp = array_module(low._data)
        half_diag = Tensor._make(xp.tri(n, dtype=low._data.dtype) - 0.5 * xp.eye(
            n, dtype=low._data.dtype))
        phi = (low.mT @ g) * half_diag
        y = solve_triangular(low.mT, phi, upper=True)           # L^-T Phi
        s = solve_triangular(low.mT, y.mT, upper=True).mT       # L^-T Phi L^-1
        return 0.5 * (s + s.mT)


class SolveTriangular(Function):
    @staticmethod
    def forward(ctx, a, b, upper):
        xa, xb = a._data, b._data
        xp = array_module(xa)
        tri = xa * _tri_mask(xp, xa.shape[-1], upper, xa.dtype)
        if xa.ndim == 2 and xp is np:
            import scipy.linalg
            out = scipy.linalg.solve_triangular(tri, xb, lower=not upper)
        else:
            out = xp.linalg.solve(tri, xb)
        result = Tensor._make(out.astype(xb.dtype, copy=False))
        ctx.upper = upper
        ctx.save_for_backward(a, result)
        return result

    @staticmethod
    def backward(ctx, g):
        a, x = ctx.saved_tensors
        gb = solve_triangular(a.mT, g, upper=not ctx.upper)
        ga = None
        if ctx.needs_input_grad[0]:
            xp = array_module(a._data)
            mask = Tensor._make(_tri_mask(xp, a.shape[-1], ctx.upper, a._data.dtype))
            ga = -(gb @ x.mT) * mask
        return ga, (gb if ctx.needs_input_grad[1] else None), None


def cholesky(a):
    """Lower-triangular L with L L^T = a, for symmetric positive-definite a (batched)."""
    return Cholesky.apply(a)


def solve_triangular(a, b, *, upper):
    """X with a X = b for triangular a (only its lower, or upper, half is read); a and b
    broadcast over their batch dimensions."""
    batch = np.broadcast_shapes(tuple(a.shape[:-2]), tuple(b.shape[:-2]))
    if tuple(a.shape[:-2]) != batch:
        a = a.expand(batch + tuple(a.shape[-2:]))
    if tuple(b.shape[:-2]) != batch:
        b = b.expand(batch + tuple(b.shape[-2:]))
    return SolveTriangular.apply(a, b, upper)


def diagonal(a):
    """The diagonal of the last two dimensions (differentiable)."""
    xp = array_module(a._data)
    return (a * Tensor._make(xp.eye(a.shape[-1], dtype=a._data.dtype))).sum(-1)
